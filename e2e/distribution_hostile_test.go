package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileMirror stands between real agent processes and a real site
// process: it forwards everything but the paths the test overrides.
type hostileMirror struct {
	mu     sync.Mutex
	routes map[string][]byte
	srv    *httptest.Server
}

func newHostileMirror(t *testing.T, site string) *hostileMirror {
	h := &hostileMirror{routes: map[string][]byte{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		b, ok := h.routes[r.URL.Path]
		h.mu.Unlock()
		if ok {
			w.Write(b)
			return
		}
		req, _ := http.NewRequest(r.Method, site+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hostileMirror) serve(path string, body []byte) {
	h.mu.Lock()
	h.routes[path] = body
	h.mu.Unlock()
}

func (h *hostileMirror) reset() {
	h.mu.Lock()
	h.routes = map[string][]byte{}
	h.mu.Unlock()
}

// siteGet reads a device route of the site with a device token.
func siteGet(t *testing.T, site, token, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", site+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

// groupMeta fetches a group's current timestamp, snapshot and targets with
// the versions that name them.
func groupMeta(t *testing.T, site, token, group string) map[string][]byte {
	t.Helper()
	base := "/v1/update/groups/" + group + "/"
	out := map[string][]byte{"timestamp": siteGet(t, site, token, base+"timestamp")}
	var m struct {
		Signed struct {
			Meta map[string]struct{ Version int64 } `json:"meta"`
		} `json:"signed"`
	}
	json.Unmarshal(out["timestamp"], &m)
	sv := m.Signed.Meta["snapshot.json"].Version
	out[fmt.Sprintf("snapshot/%d", sv)] = siteGet(t, site, token, fmt.Sprintf("%ssnapshot/%d", base, sv))
	json.Unmarshal(out[fmt.Sprintf("snapshot/%d", sv)], &m)
	tv := m.Signed.Meta["targets.json"].Version
	out[fmt.Sprintf("targets/%d", tv)] = siteGet(t, site, token, fmt.Sprintf("%stargets/%d", base, tv))
	return out
}

// TestDistributionHostileMirror: real vendor, site and agent processes
// behind a compromised mirror. It serves line1's genuine signed bundle on
// line2's paths (the agent of line2 refuses it: the second lock), then
// replays line1's old metadata after a newer release (rollback: refused),
// and tampers with an artifact (refused, reported as failed).
func TestDistributionHostileMirror(t *testing.T) {
	t.Parallel()
	v := newVendor(t, "")
	dir := t.TempDir()
	ok(t, v.admin("vendor", "app", "add", "--id", "tool")...)
	for _, ver := range []string{"1.0", "2.0", "9.9"} {
		f := filepath.Join(dir, "tool-"+ver)
		os.WriteFile(f, []byte("#!/bin/sh\necho tool "+ver+"\n"), 0o755)
		ok(t, v.admin("vendor", "release", "add", "--app", "tool", "--version", ver, "--artifact", "linux-amd64="+f)...)
	}
	site := filepath.Join(dir, "site")
	ok(t, "site", "init", "--data", site, "--vendor", v.srv.URL, "--enroll", v.enrollCode(t, "acme"))
	tokens := map[string]string{}
	for _, g := range []string{"line1", "line2"} {
		ok(t, "site", "group", "add", "--data", site, "--name", g)
		var d struct{ Token string }
		okJSON(t, &d, "site", "device", "add", "--data", site, "--name", "dev-"+g, "--group", g)
		tokens[g] = d.Token
	}
	for range 3 { // line1's metadata versions move past line2's
		ok(t, v.admin("vendor", "bundle", "add", "--customer", "acme", "--group", "line1", "--release", "tool-9.9")...)
	}
	ok(t, v.admin("vendor", "bundle", "add", "--customer", "acme", "--group", "line2", "--release", "tool-1.0")...)
	ok(t, "site", "update", "sync", "--data", site)
	srv := start(t, []string{"LICET_SITE_SYNC_INTERVAL=0"}, "site", "serve", "--data", site)
	h := newHostileMirror(t, srv.URL)
	root := filepath.Join(v.dir, "root.crt")
	agent := filepath.Join(dir, "agent2")
	ok(t, "agent", "update", "init", "--data", agent, "--server", h.srv.URL, "--token", tokens["line2"], "--vendor-root", root, "--app", "tool", "--platform", "linux-amd64")
	ok(t, "agent", "update", "apply", "--data", agent)

	// Crossing groups through the mirror.
	for path, body := range groupMeta(t, srv.URL, tokens["line1"], "line1") {
		h.serve("/v1/update/groups/line2/"+path, body)
	}
	fails(t, 3, "another group's bundle", "agent", "update", "apply", "--data", agent)
	h.reset() // an honest path again
	ok(t, "agent", "update", "check", "--data", agent)

	// Rollback: the mirror replays line2's metadata of 1.0 after 2.0.
	old := groupMeta(t, srv.URL, tokens["line2"], "line2")
	ok(t, v.admin("vendor", "bundle", "add", "--customer", "acme", "--group", "line2", "--release", "tool-2.0")...)
	ok(t, "site", "update", "sync", "--data", site)
	agentB := filepath.Join(dir, "agent2b")
	ok(t, "agent", "update", "init", "--data", agentB, "--server", h.srv.URL, "--token", tokens["line2"], "--vendor-root", root, "--app", "tool", "--platform", "linux-amd64")
	for i := 0; ; i++ { // the running site serves the sync within a second
		if out := ok(t, "agent", "update", "check", "--data", agentB); strings.Contains(out, "-> 2.0") {
			break
		} else if i == 30 {
			t.Fatalf("check: %s", out)
		}
		sleep100ms()
	}
	h.serve("/v1/update/groups/line2/timestamp", old["timestamp"])
	fails(t, 3, "must be >=", "agent", "update", "check", "--data", agentB)

	// A tampered artifact: the signed hash catches it; the failure is reported.
	h.reset()
	var rels []struct {
		ID        string
		Artifacts []struct{ SHA256 string }
	}
	okJSON(t, &rels, v.admin("vendor", "release", "list", "--app", "tool")...)
	for _, r := range rels {
		if r.ID == "tool-2.0" {
			h.serve("/v1/update/groups/line2/blobs/"+r.Artifacts[0].SHA256, []byte("#!/bin/sh\necho evil\n"))
		}
	}
	agentC := filepath.Join(dir, "agent2c")
	ok(t, "agent", "update", "init", "--data", agentC, "--server", h.srv.URL, "--token", tokens["line2"], "--vendor-root", root, "--app", "tool", "--platform", "linux-amd64")
	fails(t, 3, "tampered", "agent", "update", "apply", "--data", agentC)
	var gs []struct {
		Group    string
		Statuses map[string]int
	}
	okJSON(t, &gs, "site", "update", "status", "--data", site)
	for _, g := range gs {
		if g.Group == "line2" && g.Statuses["failed"] != 1 {
			t.Fatalf("site status of line2: %+v", g)
		}
	}
}

func sleep100ms() { time.Sleep(100 * time.Millisecond) }
