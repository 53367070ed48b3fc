// Package tufmeta signs and verifies licet's update metadata on the model of
// The Update Framework (TUF), with github.com/theupdateframework/go-tuf/v2:
// one root role for the vendor, and per customer group a repository of
// targets, snapshot and timestamp metadata with versions and expiry. The
// targets metadata names its scope (customer and group) at the top and in
// every target, so metadata of one group is refused by a device of another.
//
// Refresh is the client workflow of the TUF specification (section 5):
// root rotation version by version with the thresholds of the old and the
// new root, then timestamp, snapshot and targets, each checked against the
// version, hashes and expiry that the role above it signed. A caller keeps
// the bytes Refresh returns and persists them only when it succeeds, so a
// rejected update never moves the trusted versions.
package tufmeta

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/licet/licet/errs"
)

// The four top-level TUF roles.
const (
	RoleRoot      = metadata.ROOT
	RoleTargets   = metadata.TARGETS
	RoleSnapshot  = metadata.SNAPSHOT
	RoleTimestamp = metadata.TIMESTAMP
)

// Roles lists the top-level roles in the order root, targets, snapshot, timestamp.
var Roles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

// scopeField is the field of the targets metadata that names its scope.
const scopeField = "x-licet-scope"

// MaxMetadata bounds the size of one metadata file a client accepts.
const MaxMetadata = 4 << 20

// Scope names the repository a targets metadata belongs to: one customer's
// group of devices.
type Scope struct {
	Customer string `json:"customer"`
	Group    string `json:"group"`
}

func (s Scope) String() string { return s.Customer + "/" + s.Group }

// Target is one artifact of a bundle as the signed targets metadata lists it.
type Target struct {
	Path     string `json:"-"` // CUSTOMER/GROUP/APP/VERSION/PLATFORM/NAME
	Length   int64  `json:"-"`
	SHA256   string `json:"-"` // lower-case hex
	Customer string `json:"customer"`
	Group    string `json:"group"`
	App      string `json:"app"`
	Version  string `json:"version"`
	Release  string `json:"release"`
	Platform string `json:"platform"`
	Name     string `json:"name"`
	// Rollout, if set, limits the target to a share of the group's devices.
	Rollout *Gate `json:"rollout,omitempty"`
}

// Gate is a staged rollout's signed rule: a device installs the target only
// while the rollout is not paused and its bucket (0-99, from the salt and
// its name, or with By "sites" its site's ID) is below Percent.
type Gate struct {
	Salt    string `json:"salt"`
	Percent int    `json:"percent"`
	Paused  bool   `json:"paused,omitempty"`
	By      string `json:"by,omitempty"` // "" or "devices": per device; "sites": per site
}

// Bucket places a device in 0..99 for a rollout's salt.
func Bucket(salt, device string) int {
	h := sha256.Sum256([]byte("licet rollout\n" + salt + "\n" + device))
	return int((uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3])) % 100)
}

// Admits reports whether a device, at a site, may install the target now.
func (t *Target) Admits(device, site string) bool {
	if t.Rollout == nil {
		return true
	}
	who := device
	if t.Rollout.By == "sites" {
		who = "site:" + site
	}
	return !t.Rollout.Paused && Bucket(t.Rollout.Salt, who) < t.Rollout.Percent
}

// TargetPath is the path of a target in its repository.
func TargetPath(t Target) string {
	return t.Customer + "/" + t.Group + "/" + t.App + "/" + t.Version + "/" + t.Platform + "/" + t.Name
}

// RoleKeys are the public keys and threshold of one role.
type RoleKeys struct {
	Keys      []ed25519.PublicKey
	Threshold int
}

// DeriveKey derives the Ed25519 key of a role's generation from secret (the
// vendor's distribution key's seed; before it existed, the root key's). Rotating a role's key means moving to the next
// generation; the keys never need a file of their own.
func DeriveKey(secret []byte, role string, generation int) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, secret, []byte("licet distribution tuf key"), role+"/"+strconv.Itoa(generation), ed25519.SeedSize)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "derive %s key", role)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// KeyID returns the TUF key ID of an Ed25519 public key.
func KeyID(pub ed25519.PublicKey) (string, error) {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return "", errs.Wrap(errs.Internal, err, "TUF key")
	}
	return k.ID()
}

func sign[T metadata.Roles](md *metadata.Metadata[T], signers []ed25519.PrivateKey) ([]byte, error) {
	for _, priv := range signers {
		s, err := signature.LoadED25519Signer(priv)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "load signer")
		}
		if _, err := md.Sign(s); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "sign metadata")
		}
	}
	b, err := md.ToBytes(false)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode metadata")
	}
	return b, nil
}

// SignRoot makes root metadata of version with the roles' keys, signed by
// signers (for a rotation: enough keys of the previous root and of this one).
func SignRoot(version int64, expires time.Time, roles map[string]RoleKeys, signers []ed25519.PrivateKey) ([]byte, error) {
	md := metadata.Root(expires.UTC().Truncate(time.Second))
	md.Signed.Version = version
	md.Signed.ConsistentSnapshot = true
	for _, role := range Roles {
		rk, ok := roles[role]
		if !ok || len(rk.Keys) == 0 {
			return nil, errs.E(errs.Invalid, "root: role %s has no keys", role)
		}
		if rk.Threshold < 1 || rk.Threshold > len(rk.Keys) {
			return nil, errs.E(errs.Invalid, "root: threshold %d of role %s must be between 1 and its %d keys", rk.Threshold, role, len(rk.Keys))
		}
		for _, pub := range rk.Keys {
			k, err := metadata.KeyFromPublicKey(pub)
			if err != nil {
				return nil, errs.Wrap(errs.Internal, err, "TUF key")
			}
			if err := md.Signed.AddKey(k, role); err != nil {
				return nil, errs.Wrap(errs.Internal, err, "add key to %s", role)
			}
		}
		md.Signed.Roles[role].Threshold = rk.Threshold
	}
	return sign(md, signers)
}

// SignTargets makes the targets metadata of scope listing targets.
func SignTargets(version int64, expires time.Time, scope Scope, targets []Target, signers []ed25519.PrivateKey) ([]byte, error) {
	md := metadata.Targets(expires.UTC().Truncate(time.Second))
	md.Signed.Version = version
	md.Signed.UnrecognizedFields = map[string]any{scopeField: map[string]any{"customer": scope.Customer, "group": scope.Group}}
	for _, t := range targets {
		if t.Customer != scope.Customer || t.Group != scope.Group {
			return nil, errs.E(errs.Internal, "target %s is not of scope %s", t.Path, scope)
		}
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil || len(sum) != sha256.Size {
			return nil, errs.E(errs.Invalid, "target %s: sha256 %q is not 64 hexadecimal digits", t.Path, t.SHA256)
		}
		custom, err := json.Marshal(t)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "encode target")
		}
		raw := json.RawMessage(custom)
		path := TargetPath(t)
		md.Signed.Targets[path] = &metadata.TargetFiles{Length: t.Length, Hashes: metadata.Hashes{"sha256": sum}, Custom: &raw, Path: path}
	}
	return sign(md, signers)
}

func metaFile(version int64, body []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(body)
	return &metadata.MetaFiles{Version: version, Length: int64(len(body)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

// SignSnapshot makes snapshot metadata naming the targets metadata by
// version, length and hash.
func SignSnapshot(version int64, expires time.Time, targetsVersion int64, targets []byte, signers []ed25519.PrivateKey) ([]byte, error) {
	md := metadata.Snapshot(expires.UTC().Truncate(time.Second))
	md.Signed.Version = version
	md.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metaFile(targetsVersion, targets)}
	return sign(md, signers)
}

// SignTimestamp makes timestamp metadata naming the snapshot by version,
// length and hash.
func SignTimestamp(version int64, expires time.Time, snapshotVersion int64, snapshot []byte, signers []ed25519.PrivateKey) ([]byte, error) {
	md := metadata.Timestamp(expires.UTC().Truncate(time.Second))
	md.Signed.Version = version
	md.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metaFile(snapshotVersion, snapshot)}
	return sign(md, signers)
}

// Info reads the version and expiry of any role's metadata without checking
// its signatures (for storage and display only).
func Info(body []byte) (role string, version int64, expires time.Time, err error) {
	var v struct {
		Signed struct {
			Type    string    `json:"_type"`
			Version int64     `json:"version"`
			Expires time.Time `json:"expires"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Signed.Type == "" {
		return "", 0, time.Time{}, errs.E(errs.Invalid, "metadata is not TUF JSON with signed._type, version and expires")
	}
	return v.Signed.Type, v.Signed.Version, v.Signed.Expires, nil
}

// Trusted is a client's trusted metadata, as the bytes it verified last.
// Root is required; the others are nil before the first refresh.
type Trusted struct {
	Root      []byte `json:"root"`
	Timestamp []byte `json:"timestamp,omitempty"`
	Snapshot  []byte `json:"snapshot,omitempty"`
	Targets   []byte `json:"targets,omitempty"`
}

// Source is where a client fetches metadata: a site over HTTP, the vendor,
// or an import file. Root returns errs.NotFound past the newest version.
type Source interface {
	Root(ctx context.Context, version int64) ([]byte, error)
	Timestamp(ctx context.Context) ([]byte, error)
	Snapshot(ctx context.Context, version int64) ([]byte, error)
	Targets(ctx context.Context, version int64) ([]byte, error)
}

// Verified is the outcome of a successful refresh.
type Verified struct {
	Scope            Scope
	RootVersion      int64
	TimestampVersion int64
	SnapshotVersion  int64
	TargetsVersion   int64
	Expires          time.Time // the earliest expiry of the four
	Targets          []Target  // sorted by path
	Changed          bool      // whether anything newer than the trusted metadata was loaded
}

// ErrRejected marks metadata refused for a reason of security: a rollback,
// expired (frozen) metadata, a bad signature, a mix of metadata from
// different versions, or another scope's metadata.
var ErrRejected = errors.New("update metadata rejected")

func reject(err error, format string, args ...any) error {
	return errs.Wrap(errs.Invalid, fmt.Errorf("%w: %w", ErrRejected, err), format, args...)
}

// maxRootSteps bounds the root versions a client walks in one refresh.
const maxRootSteps = 64

// Refresh verifies what src serves against cur, as a device of scope sees
// it at time now, and returns the new trusted metadata and its targets. On
// any error cur stays what the caller trusts.
func Refresh(ctx context.Context, cur Trusted, src Source, scope Scope, now time.Time) (Trusted, *Verified, error) {
	if len(cur.Root) == 0 {
		return cur, nil, errs.E(errs.Invalid, "no trusted root metadata: initialise the updater with the vendor's root")
	}
	tm, err := trustedmetadata.New(cur.Root)
	if err != nil {
		return cur, nil, reject(err, "trusted root metadata is not valid")
	}
	tm.RefTime = now.UTC()
	next := Trusted{Root: cur.Root}
	changed := false
	// 1. Root rotation: each new version signed by the old and the new threshold.
	for i := 0; i < maxRootSteps; i++ {
		v := tm.Root.Signed.Version + 1
		body, err := src.Root(ctx, v)
		if errs.Is(err, errs.NotFound) {
			break
		}
		if err != nil {
			return cur, nil, err
		}
		if _, err := tm.UpdateRoot(body); err != nil {
			return cur, nil, reject(err, "root metadata version %d", v)
		}
		next.Root, changed = body, true
	}
	// 2. Timestamp: the trusted one first, for rollback protection (one that
	// no longer verifies after a key rotation is dropped, as TUF's
	// fast-forward attack recovery does).
	if len(cur.Timestamp) > 0 {
		if _, err := tm.UpdateTimestamp(cur.Timestamp); err != nil && !errors.Is(err, &metadata.ErrRepository{}) {
			return cur, nil, reject(err, "trusted timestamp")
		}
	}
	ts, err := src.Timestamp(ctx)
	if err != nil {
		return cur, nil, err
	}
	next.Timestamp = cur.Timestamp
	if _, err := tm.UpdateTimestamp(ts); err != nil {
		if !errors.Is(err, &metadata.ErrEqualVersionNumber{}) && !errors.Is(err, &metadata.ErrExpiredMetadata{}) {
			return cur, nil, reject(err, "timestamp metadata")
		}
	} else if !bytes.Equal(ts, cur.Timestamp) {
		next.Timestamp, changed = ts, true
	}
	if tm.Timestamp == nil {
		return cur, nil, reject(errors.New("no timestamp"), "timestamp metadata")
	}
	if tm.Timestamp.Signed.IsExpired(now) {
		return cur, nil, reject(errors.New("expired"), "timestamp metadata version %d expired on %s: the server is stale or replays old metadata (freeze attack); the vendor must re-sign it",
			tm.Timestamp.Signed.Version, tm.Timestamp.Signed.Expires.Format(time.RFC3339))
	}
	// 3. Snapshot at the version, length and hash the timestamp names.
	want := tm.Timestamp.Signed.Meta["snapshot.json"]
	if want == nil {
		return cur, nil, reject(errors.New("no snapshot.json"), "timestamp metadata names no snapshot")
	}
	next.Snapshot = cur.Snapshot
	if len(cur.Snapshot) > 0 {
		if _, err := tm.UpdateSnapshot(cur.Snapshot, true); err != nil && !errors.Is(err, &metadata.ErrRepository{}) {
			return cur, nil, reject(err, "trusted snapshot")
		}
	}
	if tm.Snapshot == nil || tm.Snapshot.Signed.Version != want.Version || want.VerifyLengthHashes(cur.Snapshot) != nil {
		body, err := src.Snapshot(ctx, want.Version)
		if err != nil {
			return cur, nil, err
		}
		if _, err := tm.UpdateSnapshot(body, false); err != nil {
			return cur, nil, reject(err, "snapshot metadata version %d", want.Version)
		}
		next.Snapshot, changed = body, true
	}
	// 4. Targets at the version the snapshot names.
	tw := tm.Snapshot.Signed.Meta["targets.json"]
	if tw == nil {
		return cur, nil, reject(errors.New("no targets.json"), "snapshot metadata names no targets")
	}
	body := cur.Targets
	if len(body) == 0 || !targetsMatch(body, tw) {
		if body, err = src.Targets(ctx, tw.Version); err != nil {
			return cur, nil, err
		}
	}
	tgt, err := tm.UpdateTargets(body)
	if err != nil {
		return cur, nil, reject(err, "targets metadata version %d", tw.Version)
	}
	if !bytes.Equal(body, cur.Targets) {
		changed = true
	}
	next.Targets = body
	// 5. The scope: this device's customer and group, at the top and in every target.
	out := &Verified{Scope: scope, RootVersion: tm.Root.Signed.Version, TimestampVersion: tm.Timestamp.Signed.Version,
		SnapshotVersion: tm.Snapshot.Signed.Version, TargetsVersion: tgt.Signed.Version, Changed: changed}
	got, _ := tgt.Signed.UnrecognizedFields[scopeField].(map[string]any)
	if got == nil || got["customer"] != scope.Customer || got["group"] != scope.Group {
		return cur, nil, reject(errors.New("scope mismatch"), "targets metadata is for %v, not this device's customer %q and group %q: another group's bundle (crossing groups)", got, scope.Customer, scope.Group)
	}
	for path, f := range tgt.Signed.Targets {
		var t Target
		if f.Custom == nil || json.Unmarshal(*f.Custom, &t) != nil {
			return cur, nil, reject(errors.New("no custom"), "target %s carries no licet description", path)
		}
		if t.Customer != scope.Customer || t.Group != scope.Group || TargetPath(t) != path {
			return cur, nil, reject(errors.New("scope mismatch"), "target %s is for customer %q group %q, not this device's %s", path, t.Customer, t.Group, scope)
		}
		sum, ok := f.Hashes["sha256"]
		if !ok || len(sum) != sha256.Size {
			return cur, nil, reject(errors.New("no sha256"), "target %s has no SHA-256", path)
		}
		t.Path, t.Length, t.SHA256 = path, f.Length, hex.EncodeToString(sum)
		out.Targets = append(out.Targets, t)
	}
	slices.SortFunc(out.Targets, func(a, b Target) int { return cmpString(a.Path, b.Path) })
	out.Expires = slices.MinFunc([]time.Time{tm.Root.Signed.Expires, tm.Timestamp.Signed.Expires, tm.Snapshot.Signed.Expires, tgt.Signed.Expires},
		func(a, b time.Time) int { return a.Compare(b) })
	return next, out, nil
}

func targetsMatch(body []byte, want *metadata.MetaFiles) bool {
	if err := want.VerifyLengthHashes(body); err != nil {
		return false
	}
	_, v, _, err := Info(body)
	return err == nil && v == want.Version
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
