package pki_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// newIssuing makes the issuing CA of root.
func newIssuing(t *testing.T, root *pki.Authority) *pki.Authority {
	t.Helper()
	k, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	der, err := root.IssueIssuing(k.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.VerifyIssuing([][]byte{der}, root.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsCA || c.MaxPathLen != 1 || pki.Role(c) != pki.RoleIssuing {
		t.Fatalf("issuing CA: CA %v pathlen %d role %q", c.IsCA, c.MaxPathLen, pki.Role(c))
	}
	return &pki.Authority{Cert: c, Signer: k}
}

// TestIssuingChain: a site certified by the issuing CA verifies with the
// issuing certificate after it, and its licenses pass standard RFC 5280 path
// validation (what nginx and crypto/tls do) root → issuing → site → license.
func TestIssuingChain(t *testing.T) {
	root := newRoot(t, "ACME", now)
	iss := newIssuing(t, root)
	s := newSite(t, iss, "cust-1", now)
	site, err := pki.VerifySite([][]byte{s.der, iss.Cert.Raw, root.Cert.Raw}, root.Cert, now)
	if err != nil {
		t.Fatalf("site under the issuing CA: %v", err)
	}
	if site.CustomerID != "cust-1" {
		t.Errorf("customer %q", site.CustomerID)
	}
	if _, err := pki.VerifySite([][]byte{s.der}, root.Cert, now); err == nil {
		t.Error("site under the issuing CA accepted without the issuing certificate")
	}
	// A license under the site, validated the standard way.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "client"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	sa := s.authority(t)
	lic, err := x509.CreateCertificate(rand.Reader, tmpl, sa.Cert, pub, sa.Signer.Private())
	if err != nil {
		t.Fatal(err)
	}
	lc, _ := x509.ParseCertificate(lic)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inter.AddCert(sa.Cert)
	inter.AddCert(iss.Cert)
	if _, err := lc.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("license under root → issuing → site fails RFC 5280 path validation: %v", err)
	}
}

// TestSiteIssuedBySiteRefused: a site certificate issued by another site's
// key, presented with that site and the real issuing CA, is refused; so is a
// site certified by the provisioning CA, and a clearinghouse by the issuing CA.
func TestSiteIssuedBySiteRefused(t *testing.T) {
	root := newRoot(t, "ACME", now)
	iss := newIssuing(t, root)
	s := newSite(t, iss, "cust-1", now)
	evil := newSite(t, s.authority(t), "cust-1", now)
	for name, chain := range map[string][][]byte{
		"site, site, issuing": {evil.der, s.der, iss.Cert.Raw, root.Cert.Raw},
		"site, site":          {evil.der, s.der},
	} {
		if _, err := pki.VerifySite(chain, root.Cert, now); err == nil {
			t.Errorf("%s: a site certified by a site was accepted", name)
		}
	}
	pk, _ := keys.GenerateSigner()
	provDER, err := root.IssueProvisioning(pk.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	prov, _ := x509.ParseCertificate(provDER)
	bySub := newSite(t, &pki.Authority{Cert: prov, Signer: pk}, "cust-1", now)
	_, err = pki.VerifySite([][]byte{bySub.der, provDER}, root.Cert, now)
	wantInvalid(t, "site certified by the provisioning CA", err, "issuing")
	ck, _ := keys.GenerateSigner()
	ch, err := iss.IssueClearinghouse(ck.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.VerifyClearinghouse([][]byte{ch, iss.Cert.Raw}, root.Cert, now)
	wantInvalid(t, "clearinghouse certified by the issuing CA", err, "was not issued by this vendor's root")
}

// TestOldRootHoldsNoIssuing: a root of path length 1 (made before the
// issuing CA) refuses to certify one.
func TestOldRootHoldsNoIssuing(t *testing.T) {
	k, _ := keys.GenerateSigner()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "old root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(pki.RootValidity), IsCA: true, BasicConstraintsValid: true,
		MaxPathLen: 1, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.Private())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	if pki.CanHoldIssuing(c) {
		t.Error("a path-length-1 root can hold an issuing CA")
	}
	if !pki.CanHoldIssuing(newRoot(t, "ACME", now).Cert) {
		t.Error("a new root cannot hold an issuing CA")
	}
}
