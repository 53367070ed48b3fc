package verify_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/licet/licet/internal/testpki"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// tester is the part of testing.TB the fixtures use, so that the example can
// build them too.
type tester interface {
	Helper()
	Fatal(args ...any)
}

// epoch is the fixed "now" of the fixtures, so that examples print stable output.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a vendor root, one certified site and one license issued by it.
type fixture struct {
	root      *pki.Authority
	rootPEM   []byte
	site      *pki.Authority
	clientPub ed25519.PublicKey
	client    ed25519.PrivateKey
	attrs     verify.Attributes
	licDER    []byte
	licPEM    []byte // license then site certificate
	notAfter  time.Time
}

func newRoot(tb tester, name string) *pki.Authority {
	tb.Helper()
	return testpki.Root(tb, name, epoch.Add(-24*time.Hour))
}

// newSite certifies a new site with root, the way a vendor does.
func newSite(tb tester, root *pki.Authority, name string) *pki.Authority {
	tb.Helper()
	return testpki.Site(tb, root, name, "cust-1", epoch.Add(-24*time.Hour))
}

func testAttrs() verify.Attributes {
	return verify.Attributes{
		LicenseID:      1001,
		PackID:         "pack-7",
		ProductID:      "acme-cad",
		ProductVersion: "4.2",
		Platform:       "linux-amd64",
		Features:       []string{"render", "export"},
	}
}

func newFixture(tb tester) *fixture {
	tb.Helper()
	f := &fixture{root: newRoot(tb, "Acme")}
	f.rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.root.Cert.Raw})
	f.site = newSite(tb, f.root, "Acme Site Berlin")
	var err error
	f.clientPub, f.client, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	f.attrs = testAttrs()
	testpki.Bind(tb, f.root, f.site, &f.attrs)
	f.notAfter = epoch.Add(60 * 24 * time.Hour)
	f.licDER, err = license.Issue(f.site, f.clientPub, f.attrs, epoch.Add(-time.Hour), f.notAfter)
	if err != nil {
		tb.Fatal(err)
	}
	f.licPEM = license.EncodePEM([][]byte{f.licDER, f.site.Cert.Raw})
	return f
}

func (f *fixture) verifier(tb tester) *verify.Verifier {
	tb.Helper()
	v, err := verify.New(f.rootPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// issueRaw makes a license certificate by hand, for licenses that Issue refuses
// to make: attrsJSON is the raw JSON of the attributes (nil: none), mod
// changes the template last.
func issueRaw(tb tester, site *pki.Authority, pub ed25519.PublicKey, serial int64, attrsJSON []byte, mod func(*x509.Certificate)) []byte {
	tb.Helper()
	roleVal, _ := asn1.MarshalWithParams(verify.RoleLicense, "utf8")
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: verify.ClientID(pub), SerialNumber: verify.ClientID(pub)},
		NotBefore:             epoch.Add(-time.Hour),
		NotAfter:              epoch.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions:       []pkix.Extension{{Id: verify.OIDRole, Value: roleVal}},
	}
	if attrsJSON != nil {
		v, _ := asn1.Marshal(attrsJSON)
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: verify.OIDLicense, Value: v})
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, site.Cert, pub, site.Signer.Private())
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

func attrsJSON(pub ed25519.PublicKey, licenseID int64, extra string) []byte {
	return fmt.Appendf(nil, `{"data_version":1,"license_id":%d,"client_id":%q,"pack_id":"pack-7","product_id":"acme-cad","product_version":"4.2","platform":"linux-amd64","features":["render"],"flags":0%s}`,
		licenseID, verify.ClientID(pub), extra)
}

// checkAgainstX509 checks that crypto/x509 reads a verified license the way
// Verify's own parser did.
func checkAgainstX509(t *testing.T, lic *verify.License) {
	t.Helper()
	c, err := lic.Certificate()
	if err != nil {
		t.Fatalf("verified license does not parse with crypto/x509: %v", err)
	}
	if err := c.CheckSignatureFrom(lic.Site); err != nil {
		t.Fatalf("crypto/x509 disagrees on the signature: %v", err)
	}
	pub, _ := c.PublicKey.(ed25519.PublicKey)
	if !c.NotBefore.Equal(lic.NotBefore) || !c.NotAfter.Equal(lic.NotAfter) || !c.SerialNumber.IsInt64() ||
		c.SerialNumber.Int64() != lic.LicenseID || !pub.Equal(lic.ClientKey) || c.IsCA || len(c.UnhandledCriticalExtensions) > 0 {
		t.Fatalf("crypto/x509 reads the license differently: %v %v %v %v", c.NotBefore, c.NotAfter, c.SerialNumber, c.IsCA)
	}
}

func wantErr(t *testing.T, err error, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
	if err.Error() == want.Error() {
		t.Fatalf("error %q carries no explanation", err)
	}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	opts := verify.Options{Now: epoch, Product: "acme-cad", ClientKey: f.clientPub}
	lic, err := v.Verify(f.licPEM, opts)
	if err != nil {
		t.Fatal(err)
	}
	if lic.LicenseID != 1001 || lic.ProductID != "acme-cad" || lic.PackID != "pack-7" || lic.DataVersion != verify.CurrentDataVersion ||
		lic.ClientID != verify.ClientID(f.clientPub) || !lic.HasFeature("export") || lic.HasFeature("admin") || lic.Temporary() {
		t.Fatalf("attributes: %+v", lic.Attributes)
	}
	if !lic.ClientKey.Equal(f.clientPub) || lic.SiteID != pki.SiteID(f.site.Signer.Public()) {
		t.Fatalf("client key or site ID wrong: %s", lic.SiteID)
	}
	if !lic.NotAfter.Equal(f.notAfter) || !lic.NotBefore.Equal(epoch.Add(-time.Hour)) {
		t.Fatalf("validity %s .. %s", lic.NotBefore, lic.NotAfter)
	}
	if !bytes.Equal(lic.Raw, f.licDER) || !bytes.Equal(lic.Site.Raw, f.site.Cert.Raw) || len(lic.Chain()) != 2 {
		t.Fatal("certificates differ from the input")
	}
	checkAgainstX509(t, lic)
	// Again, from the cache, and as DER with a trailing copy of the root (as TLS clients send).
	if _, err := v.VerifyChain([][]byte{f.licDER, f.site.Cert.Raw, f.root.Cert.Raw}, opts); err != nil {
		t.Fatal(err)
	}
	if n := v.CachedSites(); n != 1 {
		t.Fatalf("%d sites cached, want 1", n)
	}
	// Without options: now, any product, any client.
	if _, err := v.Verify(f.licPEM, verify.Options{Now: epoch.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	// Text around the PEM blocks (a mail, a comment) does not matter.
	if _, err := v.Verify(append([]byte("license for Alice\n"), f.licPEM...), opts); err != nil {
		t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	f := newFixture(t)
	if _, err := verify.New(f.root.Cert.Raw); err != nil {
		t.Fatalf("DER root: %v", err)
	}
	for name, in := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not a certificate"),
		"site":    f.site.Cert.Raw,
		"license": f.licDER,
		"key":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
	} {
		_, err := verify.New(in)
		wantErr(t, err, verify.ErrMalformed)
		t.Logf("%s: %v", name, err)
	}
}

func TestMalformedFile(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	onlyLicense := license.EncodePEM([][]byte{f.licDER})
	for name, in := range map[string][]byte{
		"empty":        nil,
		"text":         []byte("hello"),
		"only license": onlyLicense,
		"bad base64":   bytes.Replace(f.licPEM, []byte("MII"), []byte("M!I"), 1),
	} {
		_, err := v.Verify(in, verify.Options{Now: epoch})
		wantErr(t, err, verify.ErrMalformed)
		t.Logf("%s: %v", name, err)
	}
	_, err := v.VerifyChain([][]byte{f.licDER}, verify.Options{Now: epoch})
	wantErr(t, err, verify.ErrMalformed)
}

// TestTamperEveryByte changes every byte of the license file's certificates,
// one at a time: each change must be refused.
func TestTamperEveryByte(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	opts := verify.Options{Now: epoch}
	for ci, orig := range [][]byte{f.licDER, f.site.Cert.Raw} {
		parsed := 0
		for i := range orig {
			for _, mask := range []byte{0xff, 0x01, 0x80} {
				chain := [][]byte{f.licDER, f.site.Cert.Raw}
				chain[ci] = bytes.Clone(orig)
				chain[ci][i] ^= mask
				if _, err := x509.ParseCertificate(chain[ci]); err == nil {
					parsed++
				}
				lic, err := v.VerifyChain(chain, opts)
				if err == nil {
					t.Fatalf("cert %d byte %d ^ %#x: altered license verifies: %+v", ci, i, mask, lic.Attributes)
				}
				if !errors.Is(err, verify.ErrMalformed) && !errors.Is(err, verify.ErrBadSignature) && !errors.Is(err, verify.ErrUntrustedSite) {
					t.Fatalf("cert %d byte %d ^ %#x: unexpected error %v", ci, i, mask, err)
				}
				// The same through the PEM file.
				if _, err := v.Verify(license.EncodePEM(chain), opts); err == nil {
					t.Fatalf("cert %d byte %d ^ %#x: altered license file verifies", ci, i, mask)
				}
			}
		}
		t.Logf("certificate %d: %d bytes, %d of %d alterations still parse, none verify", ci, len(orig), parsed, 3*len(orig))
	}
	if n := v.CachedSites(); n != 1 {
		t.Fatalf("%d sites cached after tampering, want only the genuine one", n)
	}
}

func TestCopiedToAnotherClient(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	_, err := v.Verify(f.licPEM, verify.Options{Now: epoch, ClientKey: other})
	wantErr(t, err, verify.ErrWrongClient)
	t.Log(err)
}

func TestWrongProduct(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	_, err := v.Verify(f.licPEM, verify.Options{Now: epoch, Product: "acme-cam"})
	wantErr(t, err, verify.ErrWrongProduct)
	t.Log(err)
}

func TestUntrustedSite(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	opts := verify.Options{Now: epoch}

	// A site certified by another root (a rogue "vendor"), even one with the same name.
	rogueRoot := newRoot(t, "Acme")
	rogue := newSite(t, rogueRoot, "Acme Site Berlin")
	der, err := license.Issue(rogue, f.clientPub, testAttrs(), epoch.Add(-time.Hour), epoch.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyChain([][]byte{der, rogue.Cert.Raw}, opts)
	wantErr(t, err, verify.ErrUntrustedSite)
	t.Log(err)

	// A self-made "site": the client's own key as a CA.
	_, selfPriv, _ := ed25519.GenerateKey(rand.Reader)
	self, err := pki.NewRoot(keys.NewSigner(selfPriv), "Acme", epoch.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyChain([][]byte{f.licDER, self.Cert.Raw}, opts)
	wantErr(t, err, verify.ErrUntrustedSite)

	// The rogue license presented with the genuine site certificate: wrong issuer.
	_, err = v.VerifyChain([][]byte{der, f.site.Cert.Raw}, opts)
	if !errors.Is(err, verify.ErrUntrustedSite) && !errors.Is(err, verify.ErrBadSignature) {
		t.Fatalf("rogue license with genuine site certificate: %v", err)
	}

	// A certificate the root issued, but not to a site: the clearinghouse.
	chKey, _, _ := ed25519.GenerateKey(rand.Reader)
	ch, err := f.root.IssueClearinghouse(chKey, "Acme", epoch.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyChain([][]byte{f.licDER, ch}, opts)
	wantErr(t, err, verify.ErrUntrustedSite)
	t.Log(err)

	// A license used as the issuer of another license.
	_, err = v.VerifyChain([][]byte{f.licDER, f.licDER}, opts)
	wantErr(t, err, verify.ErrUntrustedSite)
}

func TestOtherSiteOfSameVendor(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	// Another genuine site of the same vendor with the same name: the license
	// names it as issuer, but its key did not sign the license.
	twin := newSite(t, f.root, "Acme Site Berlin")
	_, err := v.VerifyChain([][]byte{f.licDER, twin.Cert.Raw}, verify.Options{Now: epoch})
	if !errors.Is(err, verify.ErrUntrustedSite) && !errors.Is(err, verify.ErrBadSignature) {
		t.Fatalf("license with another site's certificate: %v", err)
	}
	t.Log(err)
	// A license the twin issued verifies.
	attrs := testAttrs()
	testpki.Bind(t, f.root, twin, &attrs)
	der, err := license.Issue(twin, f.clientPub, attrs, epoch.Add(-time.Hour), epoch.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyChain([][]byte{der, twin.Cert.Raw}, verify.Options{Now: epoch}); err != nil {
		t.Fatal(err)
	}
}

func TestValidity(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"just before expiry", f.notAfter.Add(-time.Second), nil},
		{"at expiry", f.notAfter, verify.ErrExpired},
		{"after expiry", f.notAfter.Add(24 * time.Hour), verify.ErrExpired},
		{"before start", epoch.Add(-2 * time.Hour), verify.ErrNotYetValid},
		{"site expired", f.site.Cert.NotAfter.Add(time.Hour), verify.ErrExpired},
		{"root expired", f.root.Cert.NotAfter.Add(time.Hour), verify.ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(f.licPEM, verify.Options{Now: tc.now})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.want)
			t.Log(err)
		})
	}
	// Now defaults to the real time: the fixture license is long expired or valid
	// depending on the clock, so only check that it does not panic.
	_, _ = v.Verify(f.licPEM, verify.Options{})
}

func TestNewerDataVersion(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	js := []byte(`{"data_version":7,"license_id":42,"client_id":"` + verify.ClientID(f.clientPub) + `","pack_id":"pack-9",` +
		`"product_id":"acme-cad","product_version":"5.0","platform":"linux-arm64","features":["render","ai"],"flags":2,` +
		`"seat_class":"gold","limits":{"cores":[8,16],"until":null},"flags2":18446744073709551615}`)
	der := issueRaw(t, f.site, f.clientPub, 42, js, nil)
	lic, err := v.VerifyChain([][]byte{der, f.site.Cert.Raw}, verify.Options{Now: epoch, Product: "acme-cad", ClientKey: f.clientPub, AllowUnbound: true})
	if err != nil {
		t.Fatalf("license of a newer data version: %v", err)
	}
	if lic.DataVersion != 7 || lic.LicenseID != 42 || !lic.Upgraded() || !lic.HasFeature("ai") {
		t.Fatalf("attributes %+v", lic.Attributes)
	}
}

func TestInconsistentLicense(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	for name, der := range map[string][]byte{
		"no attributes":      issueRaw(t, f.site, f.clientPub, 5, nil, nil),
		"client ID of other": issueRaw(t, f.site, f.clientPub, 5, attrsJSON(other, 5, ""), nil),
		"serial differs":     issueRaw(t, f.site, f.clientPub, 6, attrsJSON(f.clientPub, 5, ""), nil),
		"not JSON":           issueRaw(t, f.site, f.clientPub, 5, []byte("license_id=5"), nil),
		"JSON not object":    issueRaw(t, f.site, f.clientPub, 5, []byte(`[1,2]`), nil),
		"data version 0":     issueRaw(t, f.site, f.clientPub, 5, []byte(`{"license_id":5,"client_id":"`+verify.ClientID(f.clientPub)+`","product_id":"p"}`), nil),
		"no product":         issueRaw(t, f.site, f.clientPub, 5, []byte(`{"data_version":1,"license_id":5,"client_id":"`+verify.ClientID(f.clientPub)+`"}`), nil),
		"wrong type":         issueRaw(t, f.site, f.clientPub, 5, attrsJSON(f.clientPub, 5, `,"flags":"x"`), nil),
		"role site": issueRaw(t, f.site, f.clientPub, 5, attrsJSON(f.clientPub, 5, ""), func(c *x509.Certificate) {
			v, _ := asn1.MarshalWithParams(verify.RoleSite, "utf8")
			c.ExtraExtensions[0].Value = v
		}),
		"a CA": issueRaw(t, f.site, f.clientPub, 5, attrsJSON(f.clientPub, 5, ""), func(c *x509.Certificate) {
			c.IsCA = true
			c.KeyUsage |= x509.KeyUsageCertSign
		}),
		"attributes not octet string": issueRaw(t, f.site, f.clientPub, 5, nil, func(c *x509.Certificate) {
			v, _ := asn1.MarshalWithParams(string(attrsJSON(f.clientPub, 5, "")), "utf8")
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: verify.OIDLicense, Value: v})
		}),
		"unknown critical extension": issueRaw(t, f.site, f.clientPub, 5, attrsJSON(f.clientPub, 5, ""), func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 99}, Critical: true, Value: []byte{5, 0}})
		}),
	} {
		_, err := v.VerifyChain([][]byte{der, f.site.Cert.Raw}, verify.Options{Now: epoch, AllowUnbound: true})
		if !errors.Is(err, verify.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
	// The baseline of the table above verifies.
	if _, err := v.VerifyChain([][]byte{issueRaw(t, f.site, f.clientPub, 5, attrsJSON(f.clientPub, 5, ""), nil), f.site.Cert.Raw}, verify.Options{Now: epoch, AllowUnbound: true}); err != nil {
		t.Fatal(err)
	}
}

func TestAttributesRoundTrip(t *testing.T) {
	a := testAttrs()
	a.DataVersion = 1
	a.ClientID = "client-0011223344556677"
	a.SystemID = "sys-1"
	a.Flags = verify.FlagTemporary | verify.FlagUpgraded
	ext, err := a.MarshalExtension()
	if err != nil {
		t.Fatal(err)
	}
	if !ext.Id.Equal(verify.OIDLicense) || ext.Critical {
		t.Fatalf("extension %v critical=%v", ext.Id, ext.Critical)
	}
	b, err := verify.ParseAttributes(ext.Value)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) || !b.Temporary() || !b.Upgraded() {
		t.Fatalf("round trip: %+v != %+v", a, b)
	}
	var js []byte
	if _, err := asn1.Unmarshal(ext.Value, &js); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"data_version":1`, `"license_id":1001`, `"client_id":`, `"system_id":"sys-1"`, `"pack_id":`, `"product_id":`, `"product_version":`, `"platform":`, `"features":[`, `"flags":3`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("attribute JSON %s lacks %s", js, key)
		}
	}
	// No features encode as an empty list, not null; no system ID is omitted.
	a.Features, a.SystemID = nil, ""
	ext, _ = a.MarshalExtension()
	if bytes.Contains(ext.Value, []byte("null")) || bytes.Contains(ext.Value, []byte("system_id")) {
		t.Fatalf("extension %s", ext.Value)
	}
}

func TestClientID(t *testing.T) {
	pub := ed25519.PublicKey(make([]byte, 32))
	// SHA-256 of 32 zero bytes is 66687aadf862bd77...
	if got, want := verify.ClientID(pub), "client-66687aadf862bd77"; got != want {
		t.Fatalf("ClientID = %s, want %s", got, want)
	}
}

func TestConcurrentAndCacheBound(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	v.SetCacheSize(2)
	var chains [][][]byte
	for i := range 4 {
		s := newSite(t, f.root, fmt.Sprintf("site %d", i))
		attrs := testAttrs()
		testpki.Bind(t, f.root, s, &attrs)
		der, err := license.Issue(s, f.clientPub, attrs, epoch.Add(-time.Hour), epoch.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		chains = append(chains, [][]byte{der, s.Cert.Raw})
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				c := chains[(g+i)%len(chains)]
				opts := verify.Options{Now: epoch, ClientKey: f.clientPub}
				var err error
				if i%2 == 0 {
					_, err = v.VerifyChain(c, opts)
				} else {
					_, err = v.Verify(license.EncodePEM(c), opts)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := v.CachedSites(); n < 1 || n > 2 {
		t.Fatalf("%d sites cached, bound is 2", n)
	}
}

// FuzzVerify feeds altered license certificates (DER) and license files
// (PEM) to the verifier. Nothing may panic, and only a license certificate the
// site really issued may verify: no altered byte string is accepted.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	v := fx.verifier(f)
	other := newSite(f, fx.root, "other")
	extra := issueRaw(f, fx.site, fx.clientPub, 5, attrsJSON(fx.clientPub, 5, `,"x":{"y":[1,"2",null]}`), nil)
	issued := map[string]bool{string(fx.licDER): true, string(extra): true}
	f.Add(fx.licDER)
	f.Add(fx.licPEM)
	f.Add(fx.site.Cert.Raw)
	f.Add(extra)
	f.Add(issueRaw(f, other, fx.clientPub, 5, attrsJSON(fx.clientPub, 5, ""), nil))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	opts := verify.Options{Now: epoch}
	f.Fuzz(func(t *testing.T, data []byte) {
		if lic, err := v.VerifyChain([][]byte{data, fx.site.Cert.Raw}, opts); err == nil {
			if !issued[string(data)] {
				t.Fatalf("a license the site never issued verifies: %+v", lic.Attributes)
			}
			checkAgainstX509(t, lic)
		}
		if lic, err := v.Verify(data, opts); err == nil && !issued[string(lic.Raw)] {
			t.Fatalf("a license file the site never issued verifies: %+v", lic.Attributes)
		}
		_, _ = verify.ParseAttributes(data)
	})
}
