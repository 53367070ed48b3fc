package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/licet/licet/store/postgres"
)

// TestDistributionTwoVendorsPostgres runs two vendor processes on one
// PostgreSQL database: the release is uploaded through one (its chunks go
// to the database), bundles are set through both at once (each publish gets
// its own metadata version), the site syncs and downloads through the
// other, and the device's confirmation shows on both.
func TestDistributionTwoVendorsPostgres(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	dir := t.TempDir()
	vdir := filepath.Join(dir, "vendor")
	var initOut struct {
		AdminToken string `json:"admin_token"`
	}
	okJSON(t, &initOut, "vendor", "init", "--data", vdir, "--name", "Dist Vendor", "--db", dsn)
	a := start(t, nil, "vendor", "serve", "--data", vdir)
	b := start(t, nil, "vendor", "serve", "--data", vdir)
	admin := func(srv *server, args ...string) []string {
		return append(args, "--server", srv.URL, "--token", initOut.AdminToken)
	}
	ok(t, admin(a, "vendor", "customer", "add", "--id", "acme")...)
	ok(t, admin(a, "vendor", "app", "add", "--id", "tool")...)
	art := filepath.Join(dir, "tool")
	big := "#!/bin/sh\necho tool 1.0\n# " + strings.Repeat("x", 1300_000) + "\n" // three chunks
	if err := os.WriteFile(art, []byte(big), 0o755); err != nil {
		t.Fatal(err)
	}
	ok(t, admin(a, "vendor", "release", "add", "--app", "tool", "--version", "1.0", "--artifact", "linux-amd64="+art)...)
	var code struct{ Code string }
	okJSON(t, &code, admin(a, "vendor", "enroll", "create", "--customer", "acme")...)
	site := filepath.Join(dir, "site")
	ok(t, "site", "init", "--data", site, "--vendor", b.URL, "--enroll", code.Code)
	ok(t, "site", "group", "add", "--data", site, "--name", "g1")
	var d struct{ Token string }
	okJSON(t, &d, "site", "device", "add", "--data", site, "--name", "d1", "--group", "g1")
	var wg sync.WaitGroup
	for i := range 6 {
		srv := a
		if i%2 == 1 {
			srv = b
		}
		wg.Go(func() {
			if r := licet(t, nil, admin(srv, "vendor", "bundle", "add", "--customer", "acme", "--group", "g1", "--release", "tool-1.0")...); r.code != 0 {
				t.Errorf("bundle add %d: %s", i, r)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ok(t, "site", "update", "sync", "--data", site)
	srv := start(t, []string{"LICET_SITE_SYNC_INTERVAL=0"}, "site", "serve", "--data", site)
	agent := filepath.Join(dir, "agent")
	ok(t, "agent", "update", "init", "--data", agent, "--server", srv.URL, "--token", d.Token, "--vendor-root", filepath.Join(vdir, "root.crt"), "--app", "tool", "--platform", "linux-amd64")
	ok(t, "agent", "update", "apply", "--data", agent)
	got, err := os.ReadFile(filepath.Join(agent, "apps", "tool", "current", "tool"))
	if err != nil || string(got) != big {
		t.Fatalf("installed artifact differs (%d bytes): %v", len(got), err)
	}
	ok(t, "site", "update", "sync", "--data", site)
	for _, s := range []*server{a, b} {
		var vs []distVersions
		okJSON(t, &vs, admin(s, "vendor", "release", "versions", "--customer", "acme")...)
		if len(vs) != 1 || vs[0].Installed != "1.0" {
			t.Fatalf("versions through %s: %+v", s.URL, vs)
		}
	}
}
