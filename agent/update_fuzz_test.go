package agent

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/verify"
)

// hwRoot writes the hardware files of h under a new directory of tb's.
func hwRoot(tb testing.TB, h fakeHW) string {
	tb.Helper()
	root := tb.TempDir()
	for name, content := range map[string]string{
		"etc/machine-id":                   h.machineID,
		"sys/class/dmi/id/product_uuid":    h.uuid,
		"sys/class/net/eth0/address":       h.mac,
		"sys/class/net/eth0/device/uevent": "",
		"sys/block/sda/device/serial":      h.disk,
		"sys/block/sda/removable":          "0",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

// FuzzOpenUpdate feeds arbitrary license update files (what a gateway's
// Licet-License-Update header or a license server sends) to openUpdate, as
// InstallUpdate would install them: it must not panic; a file it refuses is
// an error of kind Invalid; a file it accepts is one of the licenses the
// test issued to this client, for this product and machine, and the
// license it gives, sealed again to the client, opens to the same license.
func FuzzOpenUpdate(f *testing.F) {
	now := time.Now().UTC().Truncate(time.Second)
	id, err := Init(filepath.Join(f.TempDir(), "agent"), InitOptions{Platform: "non-windows", HWRoot: hwRoot(f, machineA)})
	if err != nil {
		f.Fatal(err)
	}
	root := testpki.Root(f, "Test Vendor", now.Add(-100*24*time.Hour))
	site := testpki.Site(f, root, "site-1", "cust-1", now.Add(-100*24*time.Hour))
	if err := id.PinRoot(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw})); err != nil {
		f.Fatal(err)
	}
	issue := func(licID int64, clientKey []byte, hpke []byte, systemID, product string, nb, na time.Time) []byte {
		attrs := verify.Attributes{
			DataVersion: verify.CurrentDataVersion, LicenseID: licID, ClientID: verify.ClientID(clientKey), SystemID: systemID,
			PackID: "pack-1", ProductID: product, ProductVersion: "1.0", Platform: "non-windows", Features: []string{"core"},
		}
		der, err := license.Issue(site, clientKey, attrs, nb, na)
		if err != nil {
			f.Fatal(err)
		}
		file, err := licenseserver.SealLicense([][]byte{der, site.Cert.Raw}, hpke)
		if err != nil {
			f.Fatal(err)
		}
		return file
	}
	pub, hpke := id.Signer.Public(), id.Decrypter.PublicBytes()
	valid := issue(101, pub, hpke, id.SystemID, testProduct, now.Add(-time.Hour), now.Add(30*24*time.Hour))
	if _, _, err := id.openUpdate(valid, testProduct, now); err != nil {
		f.Fatalf("the valid seed is refused: %v", err)
	}
	f.Add(valid)
	f.Add(issue(102, pub, hpke, "sys-0000000000000000", testProduct, now.Add(-time.Hour), now.Add(time.Hour))) // another machine
	f.Add(issue(103, pub, hpke, id.SystemID, "other", now.Add(-time.Hour), now.Add(time.Hour)))                // another product
	f.Add(issue(104, pub, hpke, id.SystemID, testProduct, now.Add(-2*time.Hour), now.Add(-time.Hour)))         // expired
	other, err := keys.GenerateSigner()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(issue(105, other.Public(), hpke, id.SystemID, testProduct, now.Add(-time.Hour), now.Add(time.Hour))) // another client key
	otherHPKE, err := keys.GenerateDecrypter()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(issue(106, pub, otherHPKE.PublicBytes(), id.SystemID, testProduct, now.Add(-time.Hour), now.Add(time.Hour))) // sealed to another key
	blk, err := armor.Decode(valid, armor.TypeLicense)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(armor.Encode(armor.Block{Type: armor.TypeImageSignature, Version: blk.Version, Body: blk.Body}))
	f.Add(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: blk.Version, Body: blk.Body[:len(blk.Body)-1]}))
	f.Add(armor.Encode(armor.Block{Type: armor.TypeLicense, Version: blk.Version + 1, Body: blk.Body}))
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, file []byte) {
		lic, licPEM, err := id.openUpdate(file, testProduct, now)
		if err != nil {
			if lic != nil || licPEM != nil {
				t.Fatalf("openUpdate returned a license with the error %v", err)
			}
			if k := errs.KindOf(err); k != errs.Invalid {
				t.Fatalf("openUpdate refused the file with an error of kind %s, not invalid: %v", k, err)
			}
			return
		}
		if lic.LicenseID != 101 || lic.ClientID != verify.ClientID(pub) || lic.SystemID != id.SystemID || lic.ProductID != testProduct {
			t.Fatalf("openUpdate accepted license %d of %s, system %q, product %q; only license 101 of this client was issued for it",
				lic.LicenseID, lic.ClientID, lic.SystemID, lic.ProductID)
		}
		again, err := licenseserver.SealLicense(licenseChain(licPEM), hpke)
		if err != nil {
			t.Fatalf("the accepted license does not seal again: %v", err)
		}
		lic2, pem2, err := id.openUpdate(again, testProduct, now)
		if err != nil || lic2.LicenseID != lic.LicenseID || !bytes.Equal(pem2, licPEM) {
			t.Fatalf("the accepted license, sealed again, opens as %+v (%v)", lic2, err)
		}
	})
}

// licenseChain is the DER certificates of a license PEM.
func licenseChain(b []byte) [][]byte {
	var chain [][]byte
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return chain
		}
		chain = append(chain, blk.Bytes)
	}
}
