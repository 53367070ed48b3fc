package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
)

// TestDistVendor runs the conformance suite of catalog.Store, mostly
// through catalog.Service. The store must also be a clearinghouse.Store
// (bundles refer to customers).
func TestDistVendor(t *testing.T, open func(t *testing.T) catalog.Store) {
	sub := parallel(t)
	sub("Catalogue", func(t *testing.T) { testDistCatalogue(t, open(t)) })
	sub("Blobs", func(t *testing.T) { testDistBlobs(t, open(t)) })
	sub("PublishAndVerify", func(t *testing.T) { testDistPublish(t, open(t)) })
	sub("ConcurrentPublish", func(t *testing.T) { testDistConcurrentPublish(t, open(t)) })
	sub("Statuses", func(t *testing.T) { testDistStatuses(t, open(t)) })
	sub("Rollout", func(t *testing.T) { testDistRollout(t, open(t)) })
	sub("Channels", func(t *testing.T) { testDistChannels(t, open(t)) })
}

// TestDistSite runs the conformance suite of mirror.Store.
func TestDistSite(t *testing.T, open func(t *testing.T) mirror.Store) {
	sub := parallel(t)
	sub("GroupsAndDevices", func(t *testing.T) { testDistGroups(t, open(t)) })
	sub("Metadata", func(t *testing.T) { testDistSiteMeta(t, open(t)) })
	sub("Reports", func(t *testing.T) { testDistReports(t, open(t)) })
}

func distService(t *testing.T, st catalog.Store) *catalog.Service {
	t.Helper()
	if cs, isCH := st.(clearinghouse.Store); isCH {
		for _, id := range []string{"acme", "globex"} {
			if _, err := cs.Customer(t.Context(), id); errs.Is(err, errs.NotFound) {
				ok(t, cs.CreateCustomer(t.Context(), &clearinghouse.Customer{ID: id, Name: id, Created: t0}), "customer "+id)
			}
		}
	}
	return &catalog.Service{Store: st, Secret: bytes.Repeat([]byte{7}, 32), Expiries: catalog.DefaultExpiries, Now: func() time.Time { return t0 }}
}

// upload stores data as a blob through chunks and returns its artifact.
func upload(t *testing.T, svc *catalog.Service, platform string, data []byte) catalog.Artifact {
	t.Helper()
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	for i := 0; i*catalog.ChunkSize < len(data); i++ {
		end := min(len(data), (i+1)*catalog.ChunkSize)
		ok(t, svc.PutChunk(t.Context(), sha, int64(i), data[i*catalog.ChunkSize:end]), "chunk")
	}
	_, err := svc.CommitBlob(t.Context(), sha, int64(len(data)))
	ok(t, err, "commit blob")
	return catalog.Artifact{Platform: platform, Name: "app.bin", Size: int64(len(data)), SHA256: sha}
}

func release(t *testing.T, svc *catalog.Service, app, version string, data []byte) *catalog.Release {
	t.Helper()
	r := &catalog.Release{App: app, Version: version, Notes: "notes " + version, Artifacts: []catalog.Artifact{upload(t, svc, "linux-amd64", data)}}
	ok(t, svc.AddRelease(t.Context(), r), "add release "+version)
	return r
}

func testDistCatalogue(t *testing.T, st catalog.Store) {
	ctx := t.Context()
	svc := distService(t, st)
	ok(t, svc.AddApp(ctx, &catalog.App{ID: "app"}), "add app")
	if err := svc.AddApp(ctx, &catalog.App{ID: "app"}); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second app: %v, want Conflict", err)
	}
	r := release(t, svc, "app", "1.0", []byte("one"))
	got, err := st.DistRelease(ctx, r.ID)
	ok(t, err, "read release")
	same(t, "release", got, r)
	if err := svc.AddRelease(ctx, &catalog.Release{App: "app", Version: "1.0", Artifacts: r.Artifacts}); !errs.Is(err, errs.Conflict) {
		t.Fatalf("same version again: %v, want Conflict", err)
	}
	if err := svc.AddRelease(ctx, &catalog.Release{App: "nope", Version: "1.0", Artifacts: r.Artifacts}); !errs.Is(err, errs.NotFound) {
		t.Fatalf("unknown app: %v, want NotFound", err)
	}
	bad := r.Artifacts[0]
	bad.Size++
	if err := svc.AddRelease(ctx, &catalog.Release{App: "app", Version: "1.1", Artifacts: []catalog.Artifact{bad}}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("wrong size: %v, want Invalid", err)
	}
	rs, err := st.DistReleases(ctx, "app")
	ok(t, err, "list releases")
	if len(rs) != 1 || rs[0].Version != "1.0" || len(rs[0].Artifacts) != 1 {
		t.Fatalf("releases %+v", rs)
	}
	if _, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "nobody", Group: "g1", Release: r.ID}); !errs.Is(err, errs.NotFound) {
		t.Fatalf("bundle for an unknown customer: %v, want NotFound", err)
	}
}

func testDistBlobs(t *testing.T, st catalog.Store) {
	ctx := t.Context()
	svc := distService(t, st)
	data := bytes.Repeat([]byte("0123456789abcdef"), catalog.ChunkSize/16*2+100) // 2 chunks and a bit
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	ok(t, svc.PutChunk(ctx, sha, 0, data[:catalog.ChunkSize]), "chunk 0")
	ok(t, svc.PutChunk(ctx, sha, 2, data[2*catalog.ChunkSize:]), "chunk 2")
	if _, err := svc.CommitBlob(ctx, sha, int64(len(data))); !errs.Is(err, errs.Invalid) {
		t.Fatalf("commit with a missing chunk: %v, want Invalid", err)
	}
	ok(t, svc.PutChunk(ctx, sha, 1, bytes.Repeat([]byte{'x'}, catalog.ChunkSize)), "wrong chunk 1")
	if _, err := svc.CommitBlob(ctx, sha, int64(len(data))); !errs.Is(err, errs.Invalid) {
		t.Fatalf("commit with a wrong chunk: %v, want Invalid", err)
	}
	ok(t, svc.PutChunk(ctx, sha, 1, data[catalog.ChunkSize:2*catalog.ChunkSize]), "chunk 1 again")
	b, err := svc.CommitBlob(ctx, sha, int64(len(data)))
	ok(t, err, "commit")
	for _, from := range []int64{0, 1, catalog.ChunkSize, catalog.ChunkSize + 7, int64(len(data))} {
		var out bytes.Buffer
		ok(t, svc.WriteBlob(ctx, &out, b, from), "read blob")
		if !bytes.Equal(out.Bytes(), data[from:]) {
			t.Fatalf("blob from %d: %d bytes differ from the %d uploaded", from, out.Len(), len(data)-int(from))
		}
	}
}

func testDistPublish(t *testing.T, st catalog.Store) {
	ctx := t.Context()
	svc := distService(t, st)
	ok(t, svc.AddApp(ctx, &catalog.App{ID: "app"}), "add app")
	r1 := release(t, svc, "app", "1.0", []byte("one"))
	r2 := release(t, svc, "app", "2.0", []byte("two"))
	_, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", Release: r1.ID})
	ok(t, err, "bundle g1")
	_, err = svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g2", Release: r2.ID})
	ok(t, err, "bundle g2")
	p, err := svc.Payload(ctx, "acme", time.Hour)
	ok(t, err, "payload")
	if len(p.Groups) != 2 || len(p.Blobs) != 2 || len(p.Roots) != 1 {
		t.Fatalf("payload: %d groups, %d blobs, %d roots", len(p.Groups), len(p.Blobs), len(p.Roots))
	}
	trusted := map[string]tufmeta.Trusted{}
	for _, g := range p.Groups {
		next, v, err := tufmeta.Refresh(ctx, tufmeta.Trusted{Root: p.Roots[0]}, p.Source(g), catalog.Scope("acme", g.Group), t0)
		ok(t, err, "verify "+g.Group)
		want := map[string]string{"g1": "1.0", "g2": "2.0"}[g.Group]
		if len(v.Targets) != 1 || v.Targets[0].Version != want {
			t.Fatalf("group %s targets %+v, want version %s", g.Group, v.Targets, want)
		}
		trusted[g.Group] = next
		_, _, err = tufmeta.Refresh(ctx, tufmeta.Trusted{Root: p.Roots[0]}, p.Source(g), catalog.Scope("acme", "g3"), t0)
		if err == nil {
			t.Fatalf("group %s metadata accepted for group g3", g.Group)
		}
	}
	if _, err := svc.CustomerBlob(ctx, "globex", r1.Artifacts[0].SHA256); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("another customer's blob: %v, want Forbidden", err)
	}
	// A new bundle for g1 and a rotated timestamp key: the device follows.
	_, err = svc.Rotate(ctx, tufmeta.RoleTimestamp, 1)
	ok(t, err, "rotate")
	_, err = svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", Release: r2.ID})
	ok(t, err, "bundle g1 2.0")
	p, err = svc.Payload(ctx, "acme", time.Hour)
	ok(t, err, "payload")
	for _, g := range p.Groups {
		if g.Group != "g1" {
			continue
		}
		_, v, err := tufmeta.Refresh(ctx, trusted["g1"], p.Source(g), catalog.Scope("acme", "g1"), t0)
		ok(t, err, "verify after rotation")
		if v.RootVersion != 2 || v.Targets[0].Version != "2.0" {
			t.Fatalf("after rotation: %+v", v)
		}
	}
	vs, err := svc.Versions(ctx, "acme")
	ok(t, err, "versions")
	if len(vs) != 1 || vs[0].Current != "2.0" || vs[0].Installed != "" {
		t.Fatalf("versions %+v", vs[0])
	}
}

// testDistConcurrentPublish: publishers racing on one group each get a
// distinct metadata version.
func testDistConcurrentPublish(t *testing.T, st catalog.Store) {
	ctx := t.Context()
	svc := distService(t, st)
	ok(t, svc.AddApp(ctx, &catalog.App{ID: "app"}), "add app")
	r := release(t, svc, "app", "1.0", []byte("one"))
	_, err := svc.Roots(ctx)
	ok(t, err, "roots")
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", Release: r.ID})
			errc <- err
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		ok(t, err, "concurrent publish")
	}
	m, err := st.LatestDistMeta(ctx, "acme", "g1", tufmeta.RoleTimestamp)
	ok(t, err, "latest timestamp")
	if m.Version != 8 {
		t.Fatalf("timestamp version %d after 8 publishes, want 8", m.Version)
	}
}

func testDistStatuses(t *testing.T, st catalog.Store) {
	ctx := t.Context()
	svc := distService(t, st)
	ok(t, svc.AddApp(ctx, &catalog.App{ID: "app"}), "add app")
	r := release(t, svc, "app", "2.0", []byte("two"))
	_, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", Release: r.ID})
	ok(t, err, "bundle")
	ok(t, svc.RecordStatus(ctx, "acme", "site-test", []*catalog.Status{{Group: "g1", Device: "d1", App: "app", Version: "2.0", Status: catalog.StatusFailed, Log: "hook failed", At: at(time.Second)}}), "failed")
	vs, err := svc.Versions(ctx, "acme")
	ok(t, err, "versions")
	if vs[0].Installed != "" || vs[0].Devices[catalog.StatusFailed] != 1 {
		t.Fatalf("after a failure: %+v", vs[0])
	}
	ok(t, svc.RecordStatus(ctx, "acme", "site-test", []*catalog.Status{{Customer: "globex", Group: "g1", Device: "d1", App: "app", Version: "2.0", Status: catalog.StatusInstalled, At: at(2 * time.Second)}}), "installed")
	vs, err = svc.Versions(ctx, "acme")
	ok(t, err, "versions")
	if vs[0].Installed != "2.0" || !vs[0].UpToDate || vs[0].Devices[catalog.StatusInstalled] != 1 {
		t.Fatalf("after a confirmation: %+v", vs[0])
	}
	other, err := svc.Versions(ctx, "globex")
	ok(t, err, "globex versions")
	if len(other) != 0 {
		t.Fatalf("a report for acme changed globex: %+v", other)
	}
	if err := svc.RecordStatus(ctx, "acme", "site-test", []*catalog.Status{{Group: "g1", Device: "d1", App: "app", Version: "2.0", Status: "bogus"}}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("bogus status: %v", err)
	}
}

func testDistGroups(t *testing.T, st mirror.Store) {
	ctx := t.Context()
	ok(t, st.AddDistGroup(ctx, &mirror.Group{Name: "g1", Created: t0}), "group")
	if err := st.AddDistGroup(ctx, &mirror.Group{Name: "g1", Created: t0}); !errs.Is(err, errs.Conflict) {
		t.Fatalf("group twice: %v", err)
	}
	d := &mirror.Device{ID: "dev_1", Name: "d1", Group: "g1", TokenHash: []byte("hash1"), Created: t0}
	ok(t, st.AddDistDevice(ctx, d), "device")
	if err := st.AddDistDevice(ctx, &mirror.Device{ID: "dev_2", Name: "d2", Group: "nope", TokenHash: []byte("hash2"), Created: t0}); !errs.Is(err, errs.NotFound) {
		t.Fatalf("device of an unknown group: %v, want NotFound", err)
	}
	got, err := st.DistDeviceByToken(ctx, []byte("hash1"))
	ok(t, err, "by token")
	same(t, "device", got, d)
	if _, err := st.DistDeviceByToken(ctx, []byte("other")); !errs.Is(err, errs.NotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	ok(t, st.RemoveDistDevice(ctx, "d1"), "remove")
	if _, err := st.DistDeviceByToken(ctx, []byte("hash1")); !errs.Is(err, errs.NotFound) {
		t.Fatalf("removed device's token: %v", err)
	}
	if err := st.RemoveDistDevice(ctx, "d1"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("remove twice: %v", err)
	}
	ok(t, st.AddDistDevice(ctx, d), "device again")
	gs, err := st.DistGroups(ctx)
	ok(t, err, "groups")
	ds, err := st.DistDevices(ctx)
	ok(t, err, "devices")
	if len(gs) != 1 || len(ds) != 1 {
		t.Fatalf("%d groups, %d devices", len(gs), len(ds))
	}
}

func testDistSiteMeta(t *testing.T, st mirror.Store) {
	ctx := t.Context()
	ok(t, st.PutDistRoot(ctx, 1, []byte("root1"), []byte("anchor")), "root")
	ok(t, st.PutDistRoot(ctx, 1, []byte("root1"), []byte("anchor")), "root again")
	body, anchor, err := st.SiteDistRoot(ctx, 1)
	ok(t, err, "read root")
	if string(body) != "root1" || string(anchor) != "anchor" {
		t.Fatalf("root %q %q", body, anchor)
	}
	if _, _, err := st.SiteDistRoot(ctx, 2); !errs.Is(err, errs.NotFound) {
		t.Fatalf("missing root: %v", err)
	}
	for v := int64(1); v <= 3; v++ {
		ok(t, st.PutSiteDistMeta(ctx, "g1", "timestamp", v, fmt.Appendf(nil, "ts%d", v)), "meta")
	}
	v, b, err := st.LatestSiteDistMeta(ctx, "g1", "timestamp")
	ok(t, err, "latest")
	if v != 3 || string(b) != "ts3" {
		t.Fatalf("latest %d %q", v, b)
	}
	b, err = st.SiteDistMeta(ctx, "g1", "timestamp", 2)
	ok(t, err, "version 2")
	if string(b) != "ts2" {
		t.Fatalf("version 2: %q", b)
	}
	if _, _, err := st.LatestSiteDistMeta(ctx, "g2", "timestamp"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("other group: %v", err)
	}
}

func testDistReports(t *testing.T, st mirror.Store) {
	ctx := t.Context()
	for i, s := range []string{"downloading", "installing", "installed"} {
		ok(t, st.AddDistReport(ctx, &mirror.Report{Device: "d1", Group: "g1", App: "app", Version: "2.0", Status: s, At: at(time.Duration(i) * time.Second)}), "report")
	}
	ok(t, st.AddDistReport(ctx, &mirror.Report{Device: "d2", Group: "g1", App: "app", Version: "2.0", Status: "failed", Log: "boom", At: at(0)}), "report d2")
	p, err := st.PendingDistReports(ctx, 3)
	ok(t, err, "pending")
	if len(p) != 3 {
		t.Fatalf("%d pending, want 3 (the limit)", len(p))
	}
	ok(t, st.MarkDistReportsSent(ctx, []int64{p[0].ID, p[1].ID, p[2].ID}), "mark")
	p, err = st.PendingDistReports(ctx, 10)
	ok(t, err, "pending")
	if len(p) != 1 {
		t.Fatalf("%d pending after marking 3 of 4", len(p))
	}
	latest, err := st.DistReports(ctx)
	ok(t, err, "latest")
	if len(latest) != 2 || latest[0].Status != "installed" || latest[1].Status != "failed" || latest[1].Log != "boom" {
		t.Fatalf("latest reports %+v %+v", latest[0], latest[1])
	}
}

// testDistRollout: a staged rollout is stored with its bundle, pauses by
// itself when a device fails over the threshold, and moves by actions.
func testDistRollout(t *testing.T, st catalog.Store) {
	ctx := t.Context()
	svc := distService(t, st)
	ok(t, svc.AddApp(ctx, &catalog.App{ID: "app"}), "add app")
	r := release(t, svc, "app", "2.0", []byte("two"))
	_, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", Release: r.ID, Rollout: &catalog.Rollout{Phases: []int{10, 50, 100}, MaxFailures: 20}})
	ok(t, err, "staged bundle")
	if _, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g2", Release: r.ID, Rollout: &catalog.Rollout{Phases: []int{50, 40}}}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("falling phases: %v, want Invalid", err)
	}
	rollout := func() *catalog.Rollout {
		bs, err := st.DistBundles(ctx, "acme")
		ok(t, err, "bundles")
		return bs[0].Rollout
	}
	same(t, "rollout", rollout(), &catalog.Rollout{Phases: []int{10, 50, 100}, MaxFailures: 20, State: catalog.RolloutActive, Since: t0.Truncate(time.Millisecond)})
	_, err = svc.RolloutAction(ctx, "acme", "g1", "app", catalog.ActionAdvance)
	ok(t, err, "advance")
	var sts []*catalog.Status
	for i := range 4 {
		sts = append(sts, &catalog.Status{Group: "g1", Device: fmt.Sprintf("d%d", i), App: "app", Version: "2.0", Status: catalog.StatusInstalled, At: t0})
	}
	ok(t, svc.RecordStatus(ctx, "acme", "site-test", sts), "four installed")
	if got := rollout(); got.State != catalog.RolloutActive || got.Phase != 1 {
		t.Fatalf("after four installs: %+v", got)
	}
	ok(t, svc.RecordStatus(ctx, "acme", "site-test", []*catalog.Status{{Group: "g1", Device: "d9", App: "app", Version: "2.0", Status: catalog.StatusFailed, At: t0}}), "one failed")
	if got := rollout(); got.State != catalog.RolloutActive {
		t.Fatalf("1 of 5 failed (20%%, not over 20%%): %+v", got)
	}
	ok(t, svc.RecordStatus(ctx, "acme", "site-test", []*catalog.Status{{Group: "g1", Device: "d8", App: "app", Version: "2.0", Status: catalog.StatusFailed, At: t0}}), "two failed")
	if got := rollout(); got.State != catalog.RolloutPaused || got.Reason == "" {
		t.Fatalf("2 of 6 failed: %+v", got)
	}
	if _, err := svc.RolloutAction(ctx, "acme", "g1", "app", catalog.ActionAdvance); !errs.Is(err, errs.Conflict) {
		t.Fatalf("advance while paused: %v, want Conflict", err)
	}
	for _, a := range []string{catalog.ActionResume, catalog.ActionAdvance} {
		_, err := svc.RolloutAction(ctx, "acme", "g1", "app", a)
		ok(t, err, a)
	}
	if got := rollout(); got.State != catalog.RolloutDone || got.Percent() != 100 {
		t.Fatalf("after the last phase: %+v", got)
	}

	// A rollout that advances by itself: 10% of 40 devices is 4; 75% of
	// them (3) confirming moves it to 50%, then 15 of 20 to 100%.
	r3 := release(t, svc, "app", "3.0", []byte("three"))
	_, err = svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", Release: r3.ID, Rollout: &catalog.Rollout{Phases: []int{10, 50, 100}, MaxFailures: 20, AutoAdvance: 75}})
	ok(t, err, "auto bundle")
	ok(t, svc.SiteDevices(ctx, "acme", "site-a", map[string]int{"g1": 30}), "counts a")
	ok(t, svc.SiteDevices(ctx, "acme", "site-b", map[string]int{"g1": 10, "g2": 5}), "counts b")
	counts, err := st.DistSiteDevices(ctx, "acme")
	ok(t, err, "counts")
	same(t, "counts", len(counts), 3)
	install := func(from, to int) {
		var sts []*catalog.Status
		for i := from; i < to; i++ {
			sts = append(sts, &catalog.Status{Group: "g1", Device: fmt.Sprintf("a%d", i), App: "app", Version: "3.0", Status: catalog.StatusInstalled, At: t0})
		}
		ok(t, svc.RecordStatus(ctx, "acme", "site-a", sts), "installs")
	}
	install(0, 2)
	if got := rollout(); got.Phase != 0 {
		t.Fatalf("2 of 4 installed: %+v", got)
	}
	install(2, 3)
	if got := rollout(); got.Phase != 1 || got.State != catalog.RolloutActive {
		t.Fatalf("3 of 4 installed: %+v", got)
	}
	install(3, 15)
	if got := rollout(); got.State != catalog.RolloutDone {
		t.Fatalf("15 of 20 installed: %+v", got)
	}
}

// testDistChannels: a bundle that follows a channel moves to a newer release
// published on it, and only on it; a bundle naming a release stays.
func testDistChannels(t *testing.T, st catalog.Store) {
	ctx := t.Context()
	svc := distService(t, st)
	ok(t, svc.AddApp(ctx, &catalog.App{ID: "app"}), "add app")
	release(t, svc, "app", "1.0", []byte("one"))
	_, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g1", App: "app", Channel: "stable"})
	ok(t, err, "follow stable")
	_, err = svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g2", Release: "app-1.0"})
	ok(t, err, "pinned bundle")
	beta := &catalog.Release{App: "app", Version: "3.0-beta", Channel: "beta", Artifacts: []catalog.Artifact{upload(t, svc, "linux-amd64", []byte("beta"))}}
	ok(t, svc.AddRelease(ctx, beta), "beta release")
	release(t, svc, "app", "2.0", []byte("two"))
	bs, err := st.DistBundles(ctx, "acme")
	ok(t, err, "bundles")
	got := map[string]string{}
	for _, b := range bs {
		got[b.Group] = b.Release
	}
	same(t, "bundles", got, map[string]string{"g1": "app-2.0", "g2": "app-1.0"})
	m, err := st.LatestDistMeta(ctx, "acme", "g1", "targets")
	ok(t, err, "g1 targets")
	if m.Version != 2 {
		t.Fatalf("g1 targets version %d after following 2.0, want 2", m.Version)
	}
	if _, err := svc.AddBundle(ctx, &catalog.Bundle{Customer: "acme", Group: "g3", App: "app", Channel: "nightly"}); !errs.Is(err, errs.NotFound) {
		t.Fatalf("empty channel: %v, want NotFound", err)
	}
}
