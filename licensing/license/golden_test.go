package license_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

var update = flag.Bool("update", false, "rewrite the golden license files")

// futureAttrs is the attribute JSON of a license written by a licet from the
// future: a newer data version with members this version does not know.
const futureAttrs = `{"data_version":3,"license_id":4242,"client_id":"%s","system_id":"sys-0011223344556677",` +
	`"pack_id":"pk-future","product_id":"app","product_version":"9.0","platform":"windows","features":["core","ai"],` +
	`"flags":0,"seat_class":"gold","grace":{"days":7,"policy":"soft"}}`

// TestGoldenLicenseFromTheFuture checks that a license of a newer data
// version, with unknown members, still verifies on this code (forward
// compatibility): testdata/formats/license-future.pem against root-license.crt
// at the time recorded in license-future.json.
func TestGoldenLicenseFromTheFuture(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "formats")
	if *update {
		writeFutureLicense(t, dir)
	}
	var meta struct {
		At time.Time `json:"verify_at"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "license-future.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root-license.crt"))
	if err != nil {
		t.Fatal(err)
	}
	lic, err := os.ReadFile(filepath.Join(dir, "license-future.pem"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	// It predates pack statements: refused by default, read with AllowUnbound
	// (docs/formats.md, section 9.4.1).
	if _, err := v.Verify(lic, verify.Options{Now: meta.At, Product: "app"}); !errors.Is(err, verify.ErrNotSold) {
		t.Fatalf("a license without a pack statement, by default: %v, want ErrNotSold", err)
	}
	got, err := v.Verify(lic, verify.Options{Now: meta.At, Product: "app", AllowUnbound: true})
	if err != nil {
		t.Fatalf("a license from the future does not verify: %v", err)
	}
	if got.DataVersion != 3 || got.LicenseID != 4242 || got.ProductVersion != "9.0" || len(got.Features) != 2 {
		t.Fatalf("attributes read from the future license: %+v", got.Attributes)
	}
}

// writeFutureLicense makes a root, a site and a license whose attribute
// extension carries the future JSON, valid for a year from now.
func writeFutureLicense(t *testing.T, dir string) {
	now := time.Now().UTC().Truncate(time.Second)
	root := newRoot(t)
	site := newSite(t, root)
	client, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	id := verify.ClientID(client.Public())
	attrJSON := []byte(fmt.Sprintf(futureAttrs, id))
	extValue, err := asn1.Marshal(attrJSON)
	if err != nil {
		t.Fatal(err)
	}
	roleExt, _ := asn1.MarshalWithParams(verify.RoleLicense, "utf8")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: id, SerialNumber: id},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: verify.OIDRole, Value: roleExt}, {Id: verify.OIDLicense, Value: extValue}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, site.Cert, client.Public(), site.Signer.Private())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("license-future.pem", license.EncodePEM([][]byte{der, site.Cert.Raw}))
	write("root-license.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}))
	meta, _ := json.MarshalIndent(map[string]any{"verify_at": now, "note": "license of data_version 3 with unknown members; must verify at verify_at"}, "", "  ")
	write("license-future.json", append(meta, '\n'))
}
