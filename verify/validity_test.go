package verify_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

// TestSiteCertificateValidity checks the site certificate's own validity
// at times when the license itself and the root are valid: a license that
// outlives its site certificate (or starts before it) is refused outside the
// site certificate's validity.
func TestSiteCertificateValidity(t *testing.T) {
	root := testpki.Root(t, "Acme", epoch.Add(-30*24*time.Hour)) // valid long before the site
	site := newSite(t, root, "Acme Site Berlin")                 // valid from epoch-25h for 5 years
	f := newFixture(t)
	lic := issueRaw(t, site, f.clientPub, 42, attrsJSON(f.clientPub, 42, ""), func(c *x509.Certificate) {
		c.NotBefore = site.Cert.NotBefore.Add(-24 * time.Hour)
		c.NotAfter = site.Cert.NotAfter.Add(30 * 24 * time.Hour)
	})
	v, err := verify.New(root.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	file := license.EncodePEM([][]byte{lic, site.Cert.Raw})
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"site certificate valid", epoch, nil},
		{"before the site certificate", site.Cert.NotBefore.Add(-time.Hour), verify.ErrNotYetValid},
		{"after the site certificate", site.Cert.NotAfter.Add(time.Hour), verify.ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.now.Before(root.Cert.NotBefore) || !tc.now.Before(root.Cert.NotAfter) {
				t.Fatalf("the root is not valid at %s: the case would not isolate the site certificate", tc.now)
			}
			_, err := v.Verify(file, verify.Options{Now: tc.now, AllowUnbound: true})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tc.want)
			// AllowExpired concerns the license's own validity only.
			_, err = v.Verify(file, verify.Options{Now: tc.now, AllowExpired: true, AllowUnbound: true})
			wantErr(t, err, tc.want)
		})
	}
}

// TestAllowExpiredNotYetValid: AllowExpired accepts a license whose validity
// has ended, never one whose validity has not begun.
func TestAllowExpiredNotYetValid(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	lic := issueRaw(t, f.site, f.clientPub, 43, attrsJSON(f.clientPub, 43, ""), func(c *x509.Certificate) {
		c.NotBefore = epoch.Add(time.Hour)
		c.NotAfter = epoch.Add(48 * time.Hour)
	})
	file := license.EncodePEM([][]byte{lic, f.site.Cert.Raw})
	_, err := v.Verify(file, verify.Options{Now: epoch, AllowExpired: true, AllowUnbound: true})
	wantErr(t, err, verify.ErrNotYetValid)
	// The same license after its end passes with AllowExpired, as documented.
	if _, err := v.Verify(file, verify.Options{Now: epoch.Add(72 * time.Hour), AllowExpired: true, AllowUnbound: true}); err != nil {
		t.Fatalf("expired license with AllowExpired: %v", err)
	}
}
