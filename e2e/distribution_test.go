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
)

// distVersions is one row of 'licet vendor release versions --json'.
type distVersions struct {
	App       string         `json:"app"`
	Current   string         `json:"current"`
	Installed string         `json:"installed"`
	Devices   map[string]int `json:"devices"`
}

func installedOf(t *testing.T, v *vendorEnv) distVersions {
	t.Helper()
	var vs []distVersions
	okJSON(t, &vs, v.admin("vendor", "release", "versions", "--customer", "acme")...)
	if len(vs) != 1 {
		t.Fatalf("versions: %+v", vs)
	}
	return vs[0]
}

// TestDistribution: the vendor publishes a release for a group, the site
// syncs (pull, no inbound connection), the device installs it and its
// confirmation travels device -> site -> vendor, changing the vendor's
// installed version; a failed install leaves it; a device of another group
// is refused by the site; an air-gapped site is updated by file.
func TestDistribution(t *testing.T) {
	v := newVendor(t, "")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok(t, v.admin("vendor", "app", "add", "--id", "tool", "--name", "Tool")...)
	ok(t, v.admin("vendor", "release", "add", "--app", "tool", "--version", "1.0", "--notes", "first",
		"--artifact", "linux-amd64="+write("tool-1.0", "#!/bin/sh\necho tool 1.0\n"))...)
	// A repeated upload of the same bytes is skipped; a second version.
	ok(t, v.admin("vendor", "release", "add", "--app", "tool", "--version", "2.0", "--notes", "second",
		"--artifact", "linux-amd64="+write("tool-2.0", "#!/bin/sh\necho tool 2.0\n"))...)

	// The customer's site, enrolled online, with two device groups.
	site := filepath.Join(dir, "site")
	ok(t, "site", "init", "--data", site, "--vendor", v.srv.URL, "--enroll", v.enrollCode(t, "acme"))
	ok(t, "site", "group", "add", "--data", site, "--name", "line1")
	ok(t, "site", "group", "add", "--data", site, "--name", "line2")
	var d1, d2 struct{ Token string }
	okJSON(t, &d1, "site", "device", "add", "--data", site, "--name", "press-7", "--group", "line1")
	okJSON(t, &d2, "site", "device", "add", "--data", site, "--name", "robot-2", "--group", "line2")
	srv := start(t, []string{"LICET_SITE_SYNC_INTERVAL=0"}, "site", "serve", "--data", site)

	ok(t, v.admin("vendor", "bundle", "add", "--customer", "acme", "--group", "line1", "--release", "tool-1.0")...)
	if out := ok(t, "site", "update", "sync", "--data", site); !strings.Contains(out, "group line1: updated") {
		t.Fatalf("sync: %s", out)
	}

	// The device installs 1.0 and confirms.
	agent := filepath.Join(dir, "agent")
	root := filepath.Join(v.dir, "root.crt")
	ok(t, "agent", "update", "init", "--data", agent, "--server", srv.URL, "--token", d1.Token, "--vendor-root", root, "--app", "tool", "--platform", "linux-amd64")
	var res struct {
		Status string
		Plan   struct{ Installed string }
	}
	okJSON(t, &res, "agent", "update", "apply", "--data", agent, "--hook", `"$LICET_ARTIFACT" | grep -q "tool 1.0"`)
	if res.Status != "installed" || res.Plan.Installed != "1.0" {
		t.Fatalf("apply: %+v", res)
	}
	if got := installedOf(t, v); got.Installed != "" {
		t.Fatalf("vendor records %q installed before the site forwarded the confirmation", got.Installed)
	}
	if out := ok(t, "site", "update", "sync", "--data", site); !strings.Contains(out, "3 device reports sent") {
		t.Fatalf("sync after install: %s", out)
	}
	if got := installedOf(t, v); got.Installed != "1.0" || got.Current != "1.0" {
		t.Fatalf("vendor record after confirmation: %+v", got)
	}

	// 2.0 fails its install hook: reported, rolled back, the vendor's record stays.
	ok(t, v.admin("vendor", "bundle", "add", "--customer", "acme", "--group", "line1", "--release", "tool-2.0")...)
	ok(t, "site", "update", "sync", "--data", site)
	// The running site serves what another process synced within a second
	// (it caches each group's timestamp that long).
	for i := 0; ; i++ {
		out := ok(t, "agent", "update", "check", "--data", agent)
		if strings.Contains(out, "1.0 -> 2.0") {
			break
		}
		if i == 30 {
			t.Fatalf("check: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := licet(t, nil, "agent", "update", "apply", "--data", agent, "--hook", "echo cannot migrate >&2; exit 1")
	if r.code != 3 || !strings.Contains(r.stdout, "cannot migrate") {
		t.Fatalf("failing hook: %s", r)
	}
	ok(t, "site", "update", "sync", "--data", site)
	var st []struct {
		Current, Installed string
		Devices            map[string]int
	}
	okJSON(t, &st, v.admin("vendor", "release", "status", "--release", "tool-2.0")...)
	if len(st) != 1 || st[0].Installed != "1.0" || st[0].Current != "2.0" || st[0].Devices["failed"] != 1 {
		t.Fatalf("release status after a failed install: %+v", st)
	}
	// Then it installs, and the record moves to 2.0.
	ok(t, "agent", "update", "apply", "--data", agent)
	ok(t, "site", "update", "sync", "--data", site)
	if got := installedOf(t, v); got.Installed != "2.0" {
		t.Fatalf("vendor record after the second confirmation: %+v", got)
	}
	if b, err := os.ReadFile(filepath.Join(agent, "apps", "tool", "current", "tool-2.0")); err != nil || !strings.Contains(string(b), "tool 2.0") {
		t.Fatalf("current version: %q %v", b, err)
	}

	// A device of line2 asking for line1's bundle: refused by the site.
	req, _ := http.NewRequest("GET", srv.URL+"/v1/update/groups/line1/timestamp", nil)
	req.Header.Set("Authorization", "Bearer "+d2.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "line2") {
		t.Fatalf("line2 device reading line1: %d %s", resp.StatusCode, body)
	}
	var gs []struct {
		Group    string
		Statuses map[string]int
	}
	okJSON(t, &gs, "site", "update", "status", "--data", site)
	if len(gs) != 2 || gs[0].Group != "line1" || gs[0].Statuses["installed"] != 1 {
		t.Fatalf("site status: %+v", gs)
	}

	// An air-gapped site of the same customer, certified and updated by files.
	gap := filepath.Join(dir, "gap")
	ok(t, "site", "init", "--data", gap)
	cert := filepath.Join(dir, "gap-cert.txt")
	ok(t, v.admin("vendor", "site", "certify", "--customer", "acme", "-o", cert, filepath.Join(gap, "site-request.txt"))...)
	ok(t, "site", "cert", "install", "--data", gap, cert)
	ok(t, "site", "group", "add", "--data", gap, "--name", "line1")
	export := filepath.Join(dir, "acme-export.tar")
	ok(t, v.admin("vendor", "release", "export", "--customer", "acme", "-o", export)...)
	var imp struct {
		Groups []struct{ Group string }
		Blobs  int `json:"blobs_fetched"`
	}
	okJSON(t, &imp, "site", "update", "import", "--data", gap, export)
	if len(imp.Groups) != 1 || imp.Blobs != 1 {
		t.Fatalf("import: %+v", imp)
	}
	// A damaged file is refused.
	raw, _ := os.ReadFile(export)
	bad := filepath.Join(dir, "bad.tar")
	os.WriteFile(bad, []byte(strings.Replace(string(raw), "tool 2.0", "evil 2.0", 1)), 0o644)
	gap2 := filepath.Join(dir, "gap2")
	ok(t, "site", "init", "--data", gap2)
	cert2 := filepath.Join(dir, "gap2-cert.txt")
	ok(t, v.admin("vendor", "site", "certify", "--customer", "acme", "-o", cert2, filepath.Join(gap2, "site-request.txt"))...)
	ok(t, "site", "cert", "install", "--data", gap2, cert2)
	fails(t, 3, "tampered", "site", "update", "import", "--data", gap2, bad)
	// Its device installs from it, and the confirmation travels back by file.
	gapSrv := start(t, []string{"LICET_SITE_SYNC_INTERVAL=0"}, "site", "serve", "--data", gap)
	var d3 struct{ Token string }
	okJSON(t, &d3, "site", "device", "add", "--data", gap, "--name", "press-9", "--group", "line1")
	agent3 := filepath.Join(dir, "agent3")
	ok(t, "agent", "update", "init", "--data", agent3, "--server", gapSrv.URL, "--token", d3.Token, "--vendor-root", root, "--app", "tool", "--platform", "linux-amd64")
	ok(t, "agent", "update", "apply", "--data", agent3)
	reports := filepath.Join(dir, "reports.txt")
	if out := ok(t, "site", "update", "export-reports", "--data", gap, "-o", reports); !strings.Contains(out, "3 device statuses") {
		t.Fatalf("export-reports: %s", out)
	}
	if out := ok(t, v.admin("vendor", "release", "import-reports", reports)...); !strings.Contains(out, "Recorded 3 device statuses of acme") {
		t.Fatalf("import-reports: %s", out)
	}
	forged := strings.Replace(string(mustRead(t, reports)), "A", "B", 1)
	os.WriteFile(reports, []byte(forged), 0o644)
	fails(t, 3, "", v.admin("vendor", "release", "import-reports", reports)...)
	var st2 []struct {
		Devices map[string]int
	}
	okJSON(t, &st2, v.admin("vendor", "release", "status", "--release", "tool-2.0")...)
	if st2[0].Devices["installed"] != 2 {
		t.Fatalf("release status after the file came back: %+v", st2)
	}
	var out json.RawMessage
	okJSON(t, &out, "site", "update", "status", "--data", gap)
}
