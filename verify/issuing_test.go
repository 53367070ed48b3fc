package verify_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

// TestIssuingChain: a license of a site certified by the vendor's issuing
// CA verifies with the license file license, site, issuing; without the
// issuing certificate it does not.
func TestIssuingChain(t *testing.T) {
	f := newFixture(t)
	iss := testpki.Issuing(t, f.root, epoch.Add(-24*time.Hour))
	site := testpki.Site(t, iss, "Plant 9", "cust-1", epoch.Add(-24*time.Hour))
	attrs := testAttrs()
	testpki.Bind(t, f.root, site, &attrs)
	lic, err := license.Issue(site, f.clientPub, attrs, epoch.Add(-time.Hour), f.notAfter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.verifier(t).Verify(license.EncodePEM([][]byte{lic, site.Cert.Raw}), verify.Options{Now: epoch}); !errors.Is(err, verify.ErrUntrustedSite) {
		t.Errorf("without the issuing certificate: %v, want ErrUntrustedSite", err)
	}
	v := f.verifier(t)
	l, err := v.Verify(license.EncodePEM([][]byte{lic, site.Cert.Raw, iss.Cert.Raw}), verify.Options{Now: epoch})
	if err != nil {
		t.Fatalf("license under root → issuing → site: %v", err)
	}
	if l.Issuing == nil || len(l.Chain()) != 3 {
		t.Errorf("chain of %d certificates, issuing %v", len(l.Chain()), l.Issuing != nil)
	}
	// Cached now; the issuing CA's validity still counts.
	if _, err := v.Verify(license.EncodePEM(l.Chain()), verify.Options{Now: iss.Cert.NotAfter.Add(time.Second)}); err == nil {
		t.Error("accepted after the issuing certificate expired")
	}
}

// TestSiteIssuedBySite: a site certificate made with another site's key,
// sent with that site's certificate in the issuing CA's place (or after it),
// is refused: only the root and its issuing CA certify sites.
func TestSiteIssuedBySite(t *testing.T) {
	f := newFixture(t)
	iss := testpki.Issuing(t, f.root, epoch.Add(-24*time.Hour))
	good := testpki.Site(t, iss, "Plant 9", "cust-1", epoch.Add(-24*time.Hour))
	for name, parent := range map[string]*struct{ site, rest []byte }{
		"site of the root":       {f.site.Cert.Raw, nil},
		"site of the issuing CA": {good.Cert.Raw, iss.Cert.Raw},
	} {
		parentAuth := f.site
		if parent.rest != nil {
			parentAuth = good
		}
		evil := testpki.Site(t, parentAuth, "Evil", "cust-1", epoch.Add(-24*time.Hour))
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		lic, err := license.Issue(evil, pub, f.attrs, epoch.Add(-time.Hour), f.notAfter)
		if err != nil {
			t.Fatal(err)
		}
		for _, chain := range [][][]byte{{lic, evil.Cert.Raw, parent.site}, {lic, evil.Cert.Raw, parent.site, parent.rest}} {
			if _, err := f.verifier(t).VerifyChain(chain, verify.Options{Now: epoch}); !errors.Is(err, verify.ErrUntrustedSite) {
				t.Errorf("%s: license of a site certified by a site: %v, want ErrUntrustedSite", name, err)
			}
		}
	}
}
