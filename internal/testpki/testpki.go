// Package testpki builds the certificate hierarchy tests need: a vendor root
// and sites it certifies, the way a vendor does it. For tests only.
package testpki

import (
	"crypto/ed25519"
	"crypto/x509"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
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
	return below(t, func(pub ed25519.PublicKey) ([]byte, error) {
		return root.IssueIssuing(pub, root.Cert.Subject.Organization[0], now)
	})
}

// below makes a key and the certificate issue makes for it.
func below(t T, issue func(ed25519.PublicKey) ([]byte, error)) *pki.Authority {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	der, err := issue(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: c, Signer: s}
}

// Clearinghouse makes the vendor's clearinghouse key and certificate below
// root at now, as 'licet vendor init' does.
func Clearinghouse(t T, root *pki.Authority, now time.Time) *pki.Authority {
	t.Helper()
	return below(t, func(pub ed25519.PublicKey) ([]byte, error) { return root.IssueClearinghouse(pub, "Test", now) })
}

// SignStatement signs a pack statement with the clearinghouse ch, giving
// the JSON of its Signed envelope (what a license carries).
func SignStatement(t T, ch *pki.Authority, st *verify.Statement) []byte {
	t.Helper()
	b, err := pack.SignStatementDoc(st, ch.Signer, [][]byte{ch.Cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// StatementFor returns a statement of a pack sold to site that covers
// exactly the license of attrs (its pack, product, version, platform,
// features; its license ID alone as the serial range, or as the temporary
// range of a temporary license, valid up to maxDays) and expires at expires
// (nil: never).
func StatementFor(site *pki.Authority, attrs verify.Attributes, expires *time.Time, maxDays int) *verify.Statement {
	st := &verify.Statement{
		PackID: attrs.PackID, SiteID: site.Cert.Subject.SerialNumber, ProductID: attrs.ProductID, ProductVersion: attrs.ProductVersion,
		Platform: attrs.Platform, Features: attrs.Features, BeginSerial: attrs.LicenseID, Quantity: 1, Expires: expires,
	}
	if st.Features == nil {
		st.Features = []string{}
	}
	if attrs.Temporary() {
		st.BeginSerial = attrs.LicenseID + 1
		st.Temporary = &verify.TemporaryAllowance{Count: 1, MaxDays: maxDays, BeginSerial: attrs.LicenseID}
	}
	if attrs.Upgraded() {
		st.Upgrade = &verify.StatementUpgrade{FromMin: "0", FromMax: attrs.ProductVersion}
	}
	return st
}

// Bind gives attrs the pack statement of StatementFor (no expiry, 60
// temporary days), signed by a clearinghouse of root, so that a license
// issued with attrs by site verifies as one the vendor sold.
func Bind(t T, root, site *pki.Authority, attrs *verify.Attributes) {
	t.Helper()
	ch := Clearinghouse(t, root, root.Cert.NotBefore.Add(2*time.Hour))
	attrs.PackStatement = SignStatement(t, ch, StatementFor(site, *attrs, nil, 60))
}
