package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func newRoot(t testing.TB, name string, at time.Time) *pki.Authority {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	a, err := pki.NewRoot(s, name, at)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type site struct {
	key  *keys.Signer
	hpke *keys.Decrypter
	csr  []byte
	der  []byte // the site certificate
}

func newSite(t testing.TB, root *pki.Authority, customer string, at time.Time) *site {
	t.Helper()
	k, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewSiteRequest(k, d.PublicBytes(), "Plant 7")
	if err != nil {
		t.Fatal(err)
	}
	req, err := pki.ParseSiteRequest(csr)
	if err != nil {
		t.Fatal(err)
	}
	der, err := root.CertifySite(req, customer, at)
	if err != nil {
		t.Fatal(err)
	}
	return &site{key: k, hpke: d, csr: csr, der: der}
}

func (s *site) authority(t testing.TB) *pki.Authority {
	t.Helper()
	c, err := x509.ParseCertificate(s.der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: c, Signer: s.key}
}

func wantInvalid(t *testing.T, what string, err error, substr ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if !errs.Is(err, errs.Invalid) {
		t.Errorf("%s: error kind %v, want invalid: %v", what, errs.KindOf(err), err)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not contain %q", what, err, s)
		}
	}
}

func utf8DER(s string) []byte {
	b, _ := asn1.MarshalWithParams(s, "utf8")
	return b
}

func ext(c *x509.Certificate, oid asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

func TestOIDs(t *testing.T) {
	for oid, want := range map[string]string{
		pki.OIDRole.String(): "1.3.6.1.4.1.58888.1.1", pki.OIDHPKEKey.String(): "1.3.6.1.4.1.58888.1.2", pki.OIDCustomer.String(): "1.3.6.1.4.1.58888.1.3",
	} {
		if oid != want {
			t.Errorf("OID %s, want %s", oid, want)
		}
	}
}

func TestRoot(t *testing.T) {
	root := newRoot(t, "ACME", now)
	c, err := pki.ParseRoot(root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != pki.RootPathLen || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root constraints: CA %v pathlen %d usage %v", c.IsCA, c.MaxPathLen, c.KeyUsage)
	}
	if c.Subject.CommonName != "ACME licet root" || pki.Role(c) != pki.RoleRoot {
		t.Errorf("root subject %q role %q", c.Subject.CommonName, pki.Role(c))
	}
	if !c.NotBefore.Equal(now.Add(-time.Hour)) || !c.NotAfter.Equal(now.Add(pki.RootValidity)) {
		t.Errorf("root validity %s to %s", c.NotBefore, c.NotAfter)
	}
	if c.SignatureAlgorithm != x509.PureEd25519 {
		t.Errorf("root signed with %v", c.SignatureAlgorithm)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 127 {
		t.Errorf("serial %v", c.SerialNumber)
	}
	e, ok := ext(c, pki.OIDRole)
	if !ok || e.Critical || !bytes.Equal(e.Value, []byte{0x0c, 4, 'r', 'o', 'o', 't'}) {
		t.Errorf("role extension %+v", e)
	}
	sum := sha256.Sum256(c.Raw)
	if pki.Fingerprint(c.Raw) != hex.EncodeToString(sum[:]) {
		t.Error("fingerprint is not the SHA-256 of the DER")
	}
}

func TestParseRootRejects(t *testing.T) {
	root := newRoot(t, "ACME", now)
	s := newSite(t, root, "cust-1", now)
	ch, _ := keys.GenerateSigner()
	chDER, err := root.IssueClearinghouse(ch.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	badSig := bytes.Clone(root.Cert.Raw)
	badSig[len(badSig)-1] ^= 0x01

	// A self-signed CA without the licet role.
	k, _ := keys.GenerateSigner()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plain CA"}, NotBefore: now, NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	plain, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.Private())
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		der  []byte
		want string
	}{
		"garbage":             {[]byte("hello"), "not valid X.509"},
		"empty":               {nil, "not valid X.509"},
		"site certificate":    {s.der, "is not a licet vendor root"},
		"clearinghouse":       {chDER, "is not a licet vendor root"},
		"CA without role":     {plain, "is not a licet vendor root"},
		"bad self-signature":  {badSig, "self-signature does not verify"},
		"truncated":           {root.Cert.Raw[:len(root.Cert.Raw)-10], "not valid X.509"},
		"trailing data":       {append(bytes.Clone(root.Cert.Raw), 0), "not valid X.509"},
		"certification req.":  {s.csr, "not valid X.509"},
		"root cert, one flip": {flip(root.Cert.Raw, 200), ""},
	}
	for name, c := range cases {
		_, err := pki.ParseRoot(c.der)
		wantInvalid(t, name, err, c.want)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestSiteRequest(t *testing.T) {
	k, _ := keys.GenerateSigner()
	d, _ := keys.GenerateDecrypter()
	csr, err := pki.NewSiteRequest(k, d.PublicBytes(), "Plant 7")
	if err != nil {
		t.Fatal(err)
	}
	req, err := pki.ParseSiteRequest(csr)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(k.Public())
	wantID := "site-" + hex.EncodeToString(sum[:8])
	if req.SiteID != wantID || pki.SiteID(k.Public()) != wantID || req.Name != "Plant 7" ||
		!bytes.Equal(req.PublicKey, k.Public()) || !bytes.Equal(req.HPKEKey, d.PublicBytes()) {
		t.Fatalf("parsed request %+v", req)
	}
	parsed, _ := x509.ParseCertificateRequest(csr)
	if parsed.Subject.SerialNumber != wantID {
		t.Errorf("CSR subject serialNumber %q", parsed.Subject.SerialNumber)
	}
	e, ok := findExt(parsed.Extensions, pki.OIDHPKEKey)
	if !ok || !bytes.Equal(e.Value[:4], []byte{0x04, 0x82, 0x04, 0xc0}) || !bytes.Equal(e.Value[4:], d.PublicBytes()) {
		t.Errorf("HPKE key extension is not an OCTET STRING of the key")
	}
	// Without a name, the site ID stands in.
	csr, _ = pki.NewSiteRequest(k, d.PublicBytes(), "")
	if req, err := pki.ParseSiteRequest(csr); err != nil || req.Name != wantID {
		t.Fatalf("unnamed request: %+v, %v", req, err)
	}
}

func findExt(exts []pkix.Extension, oid asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range exts {
		if e.Id.Equal(oid) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

func TestParseSiteRequestRejects(t *testing.T) {
	k, _ := keys.GenerateSigner()
	other, _ := keys.GenerateSigner()
	d, _ := keys.GenerateDecrypter()
	hpkeExt := func(b []byte) pkix.Extension {
		v, _ := asn1.Marshal(b)
		return pkix.Extension{Id: pki.OIDHPKEKey, Value: v}
	}
	csr := func(signer any, serial string, exts ...pkix.Extension) []byte {
		t.Helper()
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "x", SerialNumber: serial}, ExtraExtensions: exts,
		}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := pki.NewSiteRequest(k, d.PublicBytes(), "Plant 7")
	i := bytes.Index(good, []byte("Plant 7"))
	cases := map[string]struct {
		der  []byte
		want string
	}{
		"mismatched site ID":     {csr(k.Private(), pki.SiteID(other.Public()), hpkeExt(d.PublicBytes())), "names site \"" + pki.SiteID(other.Public()) + "\" but its key belongs to \"" + pki.SiteID(k.Public()) + "\""},
		"no site ID":             {csr(k.Private(), "", hpkeExt(d.PublicBytes())), "but its key belongs to"},
		"no HPKE key":            {csr(k.Private(), pki.SiteID(k.Public())), "carries no HPKE key"},
		"short HPKE key":         {csr(k.Private(), pki.SiteID(k.Public()), hpkeExt(d.PublicBytes()[:100])), "not an MLKEM768-X25519 key"},
		"HPKE key not a string":  {csr(k.Private(), pki.SiteID(k.Public()), pkix.Extension{Id: pki.OIDHPKEKey, Value: utf8DER("x")}), "carries no HPKE key"},
		"ECDSA key":              {csr(ec, "x", hpkeExt(d.PublicBytes())), "not Ed25519"},
		"garbage":                {[]byte{0x30, 0x03, 0x02, 0x01, 0x01}, "not a valid X.509 CSR"},
		"name changed after sig": {bytes.Replace(good, []byte("Plant 7"), []byte("Plant 8"), 1), "signature does not verify"},
		"byte flipped":           {flip(good, i), "signature does not verify"},
		"signature flipped":      {flip(good, len(good)-2), "signature does not verify"},
	}
	for name, c := range cases {
		_, err := pki.ParseSiteRequest(c.der)
		wantInvalid(t, name, err, c.want)
	}
}

func TestCertifySite(t *testing.T) {
	root := newRoot(t, "ACME", now)
	s := newSite(t, root, "cust-1", now)
	for _, chain := range [][][]byte{{s.der}, {s.der, root.Cert.Raw}} {
		got, err := pki.VerifySite(chain, root.Cert, now)
		if err != nil {
			t.Fatal(err)
		}
		if got.SiteID != pki.SiteID(s.key.Public()) || got.Name != "Plant 7" || got.CustomerID != "cust-1" ||
			!bytes.Equal(got.PublicKey, s.key.Public()) || !bytes.Equal(got.HPKEKey, s.hpke.PublicBytes()) {
			t.Fatalf("verified site %+v", got)
		}
	}
	c, _ := x509.ParseCertificate(s.der)
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature ||
		len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("site constraints: CA %v pathlen %d/%v usage %v eku %v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage, c.ExtKeyUsage)
	}
	if !c.NotBefore.Equal(now.Add(-time.Hour)) || !c.NotAfter.Equal(now.Add(pki.SiteValidity)) {
		t.Errorf("site validity %s to %s", c.NotBefore, c.NotAfter)
	}
	if !bytes.Equal(c.RawIssuer, root.Cert.RawSubject) {
		t.Error("site issuer is not the root")
	}
	for oid, want := range map[string][]byte{
		pki.OIDRole.String():     utf8DER("site"),
		pki.OIDCustomer.String(): utf8DER("cust-1"),
	} {
		found := false
		for _, e := range c.Extensions {
			if e.Id.String() == oid {
				found = true
				if e.Critical || !bytes.Equal(e.Value, want) {
					t.Errorf("extension %s = %x critical %v, want %x", oid, e.Value, e.Critical, want)
				}
			}
		}
		if !found {
			t.Errorf("extension %s missing", oid)
		}
	}
	if e, ok := ext(c, pki.OIDHPKEKey); !ok || e.Critical {
		t.Error("HPKE key extension missing or critical")
	}
	// A site cannot outlive the root that certifies it.
	oldRoot := newRoot(t, "Old", now.Add(-pki.RootValidity+24*time.Hour))
	s = newSite(t, oldRoot, "cust-1", now)
	c, _ = x509.ParseCertificate(s.der)
	if !c.NotAfter.Equal(oldRoot.Cert.NotAfter) {
		t.Errorf("site certificate ends %s, after its root (%s)", c.NotAfter, oldRoot.Cert.NotAfter)
	}
}

func TestClearinghouse(t *testing.T) {
	root := newRoot(t, "ACME", now)
	k, _ := keys.GenerateSigner()
	der, err := root.IssueClearinghouse(k.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.VerifyClearinghouse([][]byte{der}, root.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, k.Public()) {
		t.Fatal("wrong key")
	}
	c, _ := x509.ParseCertificate(der)
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || pki.Role(c) != pki.RoleClearinghouse ||
		!c.NotAfter.Equal(now.Add(pki.ClearinghouseValidity)) {
		t.Errorf("clearinghouse certificate: CA %v usage %v role %q until %s", c.IsCA, c.KeyUsage, pki.Role(c), c.NotAfter)
	}
	_, err = pki.VerifyClearinghouse([][]byte{der}, root.Cert, now.Add(pki.ClearinghouseValidity+time.Hour))
	wantInvalid(t, "expired clearinghouse", err, "has expired")
	_, err = pki.VerifyClearinghouse(nil, root.Cert, now)
	wantInvalid(t, "no chain", err, "no certificate given for the clearinghouse")
}

func TestSiteOfAnotherRoot(t *testing.T) {
	root, rogue := newRoot(t, "ACME", now), newRoot(t, "ACME", now) // same name, other key
	s := newSite(t, rogue, "cust-1", now)
	for _, chain := range [][][]byte{{s.der}, {s.der, rogue.Cert.Raw}, {s.der, root.Cert.Raw}} {
		_, err := pki.VerifySite(chain, root.Cert, now)
		wantInvalid(t, "site of another root", err, "was not issued by this vendor's root", pki.Fingerprint(root.Cert.Raw)[:16])
	}
}

func TestRoleConfusion(t *testing.T) {
	root := newRoot(t, "ACME", now)
	s := newSite(t, root, "cust-1", now)
	ch, _ := keys.GenerateSigner()
	chDER, _ := root.IssueClearinghouse(ch.Public(), "ACME", now)

	_, err := pki.VerifySite([][]byte{chDER}, root.Cert, now)
	wantInvalid(t, "clearinghouse as site", err, `is for role "clearinghouse", not "site"`)
	_, err = pki.VerifyClearinghouse([][]byte{s.der}, root.Cert, now)
	wantInvalid(t, "site as clearinghouse", err, `is for role "site", not "clearinghouse"`)
	_, err = pki.VerifySite([][]byte{root.Cert.Raw}, root.Cert, now)
	wantInvalid(t, "root as site", err, `is for role "root", not "site"`)
	_, err = pki.VerifyClearinghouse([][]byte{root.Cert.Raw}, root.Cert, now)
	wantInvalid(t, "root as clearinghouse", err, `is for role "root", not "clearinghouse"`)
}

// TestSiteCannotCertify checks that certificates a site issues with its own
// key (it is a CA, for client licenses) never pass as clearinghouse or site
// certificates, even with the site certificate offered as an intermediate.
func TestSiteCannotCertify(t *testing.T) {
	root := newRoot(t, "ACME", now)
	s := newSite(t, root, "cust-1", now)
	sa := s.authority(t)
	evil, _ := keys.GenerateSigner()
	fakeCH, err := sa.IssueClearinghouse(evil.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.VerifyClearinghouse([][]byte{fakeCH, s.der}, root.Cert, now)
	wantInvalid(t, "clearinghouse certified by a site", err, "was not issued by this vendor's root")

	victim := newSite(t, root, "cust-2", now)
	req, _ := pki.ParseSiteRequest(victim.csr)
	fakeSite, err := sa.CertifySite(req, "cust-1", now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.VerifySite([][]byte{fakeSite, s.der, root.Cert.Raw}, root.Cert, now)
	wantInvalid(t, "site certified by a site", err, "was not issued by this vendor's root")
}

func TestExpiry(t *testing.T) {
	root := newRoot(t, "ACME", now)
	s := newSite(t, root, "cust-1", now)
	for _, at := range []time.Time{now.Add(-time.Hour), now, now.Add(pki.SiteValidity)} {
		if _, err := pki.VerifySite([][]byte{s.der}, root.Cert, at); err != nil {
			t.Errorf("at %s: %v", at, err)
		}
	}
	_, err := pki.VerifySite([][]byte{s.der}, root.Cert, now.Add(pki.SiteValidity+time.Second))
	wantInvalid(t, "expired site", err, "has expired or is not valid yet", now.Add(pki.SiteValidity).Format(time.RFC3339))
	_, err = pki.VerifySite([][]byte{s.der}, root.Cert, now.Add(-2*time.Hour))
	wantInvalid(t, "site before its validity", err, "is not valid yet")
	// An expired root fails its sites too.
	oldRoot := newRoot(t, "Old", now.Add(-pki.RootValidity+24*time.Hour))
	s = newSite(t, oldRoot, "cust-1", now)
	_, err = pki.VerifySite([][]byte{s.der}, oldRoot.Cert, now.Add(48*time.Hour))
	wantInvalid(t, "site of an expired root", err)
}

func TestVerifySiteRejects(t *testing.T) {
	root := newRoot(t, "ACME", now)
	s := newSite(t, root, "", now) // no customer
	_, err := pki.VerifySite([][]byte{s.der}, root.Cert, now)
	wantInvalid(t, "site without customer", err, "lacks its customer")
	_, err = pki.VerifySite([][]byte{[]byte("junk")}, root.Cert, now)
	wantInvalid(t, "junk", err, "site certificate is not valid X.509")
	_, err = pki.VerifySite(nil, root.Cert, now)
	wantInvalid(t, "nothing", err, "no certificate given for the site")
	good := newSite(t, root, "cust-1", now)
	_, err = pki.VerifySite([][]byte{flip(good.der, len(good.der)-3)}, root.Cert, now)
	wantInvalid(t, "signature flipped", err, "was not issued by this vendor's root")
}

func FuzzParseSiteRequest(f *testing.F) {
	k, _ := keys.GenerateSigner()
	d, _ := keys.GenerateDecrypter()
	csr, err := pki.NewSiteRequest(k, d.PublicBytes(), "Plant 7")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(csr)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		req, err := pki.ParseSiteRequest(der)
		if err != nil {
			return
		}
		if req.SiteID != pki.SiteID(req.PublicKey) || len(req.HPKEKey) != 1216 || req.Name == "" {
			t.Fatalf("accepted request %+v", req)
		}
	})
}

func FuzzParseRoot(f *testing.F) {
	root := newRoot(f, "ACME", now)
	s := newSite(f, root, "cust-1", now)
	f.Add(root.Cert.Raw)
	f.Add(s.der)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := pki.ParseRoot(der)
		if err != nil {
			return
		}
		if !c.IsCA || pki.Role(c) != pki.RoleRoot || c.CheckSignatureFrom(c) != nil {
			t.Fatalf("accepted root %q", c.Subject.CommonName)
		}
		// Whatever passes as a root must not make a panic further on.
		_, _ = pki.VerifySite([][]byte{s.der}, c, now)
		_, _ = pki.VerifyClearinghouse([][]byte{der}, c, now)
	})
}

func FuzzVerifySite(f *testing.F) {
	root := newRoot(f, "ACME", now)
	s := newSite(f, root, "cust-1", now)
	f.Add(s.der)
	f.Add(root.Cert.Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		site, err := pki.VerifySite([][]byte{der}, root.Cert, now)
		if err != nil {
			return
		}
		if site.SiteID != pki.SiteID(site.PublicKey) || site.CustomerID == "" || pki.Role(site.Cert) != pki.RoleSite {
			t.Fatalf("accepted site %+v", site)
		}
		if err := site.Cert.CheckSignatureFrom(root.Cert); err != nil {
			t.Fatalf("accepted a site the root did not sign: %v", err)
		}
	})
}
