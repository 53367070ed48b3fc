package mirror

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/distribution/blobstore"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/siteauth"
	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/keys"
)

// DeviceTokenPrefix starts every device token.
const DeviceTokenPrefix = "licetdev_"

// MaxPayload bounds the sync payload a site accepts from the vendor.
const MaxPayload = 64 << 20

// Vendor is how a site reaches the vendor: requests signed with its
// certified key.
type Vendor struct {
	URL    string
	Signer *keys.Signer
	Chain  [][]byte // the site certificate and its issuers below the vendor root, DER
	// CurrentChain, if set, replaces Chain: it is called for each request,
	// so that a site certificate renewed while the site runs is sent.
	CurrentChain func() [][]byte
	HTTP         *http.Client
	Now          func() time.Time
}

// chain is the chain sent with a request.
func (v *Vendor) chain() [][]byte {
	if v.CurrentChain != nil {
		return v.CurrentChain()
	}
	return v.Chain
}

func (v *Vendor) request(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	if v == nil || v.URL == "" {
		return nil, errs.E(errs.Invalid, "this site has no vendor URL: it was set up offline; import export files with 'licet site update import FILE'")
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(v.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "build request")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	siteauth.Sign(req, body, v.Signer, v.chain(), v.Now())
	return req, nil
}

func (v *Vendor) do(ctx context.Context, method, path string, body []byte, max int64) ([]byte, error) {
	req, err := v.request(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	resp, err := v.HTTP.Do(req)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "vendor %s is unreachable; the site retries on its next sync", v.URL)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the vendor's answer")
	}
	if int64(len(b)) > max {
		return nil, errs.E(errs.TooLarge, "the vendor's answer to %s is over %d bytes", path, max)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return nil, errs.E(errs.KindFromCode(e.Error.Code), "vendor: %s (HTTP %d)", e.Error.Message, resp.StatusCode)
	}
	return b, nil
}

// Service is a site's distribution mirror.
type Service struct {
	Store      Store
	Blobs      blobstore.Dir
	Customer   string            // the site's customer, from its certificate
	SiteID     string            // the site's ID, from its certificate
	VendorRoot *x509.Certificate // the vendor root: anchors the first root metadata
	Vendor     *Vendor           // nil for an air-gapped site
	Now        func() time.Time

	mu      sync.Mutex
	devices map[string]cachedDevice // token hash -> device
	tsCache map[string]cachedMeta   // group -> latest timestamp
	tgCache map[string]cachedTargets
}

type cachedDevice struct {
	d   *Device
	exp time.Time
}

type cachedMeta struct {
	body []byte
	exp  time.Time
}

type cachedTargets struct {
	version int64
	shas    map[string]bool
}

// cacheFor is how long a device credential or a group's timestamp is reused
// before the store is asked again (another process may have synced).
const cacheFor = time.Second

// AddGroup adds a device group.
func (s *Service) AddGroup(ctx context.Context, name string) (*Group, error) {
	if err := ids.CheckSlug("name", name); err != nil {
		return nil, err
	}
	g := &Group{Name: name, Created: s.Now().UTC()}
	return g, s.Store.AddDistGroup(ctx, g)
}

// AddDevice makes a device credential in a group and returns its token,
// shown once.
func (s *Service) AddDevice(ctx context.Context, name, group string) (*Device, string, error) {
	if err := ids.CheckSlug("name", name); err != nil {
		return nil, "", err
	}
	if err := ids.CheckSlug("group", group); err != nil {
		return nil, "", err
	}
	token := DeviceTokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(ids.Random(32)))
	d := &Device{ID: ids.New("dev"), Name: name, Group: group, TokenHash: hashToken(token), Created: s.Now().UTC()}
	if err := s.Store.AddDistDevice(ctx, d); err != nil {
		return nil, "", err
	}
	return d, token, nil
}

func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// Authenticate returns the device a bearer token belongs to.
func (s *Service) Authenticate(ctx context.Context, token string) (*Device, error) {
	if !strings.HasPrefix(token, DeviceTokenPrefix) {
		return nil, errs.E(errs.Unauthenticated, "send the device token: 'Authorization: Bearer licetdev_…' from 'licet site device add'")
	}
	h := hashToken(token)
	now := time.Now()
	s.mu.Lock()
	c, ok := s.devices[string(h)]
	s.mu.Unlock()
	if ok && now.Before(c.exp) {
		return c.d, nil
	}
	d, err := s.Store.DistDeviceByToken(ctx, h)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.Unauthenticated, "device token is not valid at this site")
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.devices == nil || len(s.devices) > 100000 {
		s.devices = map[string]cachedDevice{}
	}
	s.devices[string(h)] = cachedDevice{d: d, exp: now.Add(cacheFor)}
	s.mu.Unlock()
	return d, nil
}

// CheckGroup is the site's lock on crossing groups: a device may read its
// own group's bundle only.
func CheckGroup(d *Device, group string) error {
	if d.Group != group {
		return errs.E(errs.Forbidden, "device %s is in group %q and may not fetch group %q's bundle", d.Name, d.Group, group)
	}
	return nil
}

// Timestamp returns a group's current timestamp metadata (cached briefly).
func (s *Service) Timestamp(ctx context.Context, group string) ([]byte, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.tsCache[group]
	s.mu.Unlock()
	if ok && now.Before(c.exp) {
		return c.body, nil
	}
	_, body, err := s.Store.LatestSiteDistMeta(ctx, group, tufmeta.RoleTimestamp)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "no bundle for group %q at this site yet: the vendor has to add one ('licet vendor bundle add') and the site sync", group)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.tsCache == nil {
		s.tsCache = map[string]cachedMeta{}
	}
	s.tsCache[group] = cachedMeta{body: body, exp: now.Add(cacheFor)}
	s.mu.Unlock()
	return body, nil
}

// Meta returns a version of a group's snapshot or targets metadata.
func (s *Service) Meta(ctx context.Context, group, role string, version int64) ([]byte, error) {
	if role != tufmeta.RoleSnapshot && role != tufmeta.RoleTargets {
		return nil, errs.E(errs.NotFound, "no role %q: ask for snapshot or targets", role)
	}
	return s.Store.SiteDistMeta(ctx, group, role, version)
}

// Root returns a root metadata version.
func (s *Service) Root(ctx context.Context, version int64) ([]byte, error) {
	b, _, err := s.Store.SiteDistRoot(ctx, version)
	return b, err
}

// Anchor returns root version 1 and its anchor: the distribution key's
// signature and certificate (or, synced from licet before the distribution
// key, the vendor root key's signature).
func (s *Service) Anchor(ctx context.Context) ([]byte, catalog.Anchor, error) {
	root, enc, err := s.Store.SiteDistRoot(ctx, 1)
	if err != nil {
		return nil, catalog.Anchor{}, err
	}
	a, err := catalog.DecodeAnchor(enc)
	return root, a, err
}

// BlobPath returns the file of an artifact that the group's current
// targets name; Forbidden for any other.
func (s *Service) BlobPath(ctx context.Context, group, sha string) (string, error) {
	if err := catalog.CheckSHA256("sha256", sha); err != nil {
		return "", err
	}
	v, body, err := s.Store.LatestSiteDistMeta(ctx, group, tufmeta.RoleTargets)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	c, ok := s.tgCache[group]
	s.mu.Unlock()
	if !ok || c.version != v {
		var md struct {
			Signed struct {
				Targets map[string]struct {
					Hashes map[string]string `json:"hashes"`
				} `json:"targets"`
			} `json:"signed"`
		}
		if err := json.Unmarshal(body, &md); err != nil {
			return "", errs.Wrap(errs.Internal, err, "read stored targets of group %s", group)
		}
		c = cachedTargets{version: v, shas: map[string]bool{}}
		for _, t := range md.Signed.Targets {
			c.shas[t.Hashes["sha256"]] = true
		}
		s.mu.Lock()
		if s.tgCache == nil {
			s.tgCache = map[string]cachedTargets{}
		}
		s.tgCache[group] = c
		s.mu.Unlock()
	}
	if !c.shas[sha] && !s.inOlderTargets(ctx, group, v, sha) {
		return "", errs.E(errs.Forbidden, "artifact %s is not in group %q's bundle", sha, group)
	}
	return s.Blobs.Path(sha), nil
}

// inOlderTargets looks for sha in the group's previous targets versions
// (a device that checked just before a sync asks for the bundle it saw).
// The site keeps the versions it synced only: it skips the others.
func (s *Service) inOlderTargets(ctx context.Context, group string, latest int64, sha string) bool {
	for v := latest - 1; v >= 1 && v >= latest-16; v-- {
		body, err := s.Store.SiteDistMeta(ctx, group, tufmeta.RoleTargets, v)
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return false
		}
		if bytes.Contains(body, []byte(`"sha256":"`+sha+`"`)) {
			return true
		}
	}
	return false
}

// Report queues a device's status for the vendor.
func (s *Service) Report(ctx context.Context, d *Device, r *Report) error {
	if !slices.Contains(catalog.Statuses, r.Status) {
		return errs.E(errs.Invalid, "status %q is not one of %v", r.Status, catalog.Statuses)
	}
	if r.App == "" || r.Version == "" {
		return errs.E(errs.Invalid, "app and version are required")
	}
	if len(r.App) > 128 || len(r.Version) > 128 {
		return errs.E(errs.Invalid, "app and version: at most 128 bytes each")
	}
	if len(r.Log) > 8<<10 {
		r.Log = r.Log[len(r.Log)-8<<10:]
	}
	r.Device, r.Group, r.At = d.Name, d.Group, s.Now().UTC()
	return s.Store.AddDistReport(ctx, r)
}

// SyncResult says what a sync or import changed.
type SyncResult struct {
	Groups  []GroupResult `json:"groups"`
	Blobs   int           `json:"blobs_fetched"`
	Reports int           `json:"reports_sent"`
}

// GroupResult is one group's outcome.
type GroupResult struct {
	Group   string `json:"group"`
	Version int64  `json:"targets_version"`
	Changed bool   `json:"changed"`
	Error   string `json:"error,omitempty"`
}

// trusted returns what the site trusts for a group: its newest root and the
// group's newest metadata.
func (s *Service) trusted(ctx context.Context, group string) (tufmeta.Trusted, error) {
	var t tufmeta.Trusted
	for v := int64(1); ; v++ {
		b, _, err := s.Store.SiteDistRoot(ctx, v)
		if errs.Is(err, errs.NotFound) {
			break
		}
		if err != nil {
			return t, err
		}
		t.Root = b
	}
	for _, r := range []struct {
		role string
		dst  *[]byte
	}{{tufmeta.RoleTimestamp, &t.Timestamp}, {tufmeta.RoleSnapshot, &t.Snapshot}, {tufmeta.RoleTargets, &t.Targets}} {
		_, b, err := s.Store.LatestSiteDistMeta(ctx, group, r.role)
		if err != nil && !errs.Is(err, errs.NotFound) {
			return t, err
		}
		*r.dst = b
	}
	return t, nil
}

// verify checks a payload as the site's devices will, stores what passes,
// and returns the blobs the verified targets need.
func (s *Service) verify(ctx context.Context, p *catalog.Payload) (*SyncResult, map[string]int64, error) {
	if p.Format != catalog.PayloadFormat {
		return nil, nil, errs.E(errs.Invalid, "payload format %d is not %d: use a licet of the vendor's version", p.Format, catalog.PayloadFormat)
	}
	if p.Customer != s.Customer {
		return nil, nil, errs.E(errs.Forbidden, "the payload is for customer %q, this site belongs to %q", p.Customer, s.Customer)
	}
	if len(p.Roots) == 0 {
		return nil, nil, errs.E(errs.Invalid, "the payload carries no root metadata")
	}
	root1, _, err := s.Store.SiteDistRoot(ctx, 1)
	switch {
	case errs.Is(err, errs.NotFound):
		a := catalog.Anchor{Signature: p.Anchor, Chain: p.AnchorChain}
		if err := a.Verify(p.Roots[0], s.VendorRoot, s.Now()); err != nil {
			return nil, nil, errs.Wrap(errs.Invalid, err, "refusing the payload")
		}
		if err := s.Store.PutDistRoot(ctx, 1, p.Roots[0], a.Encode()); err != nil {
			return nil, nil, err
		}
	case err != nil:
		return nil, nil, err
	case !bytes.Equal(root1, p.Roots[0]):
		return nil, nil, errs.Wrap(errs.Invalid, tufmeta.ErrRejected, "the payload's root metadata version 1 differs from the one this site trusts")
	}
	res := &SyncResult{Groups: []GroupResult{}}
	need := map[string]int64{}
	var firstErr error
	for _, g := range p.Groups {
		cur, err := s.trusted(ctx, g.Group)
		if err != nil {
			return nil, nil, err
		}
		next, v, err := tufmeta.Refresh(ctx, cur, p.Source(g), tufmeta.Scope{Customer: s.Customer, Group: g.Group}, s.Now())
		if err != nil {
			res.Groups = append(res.Groups, GroupResult{Group: g.Group, Error: err.Error()})
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for rv := int64(2); rv <= v.RootVersion; rv++ {
			if err := s.Store.PutDistRoot(ctx, rv, p.Roots[rv-1], nil); err != nil {
				return nil, nil, err
			}
		}
		for _, m := range []struct {
			role string
			v    int64
			body []byte
		}{{tufmeta.RoleTargets, v.TargetsVersion, next.Targets}, {tufmeta.RoleSnapshot, v.SnapshotVersion, next.Snapshot}, {tufmeta.RoleTimestamp, v.TimestampVersion, next.Timestamp}} {
			if err := s.Store.PutSiteDistMeta(ctx, g.Group, m.role, m.v, m.body); err != nil {
				return nil, nil, err
			}
		}
		for _, t := range v.Targets {
			if !s.Blobs.Has(t.SHA256, t.Length) {
				need[t.SHA256] = t.Length
			}
		}
		res.Groups = append(res.Groups, GroupResult{Group: g.Group, Version: v.TargetsVersion, Changed: v.Changed})
		s.mu.Lock()
		delete(s.tsCache, g.Group)
		s.mu.Unlock()
	}
	return res, need, firstErr
}

// Sync pulls the payload and artifacts from the vendor and forwards the
// queued device statuses. A group whose metadata is refused keeps what the
// site trusted; the others are updated.
func (s *Service) Sync(ctx context.Context) (*SyncResult, error) {
	path := "/v1/dist/sync"
	if ds, err := s.Store.DistDevices(ctx); err == nil && len(ds) > 0 {
		// The site's device counts per group: what staged rollouts that
		// advance by themselves count against.
		counts := map[string]int{}
		for _, d := range ds {
			counts[d.Group]++
		}
		var parts []string
		for g, n := range counts {
			parts = append(parts, g+":"+strconv.Itoa(n))
		}
		slices.Sort(parts)
		if len(parts) <= 1000 {
			path += "?devices=" + strings.Join(parts, ",")
		}
	}
	body, err := s.Vendor.do(ctx, http.MethodGet, path, nil, MaxPayload)
	if err != nil {
		return nil, err
	}
	var p catalog.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "the vendor's sync payload is not valid JSON")
	}
	res, need, verr := s.verify(ctx, &p)
	if res == nil {
		return nil, verr
	}
	for sha, size := range need {
		err := s.Blobs.Fetch(ctx, s.Vendor.HTTP, func(ctx context.Context) (*http.Request, error) {
			return s.Vendor.request(ctx, http.MethodGet, "/v1/dist/blobs/"+sha, nil)
		}, sha, size, nil)
		if err != nil {
			return res, err
		}
		res.Blobs++
	}
	n, err := s.PushReports(ctx)
	res.Reports = n
	if err != nil {
		return res, err
	}
	return res, verr
}

// PushReports sends the queued device statuses to the vendor.
func (s *Service) PushReports(ctx context.Context) (int, error) {
	sent := 0
	for {
		body, ids, err := s.reportBatch(ctx, 500)
		if err != nil || len(ids) == 0 {
			return sent, err
		}
		if _, err := s.Vendor.do(ctx, http.MethodPost, "/v1/dist/reports", body, 1<<20); err != nil {
			return sent, err
		}
		if err := s.Store.MarkDistReportsSent(ctx, ids); err != nil {
			return sent, err
		}
		sent += len(ids)
	}
}

// MaxReportBatch bounds the encoded statuses of one request to the vendor
// or one reports file, so that either fits the vendor's default request
// body limit (1 MiB) with room for a file's two base64 layers.
const MaxReportBatch = 256 << 10

// reportBatch encodes the oldest queued statuses, at most limit of them and
// MaxReportBatch bytes (but at least one), and returns their IDs.
func (s *Service) reportBatch(ctx context.Context, limit int) ([]byte, []int64, error) {
	rs, err := s.Store.PendingDistReports(ctx, limit)
	if err != nil || len(rs) == 0 {
		return nil, nil, err
	}
	out := make([]catalog.Status, 0, len(rs))
	idl := make([]int64, 0, len(rs))
	size := 2
	for _, r := range rs {
		st := catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, Log: r.Log, At: r.At}
		b, err := json.Marshal(st)
		if err != nil {
			return nil, nil, errs.Wrap(errs.Internal, err, "encode reports")
		}
		if len(out) > 0 && size+len(b)+1 > MaxReportBatch {
			break
		}
		size += len(b) + 1
		out, idl = append(out, st), append(idl, r.ID)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "encode reports")
	}
	return body, idl, nil
}

// MaxReportsPerFile bounds the reports one file carries (it must fit the
// vendor's request body limit, as MaxReportBatch does).
const MaxReportsPerFile = 2000

// ExportReports passes the queued device statuses, signed with the site key
// as a file, to write, for an air-gapped site's way back to the vendor
// ('licet vendor release import-reports'), and marks them sent once write
// succeeded. It returns how many the file holds: 0 when none were queued
// (write is not called).
func (s *Service) ExportReports(ctx context.Context, write func(file []byte) error) (int, error) {
	if s.Vendor == nil || s.Vendor.Signer == nil {
		return 0, errs.E(errs.Internal, "the site's key is not loaded")
	}
	payload, ids, err := s.reportBatch(ctx, MaxReportsPerFile)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	if err := write(siteauth.SignFile(payload, s.Vendor.Signer, s.Vendor.chain())); err != nil {
		return 0, err
	}
	if err := s.Store.MarkDistReportsSent(ctx, ids); err != nil {
		return 0, err
	}
	return len(ids), nil
}

// Import applies an export file: the payload is verified first, then the
// blobs it names are streamed into the store through their hashes; any
// other file in the archive is refused.
func (s *Service) Import(ctx context.Context, r io.Reader) (*SyncResult, error) {
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "payload.json" || hdr.Size > MaxPayload {
		return nil, errs.E(errs.Invalid, "not a licet export file: it must start with payload.json (make it with 'licet vendor release export')")
	}
	var p catalog.Payload
	if err := json.NewDecoder(io.LimitReader(tr, MaxPayload)).Decode(&p); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "payload.json of the export file is not valid")
	}
	res, need, verr := s.verify(ctx, &p)
	if res == nil {
		return nil, verr
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, errs.Wrap(errs.Invalid, err, "export file is truncated or damaged")
		}
		sha, ok := strings.CutPrefix(hdr.Name, "blobs/")
		size, wanted := need[sha]
		if !ok {
			return res, errs.E(errs.Invalid, "export file holds %q, which is not a blob", hdr.Name)
		}
		if !wanted {
			continue // stored already, or named by no verified target
		}
		if err := s.Blobs.Put(tr, sha, size); err != nil {
			return res, err
		}
		delete(need, sha)
		res.Blobs++
	}
	if len(need) > 0 && verr == nil {
		return res, errs.E(errs.Invalid, "export file lacks %d artifacts its metadata names", len(need))
	}
	return res, verr
}

// Status is a group's view for 'licet site update status'.
type Status struct {
	Group    string         `json:"group"`
	Devices  int            `json:"devices"`
	Targets  []string       `json:"bundle"` // APP VERSION PLATFORM
	Expires  *time.Time     `json:"timestamp_expires,omitempty"`
	Statuses map[string]int `json:"statuses"`
	Reports  []*Report      `json:"reports"`
}

// GroupStatus reports, per group, the bundle, its devices and their latest statuses.
func (s *Service) GroupStatus(ctx context.Context) ([]*Status, error) {
	gs, err := s.Store.DistGroups(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := s.Store.DistDevices(ctx)
	if err != nil {
		return nil, err
	}
	rs, err := s.Store.DistReports(ctx)
	if err != nil {
		return nil, err
	}
	out := []*Status{}
	for _, g := range gs {
		st := &Status{Group: g.Name, Statuses: map[string]int{}, Targets: []string{}, Reports: []*Report{}}
		for _, d := range ds {
			if d.Group == g.Name {
				st.Devices++
			}
		}
		for _, r := range rs {
			if r.Group == g.Name {
				st.Statuses[r.Status]++
				st.Reports = append(st.Reports, r)
			}
		}
		if _, body, err := s.Store.LatestSiteDistMeta(ctx, g.Name, tufmeta.RoleTargets); err == nil {
			var md struct {
				Signed struct {
					Targets map[string]any `json:"targets"`
				} `json:"signed"`
			}
			if json.Unmarshal(body, &md) == nil {
				for path := range md.Signed.Targets {
					st.Targets = append(st.Targets, path)
				}
				slices.Sort(st.Targets)
			}
		}
		if _, body, err := s.Store.LatestSiteDistMeta(ctx, g.Name, tufmeta.RoleTimestamp); err == nil {
			if _, _, exp, err := tufmeta.Info(body); err == nil {
				st.Expires = &exp
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// String describes a sync result in one line per group.
func (r *SyncResult) String() string {
	var b strings.Builder
	for _, g := range r.Groups {
		switch {
		case g.Error != "":
			fmt.Fprintf(&b, "group %s: refused: %s\n", g.Group, g.Error)
		case g.Changed:
			fmt.Fprintf(&b, "group %s: updated to targets version %d\n", g.Group, g.Version)
		default:
			fmt.Fprintf(&b, "group %s: up to date (targets version %d)\n", g.Group, g.Version)
		}
	}
	fmt.Fprintf(&b, "%d artifacts fetched, %d device reports sent to the vendor\n", r.Blobs, r.Reports)
	return b.String()
}
