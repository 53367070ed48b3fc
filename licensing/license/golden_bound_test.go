package license_test

import (
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

var updateBound = flag.Bool("update-bound", false, "write the golden license with a pack statement (testdata/formats/license-bound.*)")

// boundMeta is license-bound.json: when the license verifies, and what its
// statement says.
type boundMeta struct {
	Note      string           `json:"note"`
	At        time.Time        `json:"verify_at"`
	Statement verify.Statement `json:"statement"`
}

// TestGoldenBoundLicense checks the test vector of a license carrying its
// pack statement (docs/formats.md, section 9.4.1): license-bound.pem
// verifies against root-bound.crt at the recorded time without
// AllowUnbound, and its statement decodes to license-bound.json.
func TestGoldenBoundLicense(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "formats")
	if *updateBound {
		writeBoundLicense(t, dir)
	}
	var meta boundMeta
	raw, err := os.ReadFile(filepath.Join(dir, "license-bound.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-bound.crt"))
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dir, "license-bound.pem"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	lic, err := v.Verify(file, verify.Options{Now: meta.At, Product: meta.Statement.ProductID})
	if err != nil {
		t.Fatalf("the golden bound license does not verify: %v", err)
	}
	got, _ := json.Marshal(lic.Statement)
	want, _ := json.Marshal(meta.Statement)
	if string(got) != string(want) {
		t.Errorf("statement read from the golden license:\n got %s\nwant %s", got, want)
	}
}

func writeBoundLicense(t *testing.T, dir string) {
	now := time.Now().UTC().Truncate(time.Second)
	root := testpki.Root(t, "Golden", now.Add(-time.Hour))
	site := testpki.Site(t, root, "Golden Site", "cust-golden", now.Add(-time.Hour))
	ch := testpki.Clearinghouse(t, root, now.Add(-time.Hour))
	exp := now.Add(365 * 24 * time.Hour)
	st := &verify.Statement{
		PackID: "pk-golden", OrderID: "ord-golden", SiteID: site.Cert.Subject.SerialNumber, CustomerID: "cust-golden", Issued: now,
		Expires: &exp, ProductID: "app", ProductVersion: "2.0", Platform: "windows", Features: []string{"core", "render"},
		BeginSerial: 1000, Quantity: 50, Temporary: &verify.TemporaryAllowance{Count: 5, MaxDays: 60, BeginSerial: 1050},
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	attrs := verify.Attributes{LicenseID: 1007, SystemID: "sys-0011223344556677", PackID: st.PackID, ProductID: "app",
		ProductVersion: "2.0", Platform: "windows", Features: []string{"core"}, PackStatement: testpki.SignStatement(t, ch, st)}
	der, err := license.Issue(site, pub, attrs, now.Add(-5*time.Minute), exp)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := json.MarshalIndent(boundMeta{Note: "license 1007 of pack pk-golden with its pack statement; must verify at verify_at", At: now.Add(time.Minute), Statement: *st}, "", "  ")
	for name, data := range map[string][]byte{
		"license-bound.pem":  license.EncodePEM([][]byte{der, site.Cert.Raw}),
		"root-bound.crt":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}),
		"license-bound.json": append(meta, '\n'),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
