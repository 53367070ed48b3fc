package updater_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/distribution/blobstore"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/distribution/updater"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/store"
)

// world is a vendor catalogue and a site mirror on real SQLite files, the
// site's device API on a real loopback HTTP server, fed by export files
// (the air-gapped path; the online path runs in e2e).
type world struct {
	t      testing.TB
	cat    *catalog.Service
	mir    *mirror.Service
	site   *httptest.Server
	root   *x509.Certificate
	now    time.Time
	tokens map[string]string // device name -> token
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	vs, err := store.OpenVendor(ctx, filepath.Join(dir, "vendor.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Close() })
	ss, err := store.OpenSite(ctx, filepath.Join(dir, "site.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	if err := vs.CreateCustomer(ctx, &clearinghouse.Customer{ID: "acme", Name: "Acme", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	w := &world{t: t, now: time.Now().UTC(), root: &x509.Certificate{PublicKey: pub}, tokens: map[string]string{}}
	now := func() time.Time { return w.now }
	w.cat = &catalog.Service{Store: vs.(catalog.Store), Secret: priv.Seed(), Anchor: func(m []byte) []byte { return ed25519.Sign(priv, m) },
		Expiries: catalog.DefaultExpiries, Now: now}
	w.mir = &mirror.Service{Store: ss.(mirror.Store), Blobs: blobstore.Dir(filepath.Join(dir, "blobs")), Customer: "acme", VendorRoot: w.root, Now: now}
	srv := api.NewServer("site", slog.New(slog.NewTextHandler(io.Discard, nil)), api.Limits{MaxBody: 1 << 20}, nil)
	api.AddDistributionSiteRoutes(srv, w.mir)
	w.site = httptest.NewServer(srv)
	t.Cleanup(w.site.Close)
	for _, g := range []string{"g1", "g2"} {
		if _, err := w.mir.AddGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		_, tok, err := w.mir.AddDevice(ctx, "dev-"+g, g)
		if err != nil {
			t.Fatal(err)
		}
		w.tokens["dev-"+g] = tok
	}
	if err := w.cat.AddApp(ctx, &catalog.App{ID: "app"}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) release(version string, data []byte) *catalog.Release {
	w.t.Helper()
	ctx := w.t.Context()
	sha, size := sum(data)
	for i := 0; i*catalog.ChunkSize < len(data); i++ {
		if err := w.cat.PutChunk(ctx, sha, int64(i), data[i*catalog.ChunkSize:min(len(data), (i+1)*catalog.ChunkSize)]); err != nil {
			w.t.Fatal(err)
		}
	}
	if _, err := w.cat.CommitBlob(ctx, sha, size); err != nil {
		w.t.Fatal(err)
	}
	r := &catalog.Release{App: "app", Version: version, Artifacts: []catalog.Artifact{{Platform: "linux-amd64", Name: "app.sh", Size: size, SHA256: sha}}}
	if err := w.cat.AddRelease(ctx, r); err != nil {
		w.t.Fatal(err)
	}
	return r
}

func sum(data []byte) (string, int64) {
	f := filepath.Join(os.TempDir(), fmt.Sprintf("licet-sum-%d", time.Now().UnixNano()))
	os.WriteFile(f, data, 0o600)
	defer os.Remove(f)
	s, n, _ := blobstore.HashFile(f)
	return s, n
}

func (w *world) bundle(group string, r *catalog.Release) {
	w.t.Helper()
	if _, err := w.cat.AddBundle(w.t.Context(), &catalog.Bundle{Customer: "acme", Group: group, Release: r.ID}); err != nil {
		w.t.Fatal(err)
	}
}

// transfer carries the vendor's export file to the site (air-gapped).
func (w *world) transfer() *mirror.SyncResult {
	w.t.Helper()
	var buf bytes.Buffer
	if err := w.cat.Export(w.t.Context(), "acme", 30*24*time.Hour, &buf); err != nil {
		w.t.Fatal(err)
	}
	res, err := w.mir.Import(w.t.Context(), &buf)
	if err != nil {
		w.t.Fatalf("import: %v", err)
	}
	return res
}

func (w *world) device(name, server string) *updater.Updater {
	w.t.Helper()
	group := strings.TrimPrefix(name, "dev-")
	u, err := updater.Init(w.t.Context(), w.t.TempDir(), updater.Config{Server: server, Token: w.tokens[name], App: "app", Platform: "linux-amd64"}, w.root)
	if err != nil {
		w.t.Fatalf("init %s: %v", name, err)
	}
	if u.Config.Group != group || u.Config.Customer != "acme" {
		w.t.Fatalf("device %s is in %s/%s", name, u.Config.Customer, u.Config.Group)
	}
	u.Now = func() time.Time { return w.now }
	return u
}

func script(msg string) []byte { return []byte("#!/bin/sh\necho " + msg + "\n") }

func wantRejected(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted, want refused", what)
	}
	if !errors.Is(err, tufmeta.ErrRejected) && !errors.Is(err, blobstore.ErrMismatch) {
		t.Fatalf("%s: %v is not a security refusal", what, err)
	}
	t.Logf("%s: refused: %v", what, err)
}

// TestInstallAndConfirm: an air-gapped site imports the export file, a
// device installs 1.0 and then 2.0, keeping 1.0 as previous; the
// confirmation reaches the vendor's installed-version record.
func TestInstallAndConfirm(t *testing.T) {
	w := newWorld(t)
	w.bundle("g1", w.release("1.0", script("one")))
	w.transfer()
	u := w.device("dev-g1", w.site.URL)
	res, err := u.Apply(t.Context(), updater.Options{Hook: `test -x "$LICET_ARTIFACT" && echo hooked`})
	if err != nil || res.Status != catalog.StatusInstalled {
		t.Fatalf("apply 1.0: %v %+v", err, res)
	}
	out, err := os.ReadFile(filepath.Join(u.AppDir(), "current", "app.sh"))
	if err != nil || !bytes.Equal(out, script("one")) {
		t.Fatalf("current/app.sh: %q %v", out, err)
	}
	w.bundle("g1", w.release("2.0", script("two")))
	w.transfer()
	if res, err = u.Apply(t.Context(), updater.Options{}); err != nil || res.Plan.Installed != "2.0" {
		t.Fatalf("apply 2.0: %v %+v", err, res)
	}
	inst, _ := u.Installed()
	if inst.Version != "2.0" || inst.Previous != "1.0" {
		t.Fatalf("installed %+v", inst)
	}
	if _, err := os.Stat(filepath.Join(u.AppDir(), "1.0", "app.sh")); err != nil {
		t.Fatalf("previous version not kept: %v", err)
	}
	// The site's queued reports travel to the vendor's record.
	reports, err := w.mir.Store.PendingDistReports(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var sts []*catalog.Status
	for _, r := range reports {
		sts = append(sts, &catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, At: r.At})
	}
	if err := w.cat.RecordStatus(t.Context(), "acme", sts); err != nil {
		t.Fatal(err)
	}
	vs, err := w.cat.Versions(t.Context(), "acme")
	if err != nil || len(vs) != 1 || vs[0].Installed != "2.0" || !vs[0].UpToDate {
		t.Fatalf("vendor record %+v %v", vs, err)
	}
	// Up to date: nothing to do.
	if res, err = u.Apply(t.Context(), updater.Options{}); err != nil || res.Status != "up-to-date" {
		t.Fatalf("again: %v %+v", err, res)
	}
}

// TestSiteRefusesOtherGroup: the first lock. A device of g2 asking the site
// for g1's metadata or artifact is refused, with its own token.
func TestSiteRefusesOtherGroup(t *testing.T) {
	w := newWorld(t)
	r := w.release("1.0", script("one"))
	w.bundle("g1", r)
	w.transfer()
	for _, path := range []string{"/v1/update/groups/g1/timestamp", "/v1/update/groups/g1/targets/1", "/v1/update/groups/g1/blobs/" + r.Artifacts[0].SHA256} {
		req, _ := http.NewRequest("GET", w.site.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+w.tokens["dev-g2"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("g2 device GET %s: %d %s, want 403", path, resp.StatusCode, body)
		}
	}
	// And g1's device may not fetch an artifact outside its bundle.
	other := w.release("9.9", script("other"))
	req, _ := http.NewRequest("GET", w.site.URL+"/v1/update/groups/g1/blobs/"+other.Artifacts[0].SHA256, nil)
	req.Header.Set("Authorization", "Bearer "+w.tokens["dev-g1"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("artifact outside the bundle: %d, want 403", resp.StatusCode)
	}
}

// hostile is a compromised mirror: it serves whatever the test puts in
// routes and forwards the rest to the real site.
type hostile struct {
	real   string
	routes map[string][]byte
	srv    *httptest.Server
}

func newHostile(t *testing.T, real string) *hostile {
	h := &hostile{real: real, routes: map[string][]byte{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if b, ok := h.routes[r.URL.Path]; ok {
			rw.Write(b)
			return
		}
		req, _ := http.NewRequest(r.Method, h.real+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			rw.WriteHeader(502)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			rw.Header()[k] = v
		}
		rw.WriteHeader(resp.StatusCode)
		io.Copy(rw, resp.Body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// fetch reads a route of the real site with a device's token.
func (w *world) fetch(device, path string) []byte {
	w.t.Helper()
	req, _ := http.NewRequest("GET", w.site.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+w.tokens[device])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		w.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

// current returns a group's current metadata as the site serves it, by
// role, with the versions the timestamp and snapshot name.
func (w *world) current(device, group string) (ts []byte, snapV int64, snap []byte, tgV int64, tg []byte) {
	base := "/v1/update/groups/" + group + "/"
	ts = w.fetch(device, base+"timestamp")
	var m struct {
		Signed struct {
			Meta map[string]struct{ Version int64 } `json:"meta"`
		} `json:"signed"`
	}
	json.Unmarshal(ts, &m)
	snapV = m.Signed.Meta["snapshot.json"].Version
	snap = w.fetch(device, base+"snapshot/"+strconv.FormatInt(snapV, 10))
	json.Unmarshal(snap, &m)
	tgV = m.Signed.Meta["targets.json"].Version
	tg = w.fetch(device, base+"targets/"+strconv.FormatInt(tgV, 10))
	return
}

// TestHostileSiteServesOtherGroup: the second lock. A compromised site
// serves g1's genuine, signed bundle on g2's paths; the g2 agent refuses it
// and keeps its trusted state and installed version.
func TestHostileSiteServesOtherGroup(t *testing.T) {
	w := newWorld(t)
	w.bundle("g1", w.release("1.0", script("g1 only")))
	w.bundle("g2", w.release("0.5", script("g2")))
	w.transfer()
	h := newHostile(t, w.site.URL)
	u := w.device("dev-g2", h.srv.URL)
	if _, err := u.Apply(t.Context(), updater.Options{}); err != nil {
		t.Fatalf("g2 installs its own bundle: %v", err)
	}
	for i := range 3 { // g1's metadata versions move past g2's
		w.bundle("g1", w.release(fmt.Sprintf("1.%d", i+1), script("g1 again")))
		w.transfer()
	}
	ts, sv, snap, tv, tg := w.current("dev-g1", "g1")
	h.routes["/v1/update/groups/g2/timestamp"] = ts
	h.routes[fmt.Sprintf("/v1/update/groups/g2/snapshot/%d", sv)] = snap
	h.routes[fmt.Sprintf("/v1/update/groups/g2/targets/%d", tv)] = tg
	_, err := u.Apply(t.Context(), updater.Options{})
	wantRejected(t, err, "g1's bundle served to a g2 device")
	if inst, _ := u.Installed(); inst.Version != "0.5" {
		t.Fatalf("installed %s after the attack", inst.Version)
	}
}

// TestRollbackFreezeMix: a hostile mirror replays old metadata (rollback),
// keeps serving the last metadata past its expiry (freeze), and mixes the
// new timestamp and snapshot with old targets; the agent refuses each.
func TestRollbackFreezeMix(t *testing.T) {
	w := newWorld(t)
	w.bundle("g1", w.release("1.0", script("one")))
	w.transfer()
	oldTS, _, _, oldTV, oldTG := w.current("dev-g1", "g1")
	w.bundle("g1", w.release("2.0", script("two")))
	w.transfer()
	h := newHostile(t, w.site.URL)
	u := w.device("dev-g1", h.srv.URL)
	if res, err := u.Apply(t.Context(), updater.Options{}); err != nil || res.Plan.Installed != "2.0" {
		t.Fatalf("install 2.0: %v", err)
	}
	// Rollback: the old timestamp, snapshot and targets.
	h.routes["/v1/update/groups/g1/timestamp"] = oldTS
	_, err := u.Check(t.Context())
	wantRejected(t, err, "rollback to 1.0's metadata")
	delete(h.routes, "/v1/update/groups/g1/timestamp")
	// Mix and match: the current timestamp and snapshot with 1.0's targets,
	// for a device that has not seen 2.0 yet.
	_, _, _, tv, _ := w.current("dev-g1", "g1")
	if tv == oldTV {
		t.Fatal("targets version did not move")
	}
	u2 := w.device("dev-g1", h.srv.URL)
	h.routes[fmt.Sprintf("/v1/update/groups/g1/targets/%d", tv)] = oldTG
	_, err = u2.Check(t.Context())
	wantRejected(t, err, "targets of 1.0 under the snapshot of 2.0")
	delete(h.routes, fmt.Sprintf("/v1/update/groups/g1/targets/%d", tv))
	// Freeze: time passes beyond the timestamp's expiry while the site
	// serves the same metadata.
	w.now = w.now.Add(31 * 24 * time.Hour)
	_, err = u.Check(t.Context())
	wantRejected(t, err, "expired timestamp (freeze)")
	if inst, _ := u.Installed(); inst.Version != "2.0" {
		t.Fatalf("installed %s after the attacks", inst.Version)
	}
}

// TestTamperedArtifact: a mirror serving other bytes for the artifact is
// caught by the signed hash; the agent reports the failure and keeps the
// installed version.
func TestTamperedArtifact(t *testing.T) {
	w := newWorld(t)
	r := w.release("1.0", script("genuine"))
	w.bundle("g1", r)
	w.transfer()
	h := newHostile(t, w.site.URL)
	h.routes["/v1/update/groups/g1/blobs/"+r.Artifacts[0].SHA256] = script("evil!!!")
	u := w.device("dev-g1", h.srv.URL)
	res, err := u.Apply(t.Context(), updater.Options{})
	wantRejected(t, err, "tampered artifact")
	if res == nil || res.Status != catalog.StatusFailed {
		t.Fatalf("result %+v", res)
	}
	if inst, _ := u.Installed(); inst != nil {
		t.Fatalf("installed %+v from a tampered artifact", inst)
	}
	reps, _ := w.mir.Store.DistReports(t.Context())
	if len(reps) != 1 || reps[0].Status != catalog.StatusFailed || !strings.Contains(reps[0].Log, "tampered") {
		t.Fatalf("reports %+v", reps)
	}
}

// TestResume: the site's connection drops half way through the artifact;
// the next apply resumes with a Range request from the bytes on disk.
func TestResume(t *testing.T) {
	w := newWorld(t)
	data := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	r := w.release("1.0", data)
	w.bundle("g1", r)
	w.transfer()
	var ranges []string
	var cut atomic.Bool
	cut.Store(true)
	blobPath := "/v1/update/groups/g1/blobs/" + r.Artifacts[0].SHA256
	proxy := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		out, _ := http.NewRequest(req.Method, w.site.URL+req.URL.Path, nil)
		out.Header = req.Header.Clone()
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			rw.WriteHeader(502)
			return
		}
		defer resp.Body.Close()
		if req.URL.Path == blobPath {
			ranges = append(ranges, req.Header.Get("Range"))
		}
		for k, v := range resp.Header {
			rw.Header()[k] = v
		}
		rw.WriteHeader(resp.StatusCode)
		if req.URL.Path == blobPath && cut.Swap(false) {
			io.CopyN(rw, resp.Body, 1_000_000)
			rw.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection
		}
		io.Copy(rw, resp.Body)
	}))
	defer proxy.Close()
	u := w.device("dev-g1", proxy.URL)
	if _, err := u.Apply(t.Context(), updater.Options{}); err == nil {
		t.Fatal("first apply succeeded through a dropped connection")
	}
	res, err := u.Apply(t.Context(), updater.Options{})
	if err != nil || res.Status != catalog.StatusInstalled {
		t.Fatalf("resumed apply: %v", err)
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") || ranges[1] == "bytes=0-" {
		t.Fatalf("blob requests with ranges %q, want a full one then a resumed one", ranges)
	}
	t.Logf("resumed with Range %s", ranges[1])
	got, _ := os.ReadFile(filepath.Join(u.AppDir(), "current", "app.sh"))
	if !bytes.Equal(got, data) {
		t.Fatal("installed file differs")
	}
}

// TestFailedInstallRolledBack: a failing install hook leaves the previous
// version current and reports the failure with the end of its log; a
// failing health check after the switch rolls back; neither changes the
// vendor's installed record.
func TestFailedInstallRolledBack(t *testing.T) {
	w := newWorld(t)
	w.bundle("g1", w.release("1.0", script("one")))
	w.transfer()
	u := w.device("dev-g1", w.site.URL)
	if _, err := u.Apply(t.Context(), updater.Options{}); err != nil {
		t.Fatal(err)
	}
	w.bundle("g1", w.release("2.0", script("two")))
	w.transfer()
	res, err := u.Apply(t.Context(), updater.Options{Hook: "echo migrating database; echo disk full >&2; exit 3"})
	if err == nil || res.Status != catalog.StatusFailed || !strings.Contains(res.Log, "disk full") {
		t.Fatalf("failing hook: %v %+v", err, res)
	}
	res, err = u.Apply(t.Context(), updater.Options{Health: `"$LICET_ARTIFACT" | grep -q one`})
	if err == nil || res.Status != catalog.StatusFailed {
		t.Fatalf("failing health check: %v %+v", err, res)
	}
	cur, _ := os.ReadFile(filepath.Join(u.AppDir(), "current", "app.sh"))
	if inst, _ := u.Installed(); inst.Version != "1.0" || !bytes.Equal(cur, script("one")) {
		t.Fatalf("after failures: installed %+v, current %q", inst, cur)
	}
	reps, _ := w.mir.Store.DistReports(t.Context())
	if len(reps) != 1 || reps[0].Status != catalog.StatusFailed || reps[0].Version != "2.0" {
		t.Fatalf("latest report %+v", reps[0])
	}
	var sts []*catalog.Status
	all, _ := w.mir.Store.PendingDistReports(t.Context(), 100)
	for _, r := range all {
		sts = append(sts, &catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, Log: r.Log, At: r.At})
	}
	if err := w.cat.RecordStatus(t.Context(), "acme", sts); err != nil {
		t.Fatal(err)
	}
	vs, _ := w.cat.Versions(t.Context(), "acme")
	if vs[0].Installed != "1.0" || vs[0].Current != "2.0" || vs[0].Devices[catalog.StatusFailed] != 1 {
		t.Fatalf("vendor record %+v", vs[0])
	}
}

// TestImportRefusesForeignPayload: an export file for another customer, or
// one whose root is not anchored by the vendor root, is refused by the site.
func TestImportRefusesForeignPayload(t *testing.T) {
	w := newWorld(t)
	w.bundle("g1", w.release("1.0", script("one")))
	var buf bytes.Buffer
	if err := w.cat.Export(t.Context(), "acme", 24*time.Hour, &buf); err != nil {
		t.Fatal(err)
	}
	_, pub2, _ := ed25519.GenerateKey(rand.Reader)
	_ = pub2
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	w.mir.VendorRoot = &x509.Certificate{PublicKey: otherPub}
	_, err := w.mir.Import(context.Background(), bytes.NewReader(buf.Bytes()))
	wantRejected(t, err, "export file of another vendor")
	w.mir.VendorRoot = w.root
	w.mir.Customer = "globex"
	if _, err := w.mir.Import(context.Background(), bytes.NewReader(buf.Bytes())); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("export for another customer: %v", err)
	}
}

// TestStagedRollout: phase 1 admits about 30% of the group's devices (by a
// signed rule each device evaluates); a failed install over the error
// threshold pauses the rollout, so admitted devices that had not installed
// yet wait; resume and advance to 100% let every device install.
func TestStagedRollout(t *testing.T) {
	w := newWorld(t)
	w.bundle("g1", w.release("1.0", script("one")))
	r2 := w.release("2.0", script("two"))
	w.transfer()
	var devs []*updater.Updater
	for i := range 20 {
		name := fmt.Sprintf("unit-%02d", i)
		_, tok, err := w.mir.AddDevice(t.Context(), name, "g1")
		if err != nil {
			t.Fatal(err)
		}
		u, err := updater.Init(t.Context(), t.TempDir(), updater.Config{Server: w.site.URL, Token: tok, App: "app", Platform: "linux-amd64"}, w.root)
		if err != nil {
			t.Fatal(err)
		}
		u.Now = func() time.Time { return w.now }
		if _, err := u.Apply(t.Context(), updater.Options{}); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, u)
	}
	if _, err := w.cat.AddBundle(t.Context(), &catalog.Bundle{Customer: "acme", Group: "g1", Release: r2.ID, Rollout: &catalog.Rollout{Phases: []int{30, 100}, MaxFailures: 0}}); err != nil {
		t.Fatal(err)
	}
	w.transfer()
	var admitted, waiting []*updater.Updater
	for _, u := range devs {
		p, err := u.Check(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := tufmeta.Bucket(r2.ID+"/g1", u.Config.Device) < 30
		if (p.Waiting == "") != want || p.Available.Version != "2.0" {
			t.Fatalf("device %s: plan %+v, admitted should be %v", u.Config.Device, p, want)
		}
		if want {
			admitted = append(admitted, u)
		} else {
			waiting = append(waiting, u)
		}
	}
	if len(admitted) < 2 || len(waiting) == 0 {
		t.Fatalf("%d admitted, %d waiting of 20", len(admitted), len(waiting))
	}
	t.Logf("phase 1 (30%%): %d of 20 devices admitted", len(admitted))
	// The first admitted device fails; its report reaches the vendor.
	if _, err := admitted[0].Apply(t.Context(), updater.Options{Hook: "exit 1"}); err == nil {
		t.Fatal("failing hook succeeded")
	}
	forward := func() {
		reps, err := w.mir.Store.PendingDistReports(t.Context(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		var sts []*catalog.Status
		var ids []int64
		for _, r := range reps {
			sts = append(sts, &catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, Log: r.Log, At: r.At})
			ids = append(ids, r.ID)
		}
		if err := w.cat.RecordStatus(t.Context(), "acme", sts); err != nil {
			t.Fatal(err)
		}
		w.mir.Store.MarkDistReportsSent(t.Context(), ids)
	}
	forward()
	w.transfer()
	res, err := admitted[1].Apply(t.Context(), updater.Options{})
	if err != nil || res.Status != "waiting" || !strings.Contains(res.Plan.Waiting, "paused") {
		t.Fatalf("admitted device after the threshold paused the rollout: %v %+v", err, res)
	}
	for _, action := range []string{catalog.ActionResume, catalog.ActionAdvance} {
		if _, err := w.cat.RolloutAction(t.Context(), "acme", "g1", "app", action); err != nil {
			t.Fatal(err)
		}
	}
	w.transfer()
	for _, u := range devs {
		if res, err := u.Apply(t.Context(), updater.Options{}); err != nil || res.Plan.Installed != "2.0" {
			t.Fatalf("device %s after advancing to 100%%: %v %+v", u.Config.Device, err, res)
		}
	}
	forward()
	vs, _ := w.cat.Versions(t.Context(), "acme")
	if vs[0].Installed != "2.0" || vs[0].Devices[catalog.StatusInstalled] != 20 {
		t.Fatalf("vendor record %+v", vs[0])
	}
}
