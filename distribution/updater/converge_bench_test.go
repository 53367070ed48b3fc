package updater_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/updater"
)

// BenchmarkConverge simulates a fleet converging on a new release: N
// devices (default 10,000; $LICET_CONVERGE_DEVICES) of one group run the
// real updater against the site's HTTP API on loopback, each with its own
// state directory: refresh and verify the metadata, download and check the
// artifact, install it, report downloading/installing/installed. The site's
// reports then reach the vendor, whose installed-version record must show
// every device. It runs once whatever b.N is, and reports the seconds from
// the release reaching the site to the last confirmation at the vendor.
func BenchmarkConverge(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("LICET_CONVERGE_DEVICES")); err == nil && v > 0 {
		n = v
	}
	// Real devices each have their own disk; on one machine their fsyncs
	// queue on one. $LICET_CONVERGE_DIR (e.g. /dev/shm) holds the devices'
	// state elsewhere, so that the site's and vendor's costs show.
	devDir := func() string { return b.TempDir() }
	if d := os.Getenv("LICET_CONVERGE_DIR"); d != "" {
		base, err := os.MkdirTemp(d, "licet-converge-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(base) })
		var seq atomic.Int64
		devDir = func() string { return filepath.Join(base, strconv.FormatInt(seq.Add(1), 10)) }
	}
	// One transport for the simulated fleet, with an idle connection per
	// working device: the default keeps two per host, and 10,000 devices in
	// one process would otherwise wait on new TCP connections, which real
	// devices, each with its own, do not.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
	w := newWorld(b)
	w.Bundle("g1", w.Release("1.0", script("one")))
	w.Transfer()
	devs := make([]*updater.Updater, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256) // devices working at once
	var failed atomic.Int64
	for i := range n {
		name := fmt.Sprintf("sim-%05d", i)
		_, tok, err := w.Mir.AddDevice(b.Context(), name, "g1")
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u, err := updater.Init(b.Context(), devDir(), updater.Config{Server: w.Site.URL, Token: tok, App: "app", Platform: "linux-amd64"}, w.Root)
			if err != nil {
				failed.Add(1)
				b.Error(err)
				return
			}
			u.HTTP = hc
			devs[i] = u
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.FailNow()
	}
	b.ResetTimer()
	start := time.Now()
	w.Bundle("g1", w.Release("2.0", script("two")))
	w.Transfer()
	for _, u := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if res, err := u.Apply(b.Context(), updater.Options{}); err != nil || res.Plan.Installed != "2.0" {
				failed.Add(1)
				b.Errorf("device %s: %v", u.Config.Device, err)
			}
		}()
	}
	wg.Wait()
	installed := time.Since(start)
	// The site forwards the reports; the vendor records them.
	reports := 0
	for {
		reps, err := w.Mir.Store.PendingDistReports(b.Context(), 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(reps) == 0 {
			break
		}
		sts := make([]*catalog.Status, len(reps))
		ids := make([]int64, len(reps))
		for i, r := range reps {
			sts[i] = &catalog.Status{Group: r.Group, Device: r.Device, App: r.App, Version: r.Version, Status: r.Status, At: r.At}
			ids[i] = r.ID
		}
		if err := w.Cat.RecordStatus(b.Context(), "acme", "site-test", sts); err != nil {
			b.Fatal(err)
		}
		if err := w.Mir.Store.MarkDistReportsSent(b.Context(), ids); err != nil {
			b.Fatal(err)
		}
		reports += len(reps)
	}
	total := time.Since(start)
	b.StopTimer()
	vs, err := w.Cat.Versions(b.Context(), "acme")
	if err != nil || vs[0].Installed != "2.0" || vs[0].Devices[catalog.StatusInstalled] != n {
		b.Fatalf("vendor record after convergence: %+v %v", vs, err)
	}
	b.ReportMetric(float64(n), "devices")
	b.ReportMetric(installed.Seconds(), "s-to-install")
	b.ReportMetric(total.Seconds(), "s-to-vendor-record")
	b.ReportMetric(float64(n)/installed.Seconds(), "installs/s")
	b.Logf("%d devices installed 2.0 in %s; %d reports recorded at the vendor after %s", n, installed.Round(time.Millisecond), reports, total.Round(time.Millisecond))
}
