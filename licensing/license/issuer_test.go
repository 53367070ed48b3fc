package license_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"strings"
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

// The Issuer writes its DER itself: the same bytes as Issue at every length
// boundary of serials and extensions, for product IDs that encoding/asn1
// writes as UTF8String rather than PrintableString, and for validity years
// on both sides of UTCTime's range.
func TestIssuerDEREdges(t *testing.T) {
	root := newRoot(t)
	site := newSite(t, root)
	is, err := license.NewIssuer(site)
	if err != nil || !is.Fast() {
		t.Fatal("no fast Issuer", err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	check := func(name string, a verify.Attributes, nb, na time.Time) {
		t.Helper()
		want, err := license.Issue(site, pub, a, nb, na)
		if err != nil {
			t.Fatalf("%s: Issue: %v", name, err)
		}
		got, err := is.Issue(pub, a, nb, na)
		if err != nil {
			t.Fatalf("%s: Issuer.Issue: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			at := 0 // the first byte that differs; show what is around it, not megabytes
			for at < min(len(got), len(want)) && got[at] == want[at] {
				at++
			}
			from := max(at-16, 0)
			t.Fatalf("%s: the Issuer's certificate (%d bytes) differs from x509.CreateCertificate's (%d bytes) at byte %d\n got ...%x\nwant ...%x",
				name, len(got), len(want), at, got[from:min(at+48, len(got))], want[from:min(at+48, len(want))])
		}
	}
	for _, id := range []int64{1, 127, 128, 255, 256, 32767, 32768, 1<<31 - 1, 1 << 31, 1<<56 + 1, 1<<63 - 1} {
		a := attrs()
		a.LicenseID = id
		check(fmt.Sprint("license ID ", id), a, epoch, epoch.Add(time.Hour))
	}
	for _, p := range []string{"a", "acme*cad", "r&d", "caf\u00e9", "with space", "tab\tsep", strings.Repeat("p", 200)} {
		a := attrs()
		a.ProductID = p
		check(fmt.Sprintf("product %q", p), a, epoch, epoch.Add(time.Hour))
	}
	for _, n := range []int{1, 100, 127, 128, 200, 255, 256, 1000, 65535, 65536, 100000} {
		a := attrs()
		a.PackStatement = bytes.Repeat([]byte("s"), n)
		check(fmt.Sprint("pack statement of ", n, " bytes"), a, epoch, epoch.Add(time.Hour))
	}
	// A pack statement that makes the certificate longer than a three-byte
	// DER length holds (16 MiB) needs a four-byte length.
	huge := attrs()
	huge.PackStatement = bytes.Repeat([]byte("s"), 1<<24)
	check("pack statement of 16 MiB", huge, epoch, epoch.Add(time.Hour))
	features := attrs()
	features.Features = []string{strings.Repeat("f", 300)}
	check("long attributes", features, epoch, epoch.Add(time.Hour))
	early := testpki.Site(t, root, "Old Site", "cust-2", time.Date(1949, 12, 31, 23, 0, 0, 0, time.UTC))
	old, err := license.NewIssuer(early)
	if err != nil || !old.Fast() {
		t.Fatal("no fast Issuer for a site from 1949", err)
	}
	want, err := license.Issue(early, pub, attrs(), time.Date(1949, 12, 31, 23, 30, 0, 0, time.UTC), time.Date(1950, 1, 1, 1, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	got, err := old.Issue(pub, attrs(), time.Date(1949, 12, 31, 23, 30, 0, 0, time.UTC), time.Date(1950, 1, 1, 1, 0, 0, 0, time.UTC))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("a license from 1949 to 1950 differs from Issue's (%v)", err)
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
