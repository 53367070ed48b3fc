package license_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

// The Issuer builds the same bytes as Issue (Ed25519 signatures are
// deterministic, so whole certificates compare), for licenses with and
// without features, temporary or upgraded, valid past 2049 (GeneralizedTime)
// or not; x509 and the verify package accept them.
func TestIssuerMatchesIssue(t *testing.T) {
	root := newRoot(t)
	site := newSite(t, root)
	is, err := license.NewIssuer(site)
	if err != nil {
		t.Fatal(err)
	}
	if !is.Fast() {
		t.Fatal("the Issuer's self-check failed: it falls back to x509.CreateCertificate for every license")
	}
	v, err := verify.New(root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	base := attrs()
	testpki.Bind(t, root, site, &base)
	unbound := attrs()
	unbound.Flags = 0
	noFeatures := base
	noFeatures.Features, noFeatures.Flags = nil, 0
	upgraded := base
	upgraded.Flags, upgraded.LicenseID = verify.FlagUpgraded, 1<<40+3
	testpki.Bind(t, root, site, &noFeatures)
	testpki.Bind(t, root, site, &upgraded)
	for _, c := range []struct {
		name      string
		attrs     verify.Attributes
		notBefore time.Time
		notAfter  time.Time
	}{
		{"temporary", base, epoch, epoch.Add(60 * 24 * time.Hour)},
		{"no features", noFeatures, epoch.Add(time.Hour + 500*time.Millisecond), epoch.Add(365 * 24 * time.Hour)},
		{"upgraded, until the site certificate ends", upgraded, epoch, site.Cert.NotAfter},
		{"past 2049", noFeatures, epoch, time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"without a pack statement", unbound, epoch, epoch.Add(24 * time.Hour)},
	} {
		pub, priv, _ := ed25519.GenerateKey(nil)
		want, err := license.Issue(site, pub, c.attrs, c.notBefore, c.notAfter)
		if err != nil {
			t.Fatalf("%s: Issue: %v", c.name, err)
		}
		got, err := is.Issue(pub, c.attrs, c.notBefore, c.notAfter)
		if err != nil {
			t.Fatalf("%s: Issuer.Issue: %v", c.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the Issuer's certificate differs from x509.CreateCertificate's\n got %x\nwant %x", c.name, got, want)
			continue
		}
		cert, err := x509.ParseCertificate(got)
		if err != nil {
			t.Fatalf("%s: x509.ParseCertificate: %v", c.name, err)
		}
		if err := cert.CheckSignatureFrom(site.Cert); err != nil {
			t.Errorf("%s: signature: %v", c.name, err)
		}
		now := c.notBefore.Add(time.Minute)
		lic, err := v.Verify(license.EncodePEM([][]byte{got, site.Cert.Raw}), verify.Options{Now: now, Product: c.attrs.ProductID, ClientKey: pub, AllowUnbound: c.attrs.PackStatement == nil})
		if err != nil {
			t.Fatalf("%s: verify: %v", c.name, err)
		}
		if (lic.Statement != nil) != (c.attrs.PackStatement != nil) {
			t.Errorf("%s: the license lost or gained its pack statement", c.name)
		}
		if lic.LicenseID != c.attrs.LicenseID {
			t.Errorf("%s: verified license ID %d, want %d", c.name, lic.LicenseID, c.attrs.LicenseID)
		}
		_ = priv
	}
	// The checks of Issue apply: a wrong client ID is refused.
	pub, _, _ := ed25519.GenerateKey(nil)
	bad := base
	bad.ClientID = "client-0000000000000000"
	if _, err := is.Issue(pub, bad, epoch, epoch.Add(time.Hour)); err == nil {
		t.Error("Issuer.Issue accepted a client ID that is not the key's")
	}
}

// BenchmarkIssue compares x509.CreateCertificate (which verifies what it
// signed) with the Issuer, which does not.
func BenchmarkIssue(b *testing.B) {
	t := &testing.T{}
	root := newRoot(t)
	site := newSite(t, root)
	is, err := license.NewIssuer(site)
	if err != nil || !is.Fast() {
		b.Fatal("no fast Issuer", err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	a := attrs()
	b.Run("CreateCertificate", func(b *testing.B) {
		for b.Loop() {
			if _, err := license.Issue(site, pub, a, epoch, epoch.Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Issuer", func(b *testing.B) {
		for b.Loop() {
			if _, err := is.Issue(pub, a, epoch, epoch.Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("BareEd25519Sign", func(b *testing.B) {
		msg := make([]byte, 600)
		for b.Loop() {
			ed25519.Sign(site.Signer.Private(), msg)
		}
	})
}
