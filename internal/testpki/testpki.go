// Package testpki builds the certificate hierarchy tests need: a vendor root
// and sites it certifies, the way a vendor does it. For tests only.
package testpki

import (
	"crypto/x509"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// T is the part of testing.TB the helpers use.
type T interface {
	Helper()
	Fatal(args ...any)
}

// Root makes a vendor root certificate valid from now.
func Root(t T, name string, now time.Time) *pki.Authority {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.NewRoot(s, name, now)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Site makes a site key, its certification request, and the certificate
// root issues for customer at now.
func Site(t T, root *pki.Authority, name, customer string, now time.Time) *pki.Authority {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewSiteRequest(s, d.PublicBytes(), name)
	if err != nil {
		t.Fatal(err)
	}
	req, err := pki.ParseSiteRequest(csr)
	if err != nil {
		t.Fatal(err)
	}
	der, err := root.CertifySite(req, customer, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: c, Signer: s}
}

// Issuing makes the vendor's issuing CA below root at now, as 'licet vendor
// init' does; sites it certifies (with Site) chain root → issuing → site.
func Issuing(t T, root *pki.Authority, now time.Time) *pki.Authority {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	der, err := root.IssueIssuing(s.Public(), root.Cert.Subject.Organization[0], now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: c, Signer: s}
}
