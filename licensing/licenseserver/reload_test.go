package licenseserver_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store"
	"github.com/licet/licet/verify"
)

// renewElsewhere renews srv's site certificate as 'licet site renew' does
// in another process: another Identity of the same data directory sends
// a renewal file to the vendor, whose clock reads now+shift (so the new
// certificate ends shift later), and installs the answer in the data
// directory. srv's own Identity is left alone. It returns the new chain.
func renewElsewhere(t *testing.T, srv *licenseserver.Server, shift time.Duration) [][]byte {
	t.Helper()
	ctx := context.Background()
	vs, err := clearinghouse.Open(ctx, filepath.Join(filepath.Dir(srv.ID.Dir), "vendor"), "", store.OpenVendor)
	must(t, err)
	defer vs.Close()
	vs.Now = func() time.Time { return time.Now().Add(shift) }
	id, err := licenseserver.LoadIdentity(srv.ID.Dir)
	must(t, err)
	other := &licenseserver.Server{ID: id, Store: srv.Store, Now: time.Now}
	file, _, err := other.RenewalFile(ctx)
	must(t, err)
	ren, err := vs.RenewSite(ctx, file)
	must(t, err)
	_, err = id.InstallCertificate(licenseserver.EncodeCertificate(ren.Chain), "", time.Now())
	must(t, err)
	return ren.Chain
}

// grantedLicense is one grant's license as its client reads it.
type grantedLicense struct {
	client *keys.Signer
	pem    []byte
	lic    *verify.License
	issued time.Time
	// started is when the grant was asked for.
	started time.Time
}

// openGrant decrypts and verifies a granted license at its issue, with the
// chain that came with it.
func openGrant(t *testing.T, srv *licenseserver.Server, g *licenseserver.Grant, dec *keys.Decrypter, client *keys.Signer, issued time.Time) grantedLicense {
	t.Helper()
	pemData, err := licenseserver.OpenLicense(g.File, dec)
	must(t, err)
	v, err := srv.Verifier()
	must(t, err)
	lic, err := v.Verify(pemData, verify.Options{Now: issued, Product: "app", ClientKey: client.Public()})
	if err != nil {
		t.Fatalf("license %d granted at %s does not verify with the chain it came with, at its issue: %v", g.Assignment.LicenseID, issued.Format(time.RFC3339Nano), err)
	}
	return grantedLicense{client: client, pem: pemData, lic: lic, issued: issued}
}

// TestCertificateSwapUnderGrants renews the site certificate in another
// process and makes the serving Server reload it while clients are granted
// licenses concurrently (run with -race): every license verifies with the
// chain it came with at its issue; licenses granted after the reload are
// signed by the new certificate and verify past the old one's end; a
// license signed by the old certificate (the seat leased and signed before
// the swap included) is signed again at the client's next request, and then
// verifies past the old end too.
func TestCertificateSwapUnderGrants(t *testing.T) {
	// Workers grant without a pause until the reload and after it, so that
	// grants run at the instant of the swap; maxBefore bounds the grants
	// made while the renewal runs, postReload bounds those made after the reload.
	const workers, maxBefore, postReload = 6, 240, 4
	srv, sid, image := newSite(t, maxBefore+workers*(postReload+1)+10)
	dec, _ := keys.GenerateDecrypter()
	oldEnd := srv.ID.Site().Cert.NotAfter

	var (
		mu       sync.Mutex
		granted  []grantedLicense
		wg       sync.WaitGroup
		n        atomic.Int64
		reloaded atomic.Pointer[time.Time]
	)
	renew := make(chan struct{})
	var renewOnce sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for post := 0; post < postReload; {
				if reloaded.Load() != nil {
					post++
				} else if n.Add(1) > maxBefore {
					time.Sleep(time.Millisecond) // enough before the swap: wait for it
					continue
				}
				client, _ := keys.GenerateSigner()
				start := time.Now()
				g := grant(t, srv, sid, image, client, dec)
				gl := openGrant(t, srv, g, dec, client, time.Now())
				gl.started = start
				mu.Lock()
				granted = append(granted, gl)
				if len(granted) == workers {
					renewOnce.Do(func() { close(renew) }) // some grants done under the old certificate
				}
				mu.Unlock()
			}
		}()
	}
	<-renew
	newChain := renewElsewhere(t, srv, time.Hour)
	site, err := srv.ID.ReloadCertificate(time.Now())
	at := time.Now()
	reloaded.Store(&at)
	must(t, err)
	if site == nil || !site.Cert.NotAfter.After(oldEnd) {
		t.Fatalf("reload gave %v, want the renewed certificate ending after %s", site, oldEnd)
	}
	wg.Wait()

	newCert, _ := x509.ParseCertificate(newChain[0])
	pastOld := oldEnd.Add(time.Second)
	v, _ := srv.Verifier()
	var before, after int
	for _, gl := range granted {
		if !gl.lic.NotAfter.After(oldEnd) {
			before++
		} else {
			after++
			// Signed by the new certificate: it runs past the old end, with its chain.
			if _, err := v.Verify(gl.pem, verify.Options{Now: pastOld, Product: "app"}); err != nil {
				t.Errorf("license %d (granted %s) ends %s but does not verify past the old certificate's end: %v", gl.lic.LicenseID, gl.issued, gl.lic.NotAfter, err)
			}
		}
		if gl.started.After(*reloaded.Load()) && !gl.lic.NotAfter.Equal(newCert.NotAfter) {
			t.Errorf("license %d granted after the reload ends %s, not with the new certificate (%s)", gl.lic.LicenseID, gl.lic.NotAfter, newCert.NotAfter)
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("%d licenses under the old certificate and %d under the new one; the test needs both", before, after)
	}
	// Each client asks again: a license cut short by the old certificate
	// is signed again (same license ID), and every one verifies past the
	// old end with the chain it comes with.
	for _, gl := range granted {
		g := grant(t, srv, sid, image, gl.client, dec)
		again := openGrant(t, srv, g, dec, gl.client, time.Now())
		if again.lic.LicenseID != gl.lic.LicenseID || !g.Reissued {
			t.Fatalf("client of license %d got license %d (reissued %v), want the same license", gl.lic.LicenseID, again.lic.LicenseID, g.Reissued)
		}
		if _, err := v.Verify(again.pem, verify.Options{Now: pastOld, Product: "app"}); err != nil {
			t.Errorf("license %d asked for again after the renewal does not verify past the old certificate's end: %v", gl.lic.LicenseID, err)
		}
	}
	t.Logf("%d licenses signed under the old certificate, %d under the new one", before, after)
}

// TestReloadCertificateRefuses checks that a running site never swaps in a
// certificate file that is older than the one in use, another site's, or
// expired, and keeps issuing with its current certificate.
func TestReloadCertificateRefuses(t *testing.T) {
	srv, _, _ := newSite(t, 2)
	certFile := filepath.Join(srv.ID.Dir, "site-certificate.txt")
	oldFile, err := os.ReadFile(certFile)
	must(t, err)
	cur := srv.ID.Certificate()

	if site, err := srv.ID.ReloadCertificate(time.Now()); site != nil || err != nil {
		t.Fatalf("unchanged file: got %v, %v; want nothing", site, err)
	}
	renewElsewhere(t, srv, time.Hour)
	// Read at a time the renewed certificate has expired: refused, twice
	// (a refusal is not remembered), and the current one stays.
	for range 2 {
		newEnd := time.Now().AddDate(2, 0, 0)
		if _, err := srv.ID.ReloadCertificate(newEnd); err == nil {
			t.Fatal("an expired certificate was accepted")
		}
	}
	if srv.ID.Certificate() != cur {
		t.Fatal("a refused file changed the certificate in use")
	}
	site, err := srv.ID.ReloadCertificate(time.Now())
	if err != nil || site == nil {
		t.Fatalf("renewed file: got %v, %v", site, err)
	}
	renewed := srv.ID.Certificate()

	// The old certificate file copied back: refused, the renewed one stays.
	must(t, os.WriteFile(certFile, oldFile, 0o644))
	if _, err := srv.ID.ReloadCertificate(time.Now()); errs.KindOf(err) != errs.Conflict {
		t.Fatalf("older certificate file: got %v, want a conflict", err)
	}
	if srv.ID.Certificate() != renewed {
		t.Fatal("an older certificate file replaced the renewed certificate")
	}

	// Another site's certificate file: refused.
	other, _, _ := newSite(t, 1)
	otherFile, err := os.ReadFile(filepath.Join(other.ID.Dir, "site-certificate.txt"))
	must(t, err)
	must(t, os.WriteFile(certFile, otherFile, 0o644))
	if _, err := srv.ID.ReloadCertificate(time.Now()); err == nil {
		t.Fatal("another site's certificate was accepted")
	}
	// A garbled file: refused, with the file named.
	must(t, os.WriteFile(certFile, []byte("not a certificate"), 0o644))
	if _, err := srv.ID.ReloadCertificate(time.Now()); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("a garbled certificate file: got %v, want a refusal naming %s", err, certFile)
	}
	if srv.ID.Certificate() != renewed {
		t.Fatal("a refused file changed the certificate in use")
	}
}

// BenchmarkReloadCertificateUnchanged measures what 'licet site serve'
// spends on each periodic check (every minute) when the certificate file
// has not changed: a read and a byte comparison.
func BenchmarkReloadCertificateUnchanged(b *testing.B) {
	srv, _, _ := newSite(b, 1)
	now := time.Now()
	for b.Loop() {
		if site, err := srv.ID.ReloadCertificate(now); site != nil || err != nil {
			b.Fatal(site, err)
		}
	}
}

// TestRenamedSiteLicenseSignedAgain: the vendor renews the site under
// another name (the license's issuer name changes). A process started after
// the renewal (it knows nothing of the old certificate) signs a client's
// license again at its next request rather than hand back the stored one,
// which would not verify with the new chain.
func TestRenamedSiteLicenseSignedAgain(t *testing.T) {
	srv, sid, image := newSite(t, 2)
	client, _ := keys.GenerateSigner()
	dec, _ := keys.GenerateDecrypter()
	first := openGrant(t, srv, grant(t, srv, sid, image, client, dec), dec, client, time.Now())

	ctx := context.Background()
	vs, err := clearinghouse.Open(ctx, filepath.Join(filepath.Dir(srv.ID.Dir), "vendor"), "", store.OpenVendor)
	must(t, err)
	defer vs.Close()
	ca, rest := vs.Root, [][]byte{vs.Root.Cert.Raw}
	if vs.Issuing != nil {
		ca, rest = vs.Issuing, [][]byte{vs.Issuing.Cert.Raw, vs.Root.Cert.Raw}
	}
	req := &pki.SiteRequest{SiteID: srv.ID.SiteID, Name: "renamed site", PublicKey: srv.ID.Signer.Public(), HPKEKey: srv.ID.Decrypter.PublicBytes()}
	der, err := ca.CertifySiteFor(req, "acme", time.Now().Add(time.Hour), pki.SiteValidity)
	must(t, err)
	_, err = srv.ID.InstallCertificate(licenseserver.EncodeCertificate(append([][]byte{der}, rest...)), "", time.Now())
	must(t, err)

	id, err := licenseserver.LoadIdentity(srv.ID.Dir)
	must(t, err)
	fresh := &licenseserver.Server{ID: id, Store: srv.Store, Now: time.Now}
	g := grant(t, fresh, sid, image, client, dec)
	again := openGrant(t, fresh, g, dec, client, time.Now())
	if !g.Reissued || again.lic.LicenseID != first.lic.LicenseID {
		t.Fatalf("got license %d (reissued %v), want license %d again", again.lic.LicenseID, g.Reissued, first.lic.LicenseID)
	}
}
