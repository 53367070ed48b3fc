package tufmeta

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/errs"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// repo is a go-tuf simulator-style repository in memory: it keeps every
// version of every role, so tests can serve old ones as an attacker would.
type repo struct {
	t                                testing.TB
	secret                           []byte
	gen                              map[string]int
	threshold                        int
	roots                            [][]byte
	targets, snapshots, timestamps   [][]byte
	scope                            Scope
	serveTS, serveSnap, serveTargets []byte // overrides
}

func newRepo(t testing.TB, scope Scope) *repo {
	r := &repo{t: t, secret: []byte("0123456789abcdef0123456789abcdef"), gen: map[string]int{}, threshold: 1, scope: scope}
	r.rotate("", 1)
	return r
}

func (r *repo) key(role string, gen int) ed25519.PrivateKey {
	k, err := DeriveKey(r.secret, role, gen)
	if err != nil {
		r.t.Fatal(err)
	}
	return k
}

func (r *repo) roleKeys(role string) ([]ed25519.PrivateKey, RoleKeys) {
	n := 1
	if role == RoleRoot {
		n = r.threshold
	}
	var privs []ed25519.PrivateKey
	rk := RoleKeys{Threshold: n}
	for i := 0; i < n; i++ {
		p := r.key(role, r.gen[role]*10+i)
		privs = append(privs, p)
		rk.Keys = append(rk.Keys, p.Public().(ed25519.PublicKey))
	}
	return privs, rk
}

// rotate moves role to its next key generation (none: only a new root) and
// signs a new root with the old and new root keys.
func (r *repo) rotate(role string, threshold int) {
	oldRoot, _ := r.roleKeys(RoleRoot)
	if role != "" {
		r.gen[role]++
	}
	r.threshold = threshold
	roles := map[string]RoleKeys{}
	for _, ro := range Roles {
		_, rk := r.roleKeys(ro)
		roles[ro] = rk
	}
	newRoot, _ := r.roleKeys(RoleRoot)
	signers := newRoot
	if len(r.roots) > 0 && role == RoleRoot {
		signers = append(oldRoot, newRoot...)
	}
	b, err := SignRoot(int64(len(r.roots)+1), t0.Add(365*24*time.Hour), roles, signers)
	if err != nil {
		r.t.Fatal(err)
	}
	r.roots = append(r.roots, b)
}

func (r *repo) publish(version string, tsExpiry time.Duration) {
	k := func(role string) []ed25519.PrivateKey { p, _ := r.roleKeys(role); return p }
	tv := int64(len(r.targets) + 1)
	tg := []Target{{Customer: r.scope.Customer, Group: r.scope.Group, App: "app", Version: version, Release: "app-" + version, Platform: "linux-amd64", Name: "app.bin",
		Length: 3, SHA256: strings.Repeat("ab", 32)}}
	tb, err := SignTargets(tv, t0.Add(90*24*time.Hour), r.scope, tg, k(RoleTargets))
	if err != nil {
		r.t.Fatal(err)
	}
	sv := int64(len(r.snapshots) + 1)
	sb, err := SignSnapshot(sv, t0.Add(7*24*time.Hour), tv, tb, k(RoleSnapshot))
	if err != nil {
		r.t.Fatal(err)
	}
	tsb, err := SignTimestamp(int64(len(r.timestamps)+1), t0.Add(tsExpiry), sv, sb, k(RoleTimestamp))
	if err != nil {
		r.t.Fatal(err)
	}
	r.targets, r.snapshots, r.timestamps = append(r.targets, tb), append(r.snapshots, sb), append(r.timestamps, tsb)
}

func pick(list [][]byte, v int64) ([]byte, error) {
	if v < 1 || int(v) > len(list) {
		return nil, errs.E(errs.NotFound, "no version %d", v)
	}
	return list[v-1], nil
}

func (r *repo) Root(_ context.Context, v int64) ([]byte, error) { return pick(r.roots, v) }
func (r *repo) Timestamp(context.Context) ([]byte, error) {
	if r.serveTS != nil {
		return r.serveTS, nil
	}
	return r.timestamps[len(r.timestamps)-1], nil
}
func (r *repo) Snapshot(_ context.Context, v int64) ([]byte, error) {
	if r.serveSnap != nil {
		return r.serveSnap, nil
	}
	return pick(r.snapshots, v)
}
func (r *repo) Targets(_ context.Context, v int64) ([]byte, error) {
	if r.serveTargets != nil {
		return r.serveTargets, nil
	}
	return pick(r.targets, v)
}

var acme1 = Scope{Customer: "acme", Group: "g1"}

func mustRefresh(t *testing.T, cur Trusted, r *repo, at time.Time) (Trusted, *Verified) {
	t.Helper()
	next, v, err := Refresh(context.Background(), cur, r, r.scope, at)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return next, v
}

func wantRejected(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted, want rejected", what)
	}
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("%s: error %v is not a rejection", what, err)
	}
	t.Logf("%s: %v", what, err)
}

// TestRefresh: a first refresh loads version 1; a new release is seen; an
// unchanged repository reports no change.
func TestRefresh(t *testing.T) {
	r := newRepo(t, acme1)
	r.publish("1.0", 24*time.Hour)
	cur, v := mustRefresh(t, Trusted{Root: r.roots[0]}, r, t0)
	if len(v.Targets) != 1 || v.Targets[0].Version != "1.0" || !v.Changed {
		t.Fatalf("verified %+v", v)
	}
	cur, v = mustRefresh(t, cur, r, t0.Add(time.Hour))
	if v.Changed {
		t.Fatalf("unchanged repository reported as changed")
	}
	r.publish("2.0", 24*time.Hour)
	_, v = mustRefresh(t, cur, r, t0.Add(time.Hour))
	if v.Targets[0].Version != "2.0" || v.TimestampVersion != 2 {
		t.Fatalf("verified %+v", v)
	}
}

// TestRollback: a mirror serving version 1 metadata to a device that
// trusts version 2 is refused.
func TestRollback(t *testing.T) {
	r := newRepo(t, acme1)
	r.publish("1.0", 24*time.Hour)
	r.publish("2.0", 24*time.Hour)
	cur, _ := mustRefresh(t, Trusted{Root: r.roots[0]}, r, t0)
	r.serveTS = r.timestamps[0]
	_, _, err := Refresh(context.Background(), cur, r, acme1, t0)
	wantRejected(t, err, "old timestamp")
	// A timestamp re-signed as new but pointing at an old snapshot is refused too.
	k, _ := r.roleKeys(RoleTimestamp)
	ts, err := SignTimestamp(9, t0.Add(time.Hour), 1, r.snapshots[0], k)
	if err != nil {
		t.Fatal(err)
	}
	r.serveTS = ts
	_, _, err = Refresh(context.Background(), cur, r, acme1, t0)
	wantRejected(t, err, "new timestamp naming an old snapshot")
}

// TestFreeze: a mirror that keeps serving the last timestamp after it
// expired is refused; the device stays on what it trusts.
func TestFreeze(t *testing.T) {
	r := newRepo(t, acme1)
	r.publish("1.0", time.Hour)
	cur, _ := mustRefresh(t, Trusted{Root: r.roots[0]}, r, t0)
	_, _, err := Refresh(context.Background(), cur, r, acme1, t0.Add(2*time.Hour))
	wantRejected(t, err, "expired timestamp")
	if !strings.Contains(err.Error(), "freeze") {
		t.Errorf("message %q does not say freeze", err)
	}
}

// TestMixAndMatch: the current timestamp and snapshot with the targets of
// another version (or a snapshot of another version) are refused.
func TestMixAndMatch(t *testing.T) {
	r := newRepo(t, acme1)
	r.publish("1.0", 24*time.Hour)
	r.publish("2.0", 24*time.Hour)
	r.serveTargets = r.targets[0]
	_, _, err := Refresh(context.Background(), Trusted{Root: r.roots[0]}, r, acme1, t0)
	wantRejected(t, err, "targets v1 under snapshot v2")
	r.serveTargets, r.serveSnap = nil, r.snapshots[0]
	_, _, err = Refresh(context.Background(), Trusted{Root: r.roots[0]}, r, acme1, t0)
	wantRejected(t, err, "snapshot v1 under timestamp v2")
}

// TestCrossingGroups: group g1's valid, signed metadata served to a device
// of group g2 (or of another customer) is refused, and the device's trusted
// versions do not move.
func TestCrossingGroups(t *testing.T) {
	g1 := newRepo(t, acme1)
	g1.publish("1.0", 24*time.Hour)
	for _, sc := range []Scope{{Customer: "acme", Group: "g2"}, {Customer: "other", Group: "g1"}} {
		_, _, err := Refresh(context.Background(), Trusted{Root: g1.roots[0]}, g1, sc, t0)
		wantRejected(t, err, "g1 metadata for "+sc.String())
	}
}

// TestKeyRotation: the timestamp key and the root keys rotate (root to a
// threshold of 2); the device follows; metadata signed with the retired
// key is refused; a root signed by too few keys is refused.
func TestKeyRotation(t *testing.T) {
	r := newRepo(t, acme1)
	r.publish("1.0", 24*time.Hour)
	cur, _ := mustRefresh(t, Trusted{Root: r.roots[0]}, r, t0)
	oldTS, _ := r.roleKeys(RoleTimestamp)
	r.rotate(RoleTimestamp, 1)
	r.rotate(RoleRoot, 2)
	r.publish("2.0", 24*time.Hour)
	cur, v := mustRefresh(t, cur, r, t0)
	if v.RootVersion != 3 || v.Targets[0].Version != "2.0" {
		t.Fatalf("after rotation: %+v", v)
	}
	ts, err := SignTimestamp(99, t0.Add(time.Hour), 2, r.snapshots[1], oldTS)
	if err != nil {
		t.Fatal(err)
	}
	r.serveTS = ts
	_, _, err = Refresh(context.Background(), cur, r, acme1, t0)
	wantRejected(t, err, "timestamp signed by the retired key")
	r.serveTS = nil
	// A root v4 signed by one of the two root keys only.
	keys, rk := r.roleKeys(RoleRoot)
	roles := map[string]RoleKeys{RoleRoot: rk}
	for _, ro := range Roles[1:] {
		_, roles[ro] = r.roleKeys(ro)
	}
	weak, err := SignRoot(4, t0.Add(time.Hour), roles, keys[:1])
	if err != nil {
		t.Fatal(err)
	}
	r.roots = append(r.roots, weak)
	_, _, err = Refresh(context.Background(), cur, r, acme1, t0)
	wantRejected(t, err, "root under threshold")
}

// FuzzRefresh: any bytes a mirror serves as timestamp, snapshot or targets
// are refused or verified, never accepted unverified and never a panic.
func FuzzRefresh(f *testing.F) {
	r := newRepo(f, acme1)
	r.publish("1.0", 24*time.Hour)
	f.Add(r.timestamps[0], r.snapshots[0], r.targets[0])
	f.Add([]byte(`{"signed":{"_type":"timestamp","version":9}}`), []byte("{}"), []byte("null"))
	root := r.roots[0]
	f.Fuzz(func(t *testing.T, ts, snap, tg []byte) {
		src := &repo{roots: [][]byte{root}, serveTS: ts, serveSnap: snap, serveTargets: tg, timestamps: [][]byte{ts}}
		_, v, err := Refresh(context.Background(), Trusted{Root: root}, src, acme1, t0)
		if err == nil && !bytes.Equal(ts, r.timestamps[0]) {
			// Only the repository's own signed timestamp can verify.
			t.Fatalf("unsigned timestamp accepted: %+v", v)
		}
	})
}
