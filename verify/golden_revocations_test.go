package verify_test

import (
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

var updateRevocations = flag.Bool("update-revocations", false, "write the golden revocation list (testdata/formats/revoked-sites-v1.json and its companions)")

// revocationsMeta is revoked-sites-v1-meta.json: when the list verifies and
// what it says.
type revocationsMeta struct {
	Note string             `json:"note"`
	At   time.Time          `json:"verify_at"`
	List verify.Revocations `json:"list"`
}

// TestGoldenRevocations checks the test vector of the signed list of
// revoked sites (docs/formats.md, section 8.6): revoked-sites-v1.json
// verifies against root-revocations.crt at the recorded time and decodes to
// the meta file's list; license-revoked.pem, issued by the listed site,
// verifies without the list and fails with ErrRevokedSite with it.
func TestGoldenRevocations(t *testing.T) {
	dir := filepath.Join("..", "testdata", "formats")
	if *updateRevocations {
		writeGoldenRevocations(t, dir)
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("golden file missing (regenerate with 'go test ./verify -run GoldenRevocations -update-revocations'): %v", err)
		}
		return b
	}
	var meta revocationsMeta
	if err := json.Unmarshal(read("revoked-sites-v1-meta.json"), &meta); err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(read("root-revocations.crt"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := v.ParseRevocations(read("revoked-sites-v1.json"), meta.At)
	if err != nil {
		t.Fatalf("the golden revocation list does not verify: %v", err)
	}
	got, _ := json.Marshal(l)
	want, _ := json.Marshal(&meta.List)
	if string(got) != string(want) {
		t.Errorf("golden revocation list:\n got %s\nwant %s", got, want)
	}
	lic := read("license-revoked.pem")
	if _, err := v.Verify(lic, verify.Options{Now: meta.At}); err != nil {
		t.Fatalf("the golden license of the revoked site, without the list: %v", err)
	}
	if _, err := v.Verify(lic, verify.Options{Now: meta.At, Revocations: l}); !errors.Is(err, verify.ErrRevokedSite) {
		t.Fatalf("the golden license of the revoked site, with the list: %v, want ErrRevokedSite", err)
	}
}

func writeGoldenRevocations(t *testing.T, dir string) {
	now := time.Now().UTC().Truncate(time.Second)
	root := testpki.Root(t, "Golden", now.Add(-time.Hour))
	site := testpki.Site(t, root, "Golden Revoked Site", "cust-golden", now.Add(-time.Hour))
	ch := testpki.Clearinghouse(t, root, now.Add(-time.Hour))
	attrs := verify.Attributes{LicenseID: 2001, PackID: "pk-golden-r", ProductID: "app", ProductVersion: "2.0", Platform: "windows", Features: []string{"core"}}
	testpki.Bind(t, root, site, &attrs)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := license.Issue(site, pub, attrs, now.Add(-5*time.Minute), now.Add(300*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	l := verify.Revocations{Vendor: "Golden", Number: 1, Issued: now, NextUpdate: now.Add(7 * 24 * time.Hour), Sites: []verify.RevokedSite{
		{SiteID: site.Cert.Subject.SerialNumber, CustomerID: "cust-golden", Revoked: now.Add(-time.Minute), Reason: "duplicate serials in usage report 7"},
	}}
	s, err := envelope.Sign(verify.RevokedSitesType, verify.RevokedSitesVersion, &l, ch.Signer, [][]byte{ch.Cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	list, _ := json.MarshalIndent(s, "", "  ")
	meta, _ := json.MarshalIndent(revocationsMeta{Note: "the signed list of revoked sites, format version 1; verifies at verify_at; license-revoked.pem is a license of the listed site", At: now.Add(time.Minute), List: l}, "", "  ")
	for name, data := range map[string][]byte{
		"revoked-sites-v1.json":      append(list, '\n'),
		"revoked-sites-v1-meta.json": append(meta, '\n'),
		"root-revocations.crt":       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}),
		"license-revoked.pem":        license.EncodePEM([][]byte{der, site.Cert.Raw}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
