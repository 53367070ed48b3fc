// Package disttest builds a distribution world for tests and benchmarks:
// a vendor catalogue and a site mirror on real SQLite files, the site's
// device API on a loopback HTTP server, customer "acme" with device groups
// g1 and g2, fed by export files (the air-gapped path).
package disttest

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/distribution/blobstore"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store"
)

// World is a vendor catalogue and a site mirror on real SQLite files, the
// site's device API on a real loopback HTTP server, fed by export files
// (the air-gapped path; the online path runs in e2e).
type World struct {
	T    testing.TB
	Cat  *catalog.Service  // the vendor's catalogue, on SQLite
	Mir  *mirror.Service   // the site's mirror, on SQLite
	Site *httptest.Server  // the site's device API
	Root *x509.Certificate // the vendor root: it certifies the distribution key
	// RootAuth is the vendor root with its key; Dist the distribution key
	// and certificate it issued, which anchors the metadata and derives the
	// role keys.
	RootAuth, Dist *pki.Authority
	Now            time.Time         // the clock of the vendor, the site (and the tests' devices)
	Tokens         map[string]string // device name -> token: dev-g1 in g1, dev-g2 in g2
}

// New makes a World with groups g1 and g2, a device in each, and application "app".
func New(t testing.TB) *World {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	vs, err := store.OpenVendor(ctx, filepath.Join(dir, "vendor.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Close() })
	ss, err := store.OpenSite(ctx, filepath.Join(dir, "site.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	if err := vs.CreateCustomer(ctx, &clearinghouse.Customer{ID: "acme", Name: "Acme", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	w := &World{T: t, Now: time.Now().UTC(), Tokens: map[string]string{}}
	w.RootAuth, w.Dist = NewVendor(t, "Vendor", w.Now)
	w.Root = w.RootAuth.Cert
	now := func() time.Time { return w.Now }
	w.Cat = &catalog.Service{Store: vs.(catalog.Store), Secret: w.Dist.Signer.Private().Seed(), Anchor: catalog.SignAnchor(w.Dist),
		Expiries: catalog.DefaultExpiries, Now: now}
	w.Mir = &mirror.Service{Store: ss.(mirror.Store), Blobs: blobstore.Dir(filepath.Join(dir, "blobs")), Customer: "acme", SiteID: "site-test", VendorRoot: w.Root, Now: now}
	srv := api.NewServer("site", slog.New(slog.NewTextHandler(io.Discard, nil)), api.Limits{MaxBody: 1 << 20}, nil)
	api.AddDistributionSiteRoutes(srv, w.Mir)
	w.Site = httptest.NewServer(srv)
	t.Cleanup(w.Site.Close)
	for _, g := range []string{"g1", "g2"} {
		if _, err := w.Mir.AddGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		_, tok, err := w.Mir.AddDevice(ctx, "dev-"+g, g)
		if err != nil {
			t.Fatal(err)
		}
		w.Tokens["dev-"+g] = tok
	}
	if err := w.Cat.AddApp(ctx, &catalog.App{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	return w
}

// NewVendor makes a vendor root and the distribution key it certifies.
func NewVendor(t testing.TB, name string, now time.Time) (root, dist *pki.Authority) {
	t.Helper()
	rk, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	if root, err = pki.NewRoot(rk, name, now); err != nil {
		t.Fatal(err)
	}
	return root, Issue(t, root, now)
}

// Issue makes a distribution key and has ca certify it (with the
// distribution role, whether or not ca may: tests of forgeries use it too).
func Issue(t testing.TB, ca *pki.Authority, now time.Time) *pki.Authority {
	t.Helper()
	dk, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	role, err := asn1.MarshalWithParams(pki.RoleDistribution, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "distribution"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: pki.OIDRole, Value: role}},
	}
	var der []byte
	if pki.Role(ca.Cert) == pki.RoleRoot {
		der, err = ca.IssueDistribution(dk.Public(), "Vendor", now)
	} else {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, dk.Public(), ca.Signer.Private())
	}
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: cert, Signer: dk}
}

// Release uploads data as the linux-amd64 artifact app.sh of a new release of "app".
func (w *World) Release(version string, data []byte) *catalog.Release {
	w.T.Helper()
	ctx := w.T.Context()
	sha, size := Sum(data)
	for i := 0; i*catalog.ChunkSize < len(data); i++ {
		if err := w.Cat.PutChunk(ctx, sha, int64(i), data[i*catalog.ChunkSize:min(len(data), (i+1)*catalog.ChunkSize)]); err != nil {
			w.T.Fatal(err)
		}
	}
	if _, err := w.Cat.CommitBlob(ctx, sha, size); err != nil {
		w.T.Fatal(err)
	}
	r := &catalog.Release{App: "app", Version: version, Artifacts: []catalog.Artifact{{Platform: "linux-amd64", Name: "app.sh", Size: size, SHA256: sha}}}
	if err := w.Cat.AddRelease(ctx, r); err != nil {
		w.T.Fatal(err)
	}
	return r
}

// Sum returns the SHA-256 and size of data, hashed as a file is.
func Sum(data []byte) (string, int64) {
	f := filepath.Join(os.TempDir(), fmt.Sprintf("licet-sum-%d", time.Now().UnixNano()))
	os.WriteFile(f, data, 0o600)
	defer os.Remove(f)
	s, n, _ := blobstore.HashFile(f)
	return s, n
}

// Bundle assigns a release to a group of customer acme.
func (w *World) Bundle(group string, r *catalog.Release) {
	w.T.Helper()
	if _, err := w.Cat.AddBundle(w.T.Context(), &catalog.Bundle{Customer: "acme", Group: group, Release: r.ID}); err != nil {
		w.T.Fatal(err)
	}
}

// Transfer carries the vendor's export file to the site (air-gapped).
func (w *World) Transfer() *mirror.SyncResult {
	w.T.Helper()
	var buf bytes.Buffer
	if err := w.Cat.Export(w.T.Context(), "acme", 30*24*time.Hour, &buf); err != nil {
		w.T.Fatal(err)
	}
	res, err := w.Mir.Import(w.T.Context(), &buf)
	if err != nil {
		w.T.Fatalf("import: %v", err)
	}
	return res
}

// Fetch reads a route of the real site with a device's token.
func (w *World) Fetch(device, path string) []byte {
	w.T.Helper()
	req, _ := http.NewRequest("GET", w.Site.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+w.Tokens[device])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		w.T.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

// Current returns a group's current metadata as the site serves it, by
// role, with the versions the timestamp and snapshot name.
func (w *World) Current(device, group string) (ts []byte, snapV int64, snap []byte, tgV int64, tg []byte) {
	base := "/v1/update/groups/" + group + "/"
	ts = w.Fetch(device, base+"timestamp")
	var m struct {
		Signed struct {
			Meta map[string]struct{ Version int64 } `json:"meta"`
		} `json:"signed"`
	}
	json.Unmarshal(ts, &m)
	snapV = m.Signed.Meta["snapshot.json"].Version
	snap = w.Fetch(device, base+"snapshot/"+strconv.FormatInt(snapV, 10))
	json.Unmarshal(snap, &m)
	tgV = m.Signed.Meta["targets.json"].Version
	tg = w.Fetch(device, base+"targets/"+strconv.FormatInt(tgV, 10))
	return
}
