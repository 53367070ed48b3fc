// Package catalog is the vendor's side of software distribution: the
// applications, their releases (per-platform artifacts with size and
// SHA-256, release notes, a channel), the bundle each customer's device group
// is assigned, the signed TUF metadata of every group's repository, and per
// customer and application the current and the confirmed installed version.
//
// Artifacts are stored in the database in chunks of ChunkSize bytes, so any
// vendor replica on a shared PostgreSQL serves them, and are hashed as a
// stream when they are committed: no artifact is ever held whole in memory.
package catalog

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	mrand "math/rand/v2"
	"regexp"
	"slices"
	"time"

	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
)

// ChunkSize is the size of every stored artifact chunk but the last; an
// upload sends one chunk per request.
const ChunkSize = 512 << 10

// MaxArtifact bounds the size of one artifact (16 GiB).
const MaxArtifact = 16 << 30

// App is an application the vendor distributes.
type App struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Artifact is one platform's file of a release.
type Artifact struct {
	Platform string `json:"platform"` // e.g. linux-amd64
	Name     string `json:"name"`     // the file name it installs as
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"` // lower-case hex
}

// Release is a version of an application.
type Release struct {
	ID        string     `json:"id"` // default APP-VERSION
	App       string     `json:"app"`
	Version   string     `json:"version"`
	Channel   string     `json:"channel"` // default "stable"
	Notes     string     `json:"notes"`
	Artifacts []Artifact `json:"artifacts"`
	Created   time.Time  `json:"created"`
}

// Bundle assigns a release of an application to one group of a customer's devices.
type Bundle struct {
	Customer string    `json:"customer"`
	Group    string    `json:"group"`
	App      string    `json:"app"`
	Release  string    `json:"release"`
	Updated  time.Time `json:"updated"`
	Rollout  *Rollout  `json:"rollout,omitempty"` // nil: every device of the group at once
	// Channel, if set, makes the bundle follow a release channel: a newer
	// release of the application on it replaces the bundle's release.
	Channel string `json:"channel,omitempty"`
}

// Rollout states.
const (
	RolloutActive    = "active"
	RolloutPaused    = "paused"
	RolloutCancelled = "cancelled"
	RolloutDone      = "done"
)

// Rollout stages a bundle: phase by phase a larger share of the group's
// devices may install it; when more than MaxFailures percent of the devices
// that reported on the release failed, it pauses by itself.
type Rollout struct {
	Phases      []int  `json:"phases"`       // percent of devices per phase, rising, the last 100
	Phase       int    `json:"phase"`        // index of the current phase
	MaxFailures int    `json:"max_failures"` // percent of reporting devices; over it the rollout pauses
	By          string `json:"by,omitempty"` // "devices" (default): a share of the devices; "sites": of the customer's sites
	// AutoAdvance, if not 0, moves to the next phase by itself once this
	// percentage of the phase's devices (from the sites' device counts)
	// confirmed the install.
	AutoAdvance int    `json:"auto_advance,omitempty"`
	State       string `json:"state"`
	Reason      string `json:"reason,omitempty"` // why it paused
	// Since is when the rollout started or was last resumed: the error
	// threshold counts the reports from then on.
	Since time.Time `json:"since"`
}

// Percent is the share of devices admitted now.
func (r *Rollout) Percent() int {
	if r.State == RolloutCancelled {
		return 0
	}
	return r.Phases[r.Phase]
}

// Blob is a stored artifact body, by SHA-256.
type Blob struct {
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	Complete bool   `json:"complete"` // all chunks uploaded and the hash checked
}

// Meta is one version of one role's metadata of a group's repository.
type Meta struct {
	Customer string
	Group    string
	Role     string
	Version  int64
	Expires  time.Time
	Body     []byte
}

// RootRecord is one version of the root metadata with the key generations
// and thresholds it was made with.
type RootRecord struct {
	Version int64
	Body    []byte
	Keyring Keyring
}

// KeyState is the generation and threshold of one role's keys, and the
// secret they derive from.
type KeyState struct {
	Generation int `json:"generation"`
	Threshold  int `json:"threshold"`
	// From names the secret the keys derive from: KeysFromDistribution, or
	// "" for keys that licet derived from the vendor root key's seed before
	// the distribution key existed (Service.LegacySecret).
	From string `json:"from,omitempty"`
}

// KeysFromDistribution marks role keys derived from the distribution key's
// seed (Service.Secret).
const KeysFromDistribution = "distribution"

// Keyring maps role names to their key state.
type Keyring map[string]KeyState

// Device statuses a device reports through its site.
const (
	StatusDownloading = "downloading"
	StatusInstalling  = "installing"
	StatusInstalled   = "installed"
	StatusFailed      = "failed"
)

// Statuses lists the device statuses.
var Statuses = []string{StatusDownloading, StatusInstalling, StatusInstalled, StatusFailed}

// Status is the last status a device reported for an application.
type Status struct {
	Customer string    `json:"customer"`
	Site     string    `json:"site,omitempty"` // the site that reported it, from its certificate
	Group    string    `json:"group"`
	Device   string    `json:"device"`
	App      string    `json:"app"`
	Version  string    `json:"version"`
	Status   string    `json:"status"`
	Log      string    `json:"log,omitempty"` // the end of the install log, for failures
	At       time.Time `json:"at"`
}

// Installed is a customer's confirmed installed version of an application.
type Installed struct {
	Customer string    `json:"customer"`
	App      string    `json:"app"`
	Version  string    `json:"version"`
	Device   string    `json:"device"` // the device whose confirmation set it
	At       time.Time `json:"at"`
}

// Store keeps the catalogue. The SQL stores implement it.
type Store interface {
	AddDistApp(ctx context.Context, a *App) error
	DistApps(ctx context.Context) ([]*App, error)
	// AddDistRelease stores a release with its artifacts; Conflict if its
	// ID or its application and version exist.
	AddDistRelease(ctx context.Context, r *Release) error
	DistRelease(ctx context.Context, id string) (*Release, error)
	DistReleases(ctx context.Context, app string) ([]*Release, error)
	// PutDistChunk stores chunk idx of a blob (again: replaced).
	PutDistChunk(ctx context.Context, sha string, idx int64, data []byte) error
	// DistChunks calls fn with the blob's chunks from index from on, in order.
	DistChunks(ctx context.Context, sha string, from int64, fn func(idx int64, data []byte) error) error
	// CommitDistBlob marks a blob complete with its size.
	CommitDistBlob(ctx context.Context, sha string, size int64) error
	DistBlob(ctx context.Context, sha string) (*Blob, error)
	SetDistBundle(ctx context.Context, b *Bundle) error
	DistBundles(ctx context.Context, customer string) ([]*Bundle, error)
	// AddDistRoot stores a root version; Conflict if it exists.
	AddDistRoot(ctx context.Context, r *RootRecord) error
	// DistRoots returns every root version, oldest first.
	DistRoots(ctx context.Context) ([]*RootRecord, error)
	// AddDistMeta stores a metadata version; Conflict if it exists.
	AddDistMeta(ctx context.Context, m *Meta) error
	// LatestDistMeta returns the newest version of a role; NotFound if none.
	LatestDistMeta(ctx context.Context, customer, group, role string) (*Meta, error)
	// RecordDistStatuses stores devices' statuses in one transaction; an
	// installed status also sets the customer's installed version of the
	// application.
	RecordDistStatuses(ctx context.Context, sts []*Status) error
	DistStatuses(ctx context.Context, customer string) ([]*Status, error)
	DistInstalled(ctx context.Context, customer string) ([]*Installed, error)
	// SetDistSiteDevices replaces a site's device counts per group.
	SetDistSiteDevices(ctx context.Context, customer, site string, counts map[string]int, at time.Time) error
	// DistSiteDevices lists a customer's device counts by site and group.
	DistSiteDevices(ctx context.Context, customer string) ([]*SiteDevices, error)
}

// SiteDevices is how many devices a site has in a group.
type SiteDevices struct {
	Site    string `json:"site"`
	Group   string `json:"group"`
	Devices int    `json:"devices"`
}

// Expiries are how long each role's metadata is valid after signing.
type Expiries struct {
	Root, Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiries suit online sites that sync at least daily.
var DefaultExpiries = Expiries{Root: 365 * 24 * time.Hour, Targets: 90 * 24 * time.Hour, Snapshot: 7 * 24 * time.Hour, Timestamp: 24 * time.Hour}

// Service runs the catalogue.
type Service struct {
	Store Store
	// Secret derives the TUF role keys (tufmeta.DeriveKey): the seed of the
	// vendor's distribution key (Authority), which is online.
	Secret []byte
	// LegacySecret is the vendor root key's seed, from which licet derived
	// the role keys before the distribution key existed; nil while the root
	// key is offline. Roots uses it once, to move such keys to Secret.
	LegacySecret []byte
	// Anchor signs the first root metadata's anchor message with the
	// distribution key (SignAnchor), so sites and agents can trust it from
	// the vendor root certificate; nil sends no anchor (tests of the store).
	Anchor func(msg []byte) Anchor
	// CustomerExists returns NotFound for an unknown customer.
	CustomerExists func(ctx context.Context, id string) error
	Expiries       Expiries
	Now            func() time.Time
}

var (
	versionRE  = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$`)
	platformRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)
)

// CheckSHA256 checks a lower-case hexadecimal SHA-256; field names it.
func CheckSHA256(field, v string) error {
	if b, err := hex.DecodeString(v); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != v {
		return errs.E(errs.Invalid, "%s %q is not a SHA-256: give 64 lower-case hexadecimal digits", field, v)
	}
	return nil
}

func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Millisecond) }

// AddApp adds an application.
func (s *Service) AddApp(ctx context.Context, a *App) error {
	if err := ids.CheckSlug("id", a.ID); err != nil {
		return err
	}
	if a.Name == "" {
		a.Name = a.ID
	}
	a.Created = s.now()
	return s.Store.AddDistApp(ctx, a)
}

// PutChunk stores one uploaded chunk of a blob.
func (s *Service) PutChunk(ctx context.Context, sha string, idx int64, data []byte) error {
	if err := CheckSHA256("sha256", sha); err != nil {
		return err
	}
	if idx < 0 || idx > MaxArtifact/ChunkSize {
		return errs.E(errs.Invalid, "chunk index %d is out of range 0..%d", idx, MaxArtifact/ChunkSize)
	}
	if len(data) == 0 || len(data) > ChunkSize {
		return errs.E(errs.Invalid, "chunk %d has %d bytes: send 1 to %d bytes per chunk", idx, len(data), ChunkSize)
	}
	if b, err := s.Store.DistBlob(ctx, sha); err == nil && b.Complete {
		return nil // already complete: nothing to do
	}
	return s.Store.PutDistChunk(ctx, sha, idx, data)
}

// CommitBlob checks the uploaded chunks of a blob through a running hash
// against its SHA-256 and size, and marks it complete.
func (s *Service) CommitBlob(ctx context.Context, sha string, size int64) (*Blob, error) {
	if err := CheckSHA256("sha256", sha); err != nil {
		return nil, err
	}
	if size <= 0 || size > MaxArtifact {
		return nil, errs.E(errs.Invalid, "size %d is out of range 1..%d", size, int64(MaxArtifact))
	}
	if b, err := s.Store.DistBlob(ctx, sha); err == nil && b.Complete {
		if b.Size != size {
			return nil, errs.E(errs.Conflict, "blob %s is stored with size %d, not %d", sha, b.Size, size)
		}
		return b, nil
	}
	h := sha256.New()
	var n, next int64
	err := s.Store.DistChunks(ctx, sha, 0, func(idx int64, data []byte) error {
		if idx != next {
			return errs.E(errs.Invalid, "blob %s lacks chunk %d: upload it again (chunks of %d bytes)", sha, next, ChunkSize)
		}
		if int64(len(data)) != ChunkSize && n+int64(len(data)) != size {
			return errs.E(errs.Invalid, "blob %s: chunk %d has %d bytes; every chunk but the last must have %d", sha, idx, len(data), ChunkSize)
		}
		next++
		n += int64(len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n != size {
		return nil, errs.E(errs.Invalid, "blob %s: %d bytes uploaded, size says %d: upload the missing chunks", sha, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return nil, errs.E(errs.Invalid, "blob %s: the uploaded bytes hash to %s: upload it again", sha, got)
	}
	if err := s.Store.CommitDistBlob(ctx, sha, size); err != nil {
		return nil, err
	}
	return &Blob{SHA256: sha, Size: size, Complete: true}, nil
}

// AddRelease adds a release whose artifacts are uploaded and complete.
func (s *Service) AddRelease(ctx context.Context, r *Release) error {
	if err := ids.CheckSlug("app", r.App); err != nil {
		return err
	}
	if !versionRE.MatchString(r.Version) {
		return errs.E(errs.Invalid, "version %q is not valid: use letters, digits, '.', '+', '_' or '-'", r.Version)
	}
	if r.ID == "" {
		r.ID = r.App + "-" + r.Version
	}
	if r.Channel == "" {
		r.Channel = "stable"
	}
	if err := ids.CheckSlug("id", r.ID); err != nil {
		return err
	}
	if err := ids.CheckSlug("channel", r.Channel); err != nil {
		return err
	}
	if len(r.Notes) > 64<<10 {
		return errs.E(errs.Invalid, "notes: %d bytes is over the limit of 64 KiB", len(r.Notes))
	}
	if len(r.Artifacts) == 0 || len(r.Artifacts) > 64 {
		return errs.E(errs.Invalid, "artifacts: a release needs 1 to 64 artifacts, one per platform")
	}
	seen := map[string]bool{}
	for i, a := range r.Artifacts {
		if !platformRE.MatchString(a.Platform) {
			return errs.E(errs.Invalid, "artifacts[%d].platform %q is not valid: use e.g. linux-amd64", i, a.Platform)
		}
		if seen[a.Platform] {
			return errs.E(errs.Invalid, "artifacts[%d]: platform %s is given twice", i, a.Platform)
		}
		seen[a.Platform] = true
		if !nameRE.MatchString(a.Name) {
			return errs.E(errs.Invalid, "artifacts[%d].name %q is not a plain file name", i, a.Name)
		}
		if err := CheckSHA256("artifacts["+a.Platform+"].sha256", a.SHA256); err != nil {
			return err
		}
		b, err := s.Store.DistBlob(ctx, a.SHA256)
		if errs.Is(err, errs.NotFound) || (err == nil && !b.Complete) {
			return errs.E(errs.Invalid, "artifacts[%s]: blob %s is not uploaded: upload it first ('licet vendor release add' does)", a.Platform, a.SHA256)
		}
		if err != nil {
			return err
		}
		if b.Size != a.Size {
			return errs.E(errs.Invalid, "artifacts[%s].size %d differs from the uploaded blob's %d bytes", a.Platform, a.Size, b.Size)
		}
	}
	r.Created = s.now()
	if err := s.Store.AddDistRelease(ctx, r); err != nil {
		return err
	}
	return s.followChannel(ctx, r)
}

// latestOn returns the newest release of an application on a channel.
func (s *Service) latestOn(ctx context.Context, app, channel string) (*Release, error) {
	if err := ids.CheckSlug("app", app); err != nil {
		return nil, err
	}
	rs, err := s.Store.DistReleases(ctx, app)
	if err != nil {
		return nil, err
	}
	var best *Release
	for _, r := range rs {
		if r.Channel == channel && (best == nil || CompareVersions(r.Version, best.Version) > 0) {
			best = r
		}
	}
	if best == nil {
		return nil, errs.E(errs.NotFound, "application %s has no release on channel %s yet", app, channel)
	}
	return best, nil
}

// followChannel moves the bundles that follow a new release's channel to
// it (restarting a staged rollout from its first phase) and publishes their
// groups' metadata: publishing a release starts its transfer.
func (s *Service) followChannel(ctx context.Context, r *Release) error {
	bs, err := s.Store.DistBundles(ctx, "")
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.Channel != r.Channel || b.App != r.App || b.Release == r.ID {
			continue
		}
		cur, err := s.Store.DistRelease(ctx, b.Release)
		if err != nil {
			return err
		}
		if CompareVersions(r.Version, cur.Version) <= 0 {
			continue
		}
		b.Release = r.ID
		if _, err := s.AddBundle(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// AddBundle assigns a release to a group of a customer's devices and
// publishes the group's new signed metadata.
func (s *Service) AddBundle(ctx context.Context, b *Bundle) (*Meta, error) {
	if err := ids.CheckSlug("customer", b.Customer); err != nil {
		return nil, err
	}
	if err := ids.CheckSlug("group", b.Group); err != nil {
		return nil, err
	}
	if s.CustomerExists != nil {
		if err := s.CustomerExists(ctx, b.Customer); err != nil {
			return nil, err
		}
	}
	if b.Channel != "" {
		if err := ids.CheckSlug("channel", b.Channel); err != nil {
			return nil, err
		}
		if b.Release == "" {
			latest, err := s.latestOn(ctx, b.App, b.Channel)
			if err != nil {
				return nil, err
			}
			b.Release = latest.ID
		}
	}
	if b.Release == "" {
		return nil, errs.E(errs.Invalid, "release: name the release to bundle, or a channel (and app) to follow")
	}
	rel, err := s.Store.DistRelease(ctx, b.Release)
	if err != nil {
		return nil, err
	}
	if b.App != "" && b.App != rel.App {
		return nil, errs.E(errs.Invalid, "release %s is of application %s, not %s", rel.ID, rel.App, b.App)
	}
	if b.Channel != "" && rel.Channel != b.Channel {
		return nil, errs.E(errs.Invalid, "release %s is on channel %s, not %s", rel.ID, rel.Channel, b.Channel)
	}
	if r := b.Rollout; r != nil {
		if len(r.Phases) == 0 || len(r.Phases) > 20 || r.Phases[len(r.Phases)-1] != 100 {
			return nil, errs.E(errs.Invalid, "rollout.phases %v: give 1 to 20 rising percentages ending in 100, e.g. 10,50,100", r.Phases)
		}
		for i, p := range r.Phases {
			if p < 1 || p > 100 || (i > 0 && p <= r.Phases[i-1]) {
				return nil, errs.E(errs.Invalid, "rollout.phases %v: percentages must rise from 1 to 100", r.Phases)
			}
		}
		if r.By != "" && r.By != "devices" && r.By != "sites" {
			return nil, errs.E(errs.Invalid, "rollout.by %q: give devices or sites", r.By)
		}
		if r.AutoAdvance < 0 || r.AutoAdvance > 100 {
			return nil, errs.E(errs.Invalid, "rollout.auto_advance %d: give a percentage from 1 to 100, or 0 to advance by hand", r.AutoAdvance)
		}
		if r.MaxFailures < 0 || r.MaxFailures > 100 {
			return nil, errs.E(errs.Invalid, "rollout.max_failures %d: give a percentage from 0 to 100", r.MaxFailures)
		}
		r.Phase, r.State, r.Reason, r.Since = 0, RolloutActive, "", s.now()
	}
	b.App, b.Updated = rel.App, s.now()
	if err := s.Store.SetDistBundle(ctx, b); err != nil {
		return nil, err
	}
	return s.Publish(ctx, b.Customer, b.Group, s.Expiries.Timestamp)
}

// keys returns the private keys of a role at its current state.
func (s *Service) keys(k Keyring, role string) ([]ed25519.PrivateKey, tufmeta.RoleKeys, error) {
	st := k[role]
	rk := tufmeta.RoleKeys{Threshold: st.Threshold}
	secret := s.Secret
	if st.From != KeysFromDistribution {
		if secret = s.LegacySecret; secret == nil {
			return nil, rk, errLegacyKeys
		}
	}
	var privs []ed25519.PrivateKey
	for i := 0; i < st.Threshold; i++ {
		p, err := tufmeta.DeriveKey(secret, role, st.Generation*100+i)
		if err != nil {
			return nil, rk, err
		}
		privs = append(privs, p)
		rk.Keys = append(rk.Keys, p.Public().(ed25519.PublicKey))
	}
	return privs, rk, nil
}

// errLegacyKeys says what to do when role keys still derive from the root key.
var errLegacyKeys = errs.E(errs.Internal, "the update metadata's role keys still derive from the vendor root key, which is offline: put it back in the data directory as root.key, start 'licet vendor serve' once (it moves the keys to the distribution key, signing one new root version), then export it again")

// Roots returns every root version, making version 1 on first use. When the
// latest version's role keys derive from the vendor root key (made by licet
// before the distribution key existed) and LegacySecret is at hand, it first
// moves every role to keys derived from Secret, in a new root version signed
// by the old and the new root keys, so devices follow as on a rotation.
func (s *Service) Roots(ctx context.Context) ([]*RootRecord, error) {
	for try := 0; ; try++ {
		roots, err := s.Store.DistRoots(ctx)
		if err != nil {
			return nil, err
		}
		if len(roots) == 0 {
			k := Keyring{}
			for _, r := range tufmeta.Roles {
				k[r] = KeyState{Generation: 0, Threshold: 1, From: KeysFromDistribution}
			}
			_, err = s.signRoot(ctx, 1, k, nil)
		} else if last := roots[len(roots)-1]; legacyKeys(last.Keyring) && s.LegacySecret != nil {
			err = s.moveKeys(ctx, last)
		} else {
			return roots, nil
		}
		if err != nil && (!errs.Is(err, errs.Conflict) || try >= 8) {
			return nil, err
		}
	}
}

// CheckKeys makes sure that the latest root version's role keys derive from
// the distribution key (moving them, see Roots, while the root key is at
// hand) and are the keys that version names, and says what to do when not.
// Before the first root version it does nothing.
func (s *Service) CheckKeys(ctx context.Context) error {
	roots, err := s.Store.DistRoots(ctx)
	if err != nil || len(roots) == 0 {
		return err
	}
	if roots, err = s.Roots(ctx); err != nil {
		return err
	}
	last := roots[len(roots)-1]
	if legacyKeys(last.Keyring) {
		return errLegacyKeys
	}
	return s.matchRoot(last)
}

// matchRoot checks that the keys derived for root's keyring are the ones
// root names: they are not when the distribution key was replaced.
func (s *Service) matchRoot(root *RootRecord) error {
	var named struct {
		Signed struct {
			Roles map[string]struct {
				KeyIDs []string `json:"keyids"`
			} `json:"roles"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(root.Body, &named); err != nil {
		return errs.Wrap(errs.Internal, err, "update root version %d is not TUF JSON", root.Version)
	}
	for _, role := range tufmeta.Roles {
		_, rk, err := s.keys(root.Keyring, role)
		if err != nil {
			return err
		}
		for _, pub := range rk.Keys {
			id, err := tufmeta.KeyID(pub)
			if err != nil {
				return err
			}
			if !slices.Contains(named.Signed.Roles[role].KeyIDs, id) {
				return errs.E(errs.Internal, "the distribution key does not derive the %s keys of update root version %d: distribution.key was replaced since; restore it from a backup, or start distribution over (docs/distribution.md, \"What is online, what can be offline\")", role, root.Version)
			}
		}
	}
	return nil
}

// legacyKeys reports whether any role of k derives from the vendor root key.
func legacyKeys(k Keyring) bool {
	for _, st := range k {
		if st.From != KeysFromDistribution {
			return true
		}
	}
	return false
}

// moveKeys signs the root version after last with every role moved to the
// next generation of keys derived from Secret.
func (s *Service) moveKeys(ctx context.Context, last *RootRecord) error {
	oldRoot, _, err := s.keys(last.Keyring, tufmeta.RoleRoot)
	if err != nil {
		return err
	}
	k := Keyring{}
	for r, st := range last.Keyring {
		if st.From != KeysFromDistribution {
			st = KeyState{Generation: st.Generation + 1, Threshold: st.Threshold, From: KeysFromDistribution}
		}
		k[r] = st
	}
	_, err = s.signRoot(ctx, last.Version+1, k, oldRoot)
	return err
}

func (s *Service) signRoot(ctx context.Context, version int64, k Keyring, extra []ed25519.PrivateKey) (*RootRecord, error) {
	roles := map[string]tufmeta.RoleKeys{}
	var rootKeys []ed25519.PrivateKey
	for _, r := range tufmeta.Roles {
		p, rk, err := s.keys(k, r)
		if err != nil {
			return nil, err
		}
		roles[r] = rk
		if r == tufmeta.RoleRoot {
			rootKeys = p
		}
	}
	body, err := tufmeta.SignRoot(version, s.now().Add(s.Expiries.Root), roles, append(extra, rootKeys...))
	if err != nil {
		return nil, err
	}
	rec := &RootRecord{Version: version, Body: body, Keyring: k}
	return rec, s.Store.AddDistRoot(ctx, rec)
}

// Rotate moves role to new keys (and the root to threshold keys, for the
// root role) by signing a new root version with the old and new root keys.
// Devices follow on their next check; metadata signed with retired keys is
// refused from then on.
func (s *Service) Rotate(ctx context.Context, role string, threshold int) (*RootRecord, error) {
	if !slices.Contains(tufmeta.Roles, role) {
		return nil, errs.E(errs.Invalid, "role %q is not one of %v", role, tufmeta.Roles)
	}
	if threshold < 1 || threshold > 9 {
		return nil, errs.E(errs.Invalid, "threshold %d: give 1 to 9 keys", threshold)
	}
	roots, err := s.Roots(ctx)
	if err != nil {
		return nil, err
	}
	last := roots[len(roots)-1]
	oldRoot, _, err := s.keys(last.Keyring, tufmeta.RoleRoot)
	if err != nil {
		return nil, err
	}
	k := Keyring{}
	for r, st := range last.Keyring {
		k[r] = st
	}
	k[role] = KeyState{Generation: last.Keyring[role].Generation + 1, Threshold: threshold, From: KeysFromDistribution}
	var extra []ed25519.PrivateKey
	if role == tufmeta.RoleRoot {
		extra = oldRoot // the old root keys sign too, so devices trusting them accept the new ones
	}
	rec, err := s.signRoot(ctx, last.Version+1, k, extra)
	if err != nil {
		return nil, err
	}
	// Re-sign every group's metadata with the new keys on its next sync.
	return rec, nil
}

// Publish signs new targets, snapshot and timestamp metadata for a group
// from its bundles. Concurrent publishers are ordered by the metadata
// version's uniqueness: the loser retries with the next version, after a
// short random wait so that racing publishers spread out. A publisher whose
// snapshot (timestamp) would name older targets (snapshot) than the latest
// snapshot (timestamp) does loses too, so versions named never go down.
func (s *Service) Publish(ctx context.Context, customer, group string, tsValid time.Duration) (*Meta, error) {
	for try := 0; ; try++ {
		m, err := s.publish(ctx, customer, group, true, tsValid)
		if !errs.Is(err, errs.Conflict) || try >= maxPublishTries {
			return m, err
		}
		if err := conflictWait(ctx, try); err != nil {
			return nil, err
		}
	}
}

// maxPublishTries bounds the retries of a publisher that keeps losing the
// race for the next metadata version.
const maxPublishTries = 32

// conflictWait sleeps a random time that grows with the number of tries
// (up to 1 ms, doubling to 32 ms), or until ctx ends.
func conflictWait(ctx context.Context, try int) error {
	d := time.Duration(mrand.Int64N(int64(time.Millisecond) << min(try, 5)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *Service) latestVersion(ctx context.Context, customer, group, role string) (*Meta, int64, error) {
	m, err := s.Store.LatestDistMeta(ctx, customer, group, role)
	if errs.Is(err, errs.NotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return m, m.Version, nil
}

// publish signs (with newTargets) targets, then snapshot and timestamp.
func (s *Service) publish(ctx context.Context, customer, group string, newTargets bool, tsValid time.Duration) (*Meta, error) {
	roots, err := s.Roots(ctx)
	if err != nil {
		return nil, err
	}
	k := roots[len(roots)-1].Keyring
	now := s.now()
	tm, tv, err := s.latestVersion(ctx, customer, group, tufmeta.RoleTargets)
	if err != nil {
		return nil, err
	}
	if tm == nil || newTargets || now.Add(s.Expiries.Targets/2).After(tm.Expires) || !signedWith(tm.Body, roots[len(roots)-1]) {
		targets, err := s.targets(ctx, customer, group)
		if err != nil {
			return nil, err
		}
		privs, _, err := s.keys(k, tufmeta.RoleTargets)
		if err != nil {
			return nil, err
		}
		body, err := tufmeta.SignTargets(tv+1, now.Add(s.Expiries.Targets), tufmeta.Scope{Customer: customer, Group: group}, targets, privs)
		if err != nil {
			return nil, err
		}
		tm = &Meta{Customer: customer, Group: group, Role: tufmeta.RoleTargets, Version: tv + 1, Expires: now.Add(s.Expiries.Targets), Body: body}
		if err := s.Store.AddDistMeta(ctx, tm); err != nil {
			return nil, err
		}
	}
	sm, sv, err := s.latestVersion(ctx, customer, group, tufmeta.RoleSnapshot)
	if err != nil {
		return nil, err
	}
	// Each version may only name what its predecessor named or newer: a
	// publisher that read older targets than another one signed since loses
	// (and retries), instead of signing a rollback every device refuses.
	if sm != nil && namedVersion(sm.Body, "targets.json") > tm.Version {
		return nil, errs.E(errs.Conflict, "newer targets of %s/%s were published meanwhile; retry", customer, group)
	}
	privs, _, err := s.keys(k, tufmeta.RoleSnapshot)
	if err != nil {
		return nil, err
	}
	snapExp := now.Add(max(s.Expiries.Snapshot, tsValid))
	snap, err := tufmeta.SignSnapshot(sv+1, snapExp, tm.Version, tm.Body, privs)
	if err != nil {
		return nil, err
	}
	if err := s.Store.AddDistMeta(ctx, &Meta{Customer: customer, Group: group, Role: tufmeta.RoleSnapshot, Version: sv + 1, Expires: snapExp, Body: snap}); err != nil {
		return nil, err
	}
	tsm, tsv, err := s.latestVersion(ctx, customer, group, tufmeta.RoleTimestamp)
	if err != nil {
		return nil, err
	}
	if tsm != nil && namedVersion(tsm.Body, "snapshot.json") > sv+1 {
		return nil, errs.E(errs.Conflict, "a newer snapshot of %s/%s was published meanwhile; retry", customer, group)
	}
	if privs, _, err = s.keys(k, tufmeta.RoleTimestamp); err != nil {
		return nil, err
	}
	ts, err := tufmeta.SignTimestamp(tsv+1, now.Add(tsValid), sv+1, snap, privs)
	if err != nil {
		return nil, err
	}
	m := &Meta{Customer: customer, Group: group, Role: tufmeta.RoleTimestamp, Version: tsv + 1, Expires: now.Add(tsValid), Body: ts}
	return m, s.Store.AddDistMeta(ctx, m)
}

// namedVersion returns the version that snapshot or timestamp metadata
// names for file (targets.json, snapshot.json); 0 if it names none.
func namedVersion(body []byte, file string) int64 {
	var md struct {
		Signed struct {
			Meta map[string]struct {
				Version int64 `json:"version"`
			} `json:"meta"`
		} `json:"signed"`
	}
	if json.Unmarshal(body, &md) != nil {
		return 0
	}
	return md.Signed.Meta[file].Version
}

// signedWith reports whether metadata carries a signature by a key of the
// root's current generation for its role (false after a rotation).
func signedWith(body []byte, root *RootRecord) bool {
	var md struct {
		Signed struct {
			Type string `json:"_type"`
		} `json:"signed"`
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
	}
	var r struct {
		Signed struct {
			Roles map[string]struct {
				KeyIDs []string `json:"keyids"`
			} `json:"roles"`
		} `json:"signed"`
	}
	if json.Unmarshal(body, &md) != nil || json.Unmarshal(root.Body, &r) != nil {
		return false
	}
	for _, sig := range md.Signatures {
		if slices.Contains(r.Signed.Roles[md.Signed.Type].KeyIDs, sig.KeyID) {
			return true
		}
	}
	return false
}

// targets lists the artifacts of a group's bundles.
func (s *Service) targets(ctx context.Context, customer, group string) ([]tufmeta.Target, error) {
	bundles, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return nil, err
	}
	var out []tufmeta.Target
	for _, b := range bundles {
		if b.Group != group {
			continue
		}
		rel, err := s.Store.DistRelease(ctx, b.Release)
		if err != nil {
			return nil, err
		}
		var gate *tufmeta.Gate
		if r := b.Rollout; r != nil && r.State != RolloutDone {
			gate = &tufmeta.Gate{Salt: rel.ID + "/" + group, Percent: r.Percent(), Paused: r.State == RolloutPaused, By: r.By}
		}
		for _, a := range rel.Artifacts {
			out = append(out, tufmeta.Target{Customer: customer, Group: group, App: rel.App, Version: rel.Version, Release: rel.ID,
				Platform: a.Platform, Name: a.Name, Length: a.Size, SHA256: a.SHA256, Rollout: gate})
		}
	}
	return out, nil
}

// Fresh returns a group's metadata, re-signing the snapshot and timestamp
// first when the timestamp has less than half of tsValid left (or the keys
// rotated), so a syncing site always gets metadata that has not expired.
func (s *Service) Fresh(ctx context.Context, customer, group string, tsValid time.Duration) (ts, snap, targets *Meta, err error) {
	roots, err := s.Roots(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	latest := roots[len(roots)-1]
	for try := 0; ; try++ {
		ts, err = s.Store.LatestDistMeta(ctx, customer, group, tufmeta.RoleTimestamp)
		if err != nil && !errs.Is(err, errs.NotFound) {
			return nil, nil, nil, err
		}
		if err == nil && s.now().Add(tsValid/2).Before(ts.Expires) && signedWith(ts.Body, latest) {
			break
		}
		if try > 0 && err == nil && !signedWith(ts.Body, latest) {
			// Just signed, yet not with the keys the root names.
			if err := s.matchRoot(latest); err != nil {
				return nil, nil, nil, err
			}
			return nil, nil, nil, errs.E(errs.Internal, "the timestamp of %s/%s does not carry a signature by the keys of update root version %d", customer, group, latest.Version)
		}
		_, err = s.publish(ctx, customer, group, false, tsValid)
		if errs.Is(err, errs.Conflict) && try < 8 {
			continue
		}
		if err != nil {
			return nil, nil, nil, err
		}
	}
	if snap, err = s.Store.LatestDistMeta(ctx, customer, group, tufmeta.RoleSnapshot); err != nil {
		return nil, nil, nil, err
	}
	if targets, err = s.Store.LatestDistMeta(ctx, customer, group, tufmeta.RoleTargets); err != nil {
		return nil, nil, nil, err
	}
	return ts, snap, targets, nil
}

// RecordStatus stores statuses a site reports for its customer's devices.
func (s *Service) RecordStatus(ctx context.Context, customer, site string, st []*Status) error {
	if len(st) > 1000 {
		return errs.E(errs.TooLarge, "reports: %d statuses in one request; send at most 1000", len(st))
	}
	for i, x := range st {
		if !slices.Contains(Statuses, x.Status) {
			return errs.E(errs.Invalid, "reports[%d].status %q is not one of %v", i, x.Status, Statuses)
		}
		if x.Device == "" || x.App == "" || x.Version == "" || x.Group == "" {
			return errs.E(errs.Invalid, "reports[%d]: device, group, app and version are required", i)
		}
		if len(x.Log) > 8<<10 {
			x.Log = x.Log[len(x.Log)-8<<10:]
		}
		x.Customer, x.Site = customer, site // a site reports for its own customer only
		if x.At.IsZero() || x.At.After(s.now().Add(time.Hour)) {
			x.At = s.now()
		}
	}
	if err := s.Store.RecordDistStatuses(ctx, st); err != nil {
		return err
	}
	return s.EvaluateRollouts(ctx, customer)
}

// CustomerVersion is, for a customer and application, the version its
// bundles carry (current), the last one a device confirmed (installed), and
// its devices by status.
type CustomerVersion struct {
	Customer  string         `json:"customer"`
	App       string         `json:"app"`
	Current   string         `json:"current"`
	Installed string         `json:"installed"`
	UpToDate  bool           `json:"up_to_date"`
	Devices   map[string]int `json:"devices"` // status -> devices with that status for the current version
}

// Versions reports a customer's current and installed versions.
func (s *Service) Versions(ctx context.Context, customer string) ([]*CustomerVersion, error) {
	bundles, err := s.Store.DistBundles(ctx, customer)
	if err != nil {
		return nil, err
	}
	inst, err := s.Store.DistInstalled(ctx, customer)
	if err != nil {
		return nil, err
	}
	sts, err := s.Store.DistStatuses(ctx, customer)
	if err != nil {
		return nil, err
	}
	by := map[string]*CustomerVersion{}
	var out []*CustomerVersion
	get := func(app string) *CustomerVersion {
		if v, ok := by[app]; ok {
			return v
		}
		v := &CustomerVersion{Customer: customer, App: app, Devices: map[string]int{}}
		by[app] = v
		out = append(out, v)
		return v
	}
	for _, b := range bundles {
		rel, err := s.Store.DistRelease(ctx, b.Release)
		if err != nil {
			return nil, err
		}
		v := get(b.App)
		if v.Current == "" || CompareVersions(rel.Version, v.Current) > 0 {
			v.Current = rel.Version
		}
	}
	for _, i := range inst {
		get(i.App).Installed = i.Version
	}
	for _, st := range sts {
		v := get(st.App)
		if st.Version == v.Current {
			v.Devices[st.Status]++
		}
	}
	for _, v := range out {
		v.UpToDate = v.Current != "" && v.Current == v.Installed
	}
	slices.SortFunc(out, func(a, b *CustomerVersion) int { return CompareVersions(a.App, b.App) })
	return out, nil
}

// CompareVersions orders dotted versions numerically where both parts are
// numbers (1.10 after 1.9), and as text otherwise.
func CompareVersions(a, b string) int {
	for a != "" || b != "" {
		var pa, pb string
		pa, a = cut(a)
		pb, b = cut(b)
		na, oka := num(pa)
		nb, okb := num(pb)
		switch {
		case oka && okb && na != nb:
			if na < nb {
				return -1
			}
			return 1
		case !(oka && okb) && pa != pb:
			if pa < pb {
				return -1
			}
			return 1
		}
	}
	return 0
}

func cut(s string) (string, string) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' || s[i] == '-' || s[i] == '+' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

func num(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
