package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/pki"
)

// TestDistributionOfflineRoot: 'licet vendor init' makes the distribution
// key beside the issuing CA ('vendor root export' makes one in a directory
// that has none before the root key leaves); with the root key exported, the vendor server
// still publishes a release, the site syncs it, and a device trusting only
// the vendor root certificate installs it (the anchor is the distribution
// key's, certified by the root), and its confirmation reaches the vendor. A
// data directory without its distribution key and without the root key
// serves licensing and says what distribution needs.
func TestDistributionOfflineRoot(t *testing.T) {
	v := newVendor(t, "")
	for _, f := range []string{"distribution.key", "distribution.crt"} {
		if _, err := os.Stat(filepath.Join(v.dir, f)); err != nil {
			t.Fatalf("vendor init made no %s: %v", f, err)
		}
	}
	// A data directory from before the distribution key: the export makes
	// one while the root key is still there.
	v.srv.stop(t)
	for _, f := range []string{"distribution.key", "distribution.crt"} {
		os.Remove(filepath.Join(v.dir, f))
	}
	ok(t, "vendor", "root", "export", "--data", v.dir, "-o", filepath.Join(t.TempDir(), "root-offline.key"))
	if _, err := os.Stat(filepath.Join(v.dir, "distribution.crt")); err != nil {
		t.Fatalf("root export left no distribution key behind: %v", err)
	}
	v.srv = start(t, nil, "vendor", "serve", "--data", v.dir)

	dir := t.TempDir()
	tool := filepath.Join(dir, "tool-1.0")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho tool 1.0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ok(t, v.admin("vendor", "app", "add", "--id", "tool")...)
	ok(t, v.admin("vendor", "release", "add", "--app", "tool", "--version", "1.0", "--artifact", "linux-amd64="+tool)...)
	site := filepath.Join(dir, "site")
	ok(t, "site", "init", "--data", site, "--vendor", v.srv.URL, "--enroll", v.enrollCode(t, "acme"))
	ok(t, "site", "group", "add", "--data", site, "--name", "line1")
	var d struct{ Token string }
	okJSON(t, &d, "site", "device", "add", "--data", site, "--name", "press-7", "--group", "line1")
	srv := start(t, []string{"LICET_SITE_SYNC_INTERVAL=0"}, "site", "serve", "--data", site)
	ok(t, v.admin("vendor", "bundle", "add", "--customer", "acme", "--group", "line1", "--release", "tool-1.0")...)
	if out := ok(t, "site", "update", "sync", "--data", site); !strings.Contains(out, "group line1: updated") {
		t.Fatalf("sync: %s", out)
	}

	// The site serves the distribution key's anchor, certified by the root.
	req, _ := http.NewRequest("GET", srv.URL+"/v1/update/anchor", nil)
	req.Header.Set("Authorization", "Bearer "+d.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var anchor struct {
		Root   []byte
		Anchor []byte
		Chain  [][]byte
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &anchor); err != nil || len(anchor.Chain) != 1 {
		t.Fatalf("anchor: %v %s", err, body)
	}
	rootDER, err := pki.ReadCertFile(filepath.Join(v.dir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.ParseRoot(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.VerifyDistribution(anchor.Chain, root, time.Now()); err != nil {
		t.Fatalf("the anchor's certificate: %v", err)
	}

	agent := filepath.Join(dir, "agent")
	ok(t, "agent", "update", "init", "--data", agent, "--server", srv.URL, "--token", d.Token,
		"--vendor-root", filepath.Join(v.dir, "root.crt"), "--app", "tool", "--platform", "linux-amd64")
	var res struct{ Status string }
	okJSON(t, &res, "agent", "update", "apply", "--data", agent, "--hook", `"$LICET_ARTIFACT" | grep -q "tool 1.0"`)
	if res.Status != "installed" {
		t.Fatalf("apply: %+v", res)
	}
	ok(t, "site", "update", "sync", "--data", site)
	if got := installedOf(t, v); got.Installed != "1.0" {
		t.Fatalf("vendor record after the confirmation: %+v", got)
	}
	// Key rotation needs no root key either; the device follows it.
	ok(t, v.admin("vendor", "release", "rotate-keys", "--role", "root")...)
	ok(t, "site", "update", "sync", "--data", site)
	time.Sleep(1100 * time.Millisecond) // the site caches a group's timestamp for a second
	ok(t, "agent", "update", "check", "--data", agent)

	// Without its distribution key and without the root key, the vendor
	// serves the rest and says what distribution needs.
	v.srv.stop(t)
	for _, f := range []string{"distribution.key", "distribution.crt"} {
		os.Remove(filepath.Join(v.dir, f))
	}
	v.srv = start(t, nil, "vendor", "serve", "--data", v.dir)
	ok(t, v.admin("vendor", "customer", "add", "--id", "late", "--name", "Late")...)
	fails(t, 1, "404", v.admin("vendor", "app", "add", "--id", "tool2")...)
	v.srv.stop(t)
	if log := v.srv.stderr.String(); !strings.Contains(log, "software distribution is off") || !strings.Contains(log, "root.key") {
		t.Fatalf("vendor log without a distribution key: %s", log)
	}
}
