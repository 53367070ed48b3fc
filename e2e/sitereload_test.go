package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/licet/licet/store/postgres"
)

// TestSiteServeTakesRenewedCertificate: two 'licet site serve' processes
// on one data directory and database run with a certificate that ends in a
// few minutes (--site-validity 2h, LICET_NOW 1h55m later); their licenses end
// with it. 'licet site renew' in another process renews it online. Without a
// restart, the process told by SIGHUP (--cert-check 0: no periodic check)
// and the one that checks every second (--cert-check 1s) then grant
// licenses that verify past the old certificate's end, and log the swap
// with the new end (and no key). A certificate file put back to the older
// one is refused and the renewed certificate stays in use.
func TestSiteServeTakesRenewedCertificate(t *testing.T) {
	testServeTakesRenewedCertificate(t, "")
}

// TestSiteServeTakesRenewedCertificatePostgres is the same with the two
// processes on one PostgreSQL database, which lease seats from each other.
func TestSiteServeTakesRenewedCertificatePostgres(t *testing.T) {
	testServeTakesRenewedCertificate(t, postgres.TestDSN(t))
}

func testServeTakesRenewedCertificate(t *testing.T, db string) {
	v := newVendorServing(t, "", "--site-validity", "2h")
	g := newGrantEnvWith(t, v, db, 24)
	var info siteInfo
	okJSON(t, &info, "site", "info", "--data", g.siteDir)
	oldEnd := info.CertificateExpires
	soon := []string{"LICET_NOW=" + oldEnd.Add(-5*time.Minute).UTC().Format(time.RFC3339)}
	pastOld := []string{"LICET_NOW=" + oldEnd.Add(time.Minute).UTC().Format(time.RFC3339)}
	oldCert := mustRead(t, filepath.Join(g.siteDir, "site-certificate.txt"))

	serve := []string{"site", "serve", "--data", g.siteDir}
	if db != "" {
		serve = append(serve, "--db", db)
	}
	serve = serve[:len(serve):len(serve)] // each append below copies
	onHUP := start(t, soon, append(serve, "--cert-check", "0")...)
	periodic := start(t, soon, append(serve, "--cert-check", "1s")...)
	agents := 0
	acquire := func(server string) string {
		t.Helper()
		agents++
		licPath, _, _ := g.clientLicense(t, soon, fmt.Sprintf("%032x", agents), server)
		return licPath
	}
	// Before the renewal both grant licenses that end with the old certificate.
	for _, s := range []*server{onHUP, periodic} {
		lic := acquire(s.URL)
		if r := licet(t, soon, "license", "verify", "--root", g.rootPE, lic); r.code != 0 {
			t.Fatalf("a license before the renewal: %s", r)
		}
		failsEnv(t, pastOld, 3, "expired", "license", "verify", "--root", g.rootPE, lic)
	}

	// Renewed online by another process, against a vendor whose clock reads
	// the same time: the new certificate ends two hours after it.
	v.srv.stop(t)
	v.srv = start(t, soon, "vendor", "serve", "--data", v.dir, "--site-validity", "2h")
	if r := licet(t, soon, "site", "renew", "--data", g.siteDir, "--vendor", v.srv.URL); r.code != 0 || !strings.Contains(r.stdout, "SIGHUP") {
		t.Fatalf("online renewal: %s", r)
	}
	okJSON(t, &info, "site", "info", "--data", g.siteDir)
	if !info.CertificateExpires.After(oldEnd.Add(time.Hour)) {
		t.Fatalf("renewed certificate ends %s, want two hours after %s", info.CertificateExpires, oldEnd)
	}

	// grantsPastOld polls a serving process with new clients until one gets
	// a license that verifies past the old certificate's end.
	grantsPastOld := func(s *server, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			lic := acquire(s.URL)
			if r := licet(t, pastOld, "license", "verify", "--root", g.rootPE, lic); r.code == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: licenses still end with the old certificate 20 s after the renewal", what)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	if err := onHUP.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	grantsPastOld(onHUP, "site serve after SIGHUP")
	grantsPastOld(periodic, "site serve with --cert-check 1s")

	// The old certificate file put back: refused by the running process,
	// which keeps granting under the renewed certificate.
	if err := os.WriteFile(filepath.Join(g.siteDir, "site-certificate.txt"), oldCert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := onHUP.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if r := licet(t, pastOld, "license", "verify", "--root", g.rootPE, acquire(onHUP.URL)); r.code != 0 {
		t.Fatalf("after the older certificate file was put back, the running site signs with it: %s", r)
	}

	onHUP.stop(t)
	periodic.stop(t)
	newEnd := info.CertificateExpires.UTC().Format(time.RFC3339)
	key := strings.TrimSpace(string(mustRead(t, filepath.Join(g.siteDir, "site.key"))))
	for _, c := range []struct {
		s       *server
		trigger string
	}{{onHUP, "trigger=SIGHUP"}, {periodic, `trigger="periodic check"`}} {
		log := c.s.stderr.String()
		if !strings.Contains(log, "site certificate renewed") || !strings.Contains(log, "not_after="+newEnd) || !strings.Contains(log, c.trigger) {
			t.Errorf("the log of %s does not record the renewal (new end %s, %s):\n%s", c.s.URL, newEnd, c.trigger, log)
		}
		for _, line := range strings.Split(key, "\n") {
			if len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(log, line) {
				t.Errorf("the log of %s holds the site key", c.s.URL)
			}
		}
	}
	if log := onHUP.stderr.String(); !strings.Contains(log, "older file") {
		t.Errorf("the log of the SIGHUP process does not say why the older certificate file was refused:\n%s", log)
	}
}
