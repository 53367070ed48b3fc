package updater_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/distribution/blobstore"
	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/disttest"
	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/distribution/updater"
	"github.com/licet/licet/errs"
)

func (w *world) device(name, server string) *updater.Updater {
	w.T.Helper()
	group := strings.TrimPrefix(name, "dev-")
	u, err := updater.Init(w.T.Context(), w.T.TempDir(), updater.Config{Server: server, Token: w.Tokens[name], App: "app", Platform: "linux-amd64"}, w.Root)
	if err != nil {
		w.T.Fatalf("init %s: %v", name, err)
	}
	if u.Config.Group != group || u.Config.Customer != "acme" {
		w.T.Fatalf("device %s is in %s/%s", name, u.Config.Customer, u.Config.Group)
	}
	u.Now = func() time.Time { return w.Now }
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

// world adds the devices of this package's tests to a disttest.World.
type world struct{ *disttest.World }

func newWorld(t testing.TB) *world { return &world{disttest.New(t)} }

// TestInstallAndConfirm: an air-gapped site imports the export file, a
// device installs 1.0 and then 2.0, keeping 1.0 as previous; the
// confirmation reaches the vendor's installed-version record.
func TestInstallAndConfirm(t *testing.T) {
	w := newWorld(t)
	w.Bundle("g1", w.Release("1.0", script("one")))
	w.Transfer()
	u := w.device("dev-g1", w.Site.URL)
	res, err := u.Apply(t.Context(), updater.Options{Hook: `test -x "$LICET_ARTIFACT" && echo hooked`})
	if err != nil || res.Status != catalog.StatusInstalled {
		t.Fatalf("apply 1.0: %v %+v", err, res)
	}
	out, err := os.ReadFile(filepath.Join(u.AppDir(), "current", "app.sh"))
	if err != nil || !bytes.Equal(out, script("one")) {
		t.Fatalf("current/app.sh: %q %v", out, err)
	}
	w.Bundle("g1", w.Release("2.0", script("two")))
	w.Transfer()
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
	reports, err := w.Mir.Store.PendingDistReports(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var sts []*catalog.Status
	for _, r := range reports {
		sts = append(sts, &catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, At: r.At})
	}
	if err := w.Cat.RecordStatus(t.Context(), "acme", "site-test", sts); err != nil {
		t.Fatal(err)
	}
	vs, err := w.Cat.Versions(t.Context(), "acme")
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
	r := w.Release("1.0", script("one"))
	w.Bundle("g1", r)
	w.Transfer()
	for _, path := range []string{"/v1/update/groups/g1/timestamp", "/v1/update/groups/g1/targets/1", "/v1/update/groups/g1/blobs/" + r.Artifacts[0].SHA256} {
		req, _ := http.NewRequest("GET", w.Site.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+w.Tokens["dev-g2"])
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
	other := w.Release("9.9", script("other"))
	req, _ := http.NewRequest("GET", w.Site.URL+"/v1/update/groups/g1/blobs/"+other.Artifacts[0].SHA256, nil)
	req.Header.Set("Authorization", "Bearer "+w.Tokens["dev-g1"])
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

// TestHostileSiteServesOtherGroup: the second lock. A compromised site
// serves g1's genuine, signed bundle on g2's paths; the g2 agent refuses it
// and keeps its trusted state and installed version.
func TestHostileSiteServesOtherGroup(t *testing.T) {
	w := newWorld(t)
	w.Bundle("g1", w.Release("1.0", script("g1 only")))
	w.Bundle("g2", w.Release("0.5", script("g2")))
	w.Transfer()
	h := newHostile(t, w.Site.URL)
	u := w.device("dev-g2", h.srv.URL)
	if _, err := u.Apply(t.Context(), updater.Options{}); err != nil {
		t.Fatalf("g2 installs its own bundle: %v", err)
	}
	for i := range 3 { // g1's metadata versions move past g2's
		w.Bundle("g1", w.Release(fmt.Sprintf("1.%d", i+1), script("g1 again")))
		w.Transfer()
	}
	ts, sv, snap, tv, tg := w.Current("dev-g1", "g1")
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
	w.Bundle("g1", w.Release("1.0", script("one")))
	w.Transfer()
	oldTS, _, _, oldTV, oldTG := w.Current("dev-g1", "g1")
	w.Bundle("g1", w.Release("2.0", script("two")))
	w.Transfer()
	h := newHostile(t, w.Site.URL)
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
	_, _, _, tv, _ := w.Current("dev-g1", "g1")
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
	w.Now = w.Now.Add(31 * 24 * time.Hour)
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
	r := w.Release("1.0", script("genuine"))
	w.Bundle("g1", r)
	w.Transfer()
	h := newHostile(t, w.Site.URL)
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
	reps, _ := w.Mir.Store.DistReports(t.Context())
	if len(reps) != 1 || reps[0].Status != catalog.StatusFailed || !strings.Contains(reps[0].Log, "tampered") {
		t.Fatalf("reports %+v", reps)
	}
}

// TestResume: the site's connection drops half way through the artifact;
// the next apply resumes with a Range request from the bytes on disk.
func TestResume(t *testing.T) {
	w := newWorld(t)
	data := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	r := w.Release("1.0", data)
	w.Bundle("g1", r)
	w.Transfer()
	var ranges []string
	var cut atomic.Bool
	cut.Store(true)
	blobPath := "/v1/update/groups/g1/blobs/" + r.Artifacts[0].SHA256
	proxy := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		out, _ := http.NewRequest(req.Method, w.Site.URL+req.URL.Path, nil)
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
	w.Bundle("g1", w.Release("1.0", script("one")))
	w.Transfer()
	u := w.device("dev-g1", w.Site.URL)
	if _, err := u.Apply(t.Context(), updater.Options{}); err != nil {
		t.Fatal(err)
	}
	w.Bundle("g1", w.Release("2.0", script("two")))
	w.Transfer()
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
	reps, _ := w.Mir.Store.DistReports(t.Context())
	if len(reps) != 1 || reps[0].Status != catalog.StatusFailed || reps[0].Version != "2.0" {
		t.Fatalf("latest report %+v", reps[0])
	}
	var sts []*catalog.Status
	all, _ := w.Mir.Store.PendingDistReports(t.Context(), 100)
	for _, r := range all {
		sts = append(sts, &catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, Log: r.Log, At: r.At})
	}
	if err := w.Cat.RecordStatus(t.Context(), "acme", "site-test", sts); err != nil {
		t.Fatal(err)
	}
	vs, _ := w.Cat.Versions(t.Context(), "acme")
	if vs[0].Installed != "1.0" || vs[0].Current != "2.0" || vs[0].Devices[catalog.StatusFailed] != 1 {
		t.Fatalf("vendor record %+v", vs[0])
	}
}

// TestImportRefusesForeignPayload: an export file for another customer, or
// one whose root is not anchored by the vendor root, is refused by the site.
func TestImportRefusesForeignPayload(t *testing.T) {
	w := newWorld(t)
	w.Bundle("g1", w.Release("1.0", script("one")))
	var buf bytes.Buffer
	if err := w.Cat.Export(t.Context(), "acme", 24*time.Hour, &buf); err != nil {
		t.Fatal(err)
	}
	other, _ := disttest.NewVendor(t, "Other", w.Now)
	w.Mir.VendorRoot = other.Cert
	_, err := w.Mir.Import(context.Background(), bytes.NewReader(buf.Bytes()))
	wantRejected(t, err, "export file of another vendor")
	w.Mir.VendorRoot = w.Root
	w.Mir.Customer = "globex"
	if _, err := w.Mir.Import(context.Background(), bytes.NewReader(buf.Bytes())); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("export for another customer: %v", err)
	}
}

// TestStagedRollout: phase 1 admits about 30% of the group's devices (by a
// signed rule each device evaluates); a failed install over the error
// threshold pauses the rollout, so admitted devices that had not installed
// yet wait; resume and advance to 100% let every device install.
func TestStagedRollout(t *testing.T) {
	w := newWorld(t)
	w.Bundle("g1", w.Release("1.0", script("one")))
	r2 := w.Release("2.0", script("two"))
	w.Transfer()
	var devs []*updater.Updater
	for i := range 20 {
		name := fmt.Sprintf("unit-%02d", i)
		_, tok, err := w.Mir.AddDevice(t.Context(), name, "g1")
		if err != nil {
			t.Fatal(err)
		}
		u, err := updater.Init(t.Context(), t.TempDir(), updater.Config{Server: w.Site.URL, Token: tok, App: "app", Platform: "linux-amd64"}, w.Root)
		if err != nil {
			t.Fatal(err)
		}
		u.Now = func() time.Time { return w.Now }
		if _, err := u.Apply(t.Context(), updater.Options{}); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, u)
	}
	if _, err := w.Cat.AddBundle(t.Context(), &catalog.Bundle{Customer: "acme", Group: "g1", Release: r2.ID, Rollout: &catalog.Rollout{Phases: []int{30, 100}, MaxFailures: 0}}); err != nil {
		t.Fatal(err)
	}
	w.Transfer()
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
		reps, err := w.Mir.Store.PendingDistReports(t.Context(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		var sts []*catalog.Status
		var ids []int64
		for _, r := range reps {
			sts = append(sts, &catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, Log: r.Log, At: r.At})
			ids = append(ids, r.ID)
		}
		if err := w.Cat.RecordStatus(t.Context(), "acme", "site-test", sts); err != nil {
			t.Fatal(err)
		}
		w.Mir.Store.MarkDistReportsSent(t.Context(), ids)
	}
	forward()
	w.Transfer()
	res, err := admitted[1].Apply(t.Context(), updater.Options{})
	if err != nil || res.Status != "waiting" || !strings.Contains(res.Plan.Waiting, "paused") {
		t.Fatalf("admitted device after the threshold paused the rollout: %v %+v", err, res)
	}
	for _, action := range []string{catalog.ActionResume, catalog.ActionAdvance} {
		if _, err := w.Cat.RolloutAction(t.Context(), "acme", "g1", "app", action); err != nil {
			t.Fatal(err)
		}
	}
	w.Transfer()
	for _, u := range devs {
		if res, err := u.Apply(t.Context(), updater.Options{}); err != nil || res.Plan.Installed != "2.0" {
			t.Fatalf("device %s after advancing to 100%%: %v %+v", u.Config.Device, err, res)
		}
	}
	forward()
	vs, _ := w.Cat.Versions(t.Context(), "acme")
	if vs[0].Installed != "2.0" || vs[0].Devices[catalog.StatusInstalled] != 20 {
		t.Fatalf("vendor record %+v", vs[0])
	}
}

// TestStagedRolloutBySite: a rollout staged by sites admits all devices of
// a site together, or none of them.
func TestStagedRolloutBySite(t *testing.T) {
	w := newWorld(t)
	r := w.Release("1.0", script("one"))
	if _, err := w.Cat.AddBundle(t.Context(), &catalog.Bundle{Customer: "acme", Group: "g1", Release: r.ID, Rollout: &catalog.Rollout{Phases: []int{50, 100}, By: "sites", MaxFailures: 10}}); err != nil {
		t.Fatal(err)
	}
	w.Transfer()
	want := tufmeta.Bucket(r.ID+"/g1", "site:site-test") < 50
	for i := range 3 {
		_, tok, err := w.Mir.AddDevice(t.Context(), fmt.Sprintf("unit-%d", i), "g1")
		if err != nil {
			t.Fatal(err)
		}
		u, err := updater.Init(t.Context(), t.TempDir(), updater.Config{Server: w.Site.URL, Token: tok, App: "app", Platform: "linux-amd64"}, w.Root)
		if err != nil {
			t.Fatal(err)
		}
		if u.Config.Site != "site-test" {
			t.Fatalf("device's site %q", u.Config.Site)
		}
		p, err := u.Check(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Waiting == ""; got != want {
			t.Fatalf("device %d admitted %v, the site's bucket says %v (%s)", i, got, want, p.Waiting)
		}
	}
	if _, err := w.Cat.RolloutAction(t.Context(), "acme", "g1", "app", catalog.ActionAdvance); err != nil {
		t.Fatal(err)
	}
	w.Transfer()
	_, tok, _ := w.Mir.AddDevice(t.Context(), "late", "g1")
	u, err := updater.Init(t.Context(), t.TempDir(), updater.Config{Server: w.Site.URL, Token: tok, App: "app", Platform: "linux-amd64"}, w.Root)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := u.Apply(t.Context(), updater.Options{}); err != nil || res.Status != catalog.StatusInstalled {
		t.Fatalf("after the last phase: %v %+v", err, res)
	}
}
