package mirror_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/disttest"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/keys"
)

// queueFailures queues n failed installs, each with a 4 KiB log (what the
// agent sends).
func queueFailures(t *testing.T, w *disttest.World, n int) {
	t.Helper()
	d, err := w.Mir.Authenticate(t.Context(), w.Tokens["dev-g1"])
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &mirror.Report{App: "app", Version: "2.0", Status: catalog.StatusFailed, Log: strings.Repeat("x", 4096)}
		if err := w.Mir.Report(t.Context(), d, r); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
}

func siteVendor(t *testing.T, url string) *mirror.Vendor {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	return &mirror.Vendor{URL: url, Signer: s, HTTP: http.DefaultClient, Now: time.Now}
}

// A bad release fails on hundreds of devices at once: their statuses, logs
// included, must still reach a vendor that takes request bodies of 1 MiB
// (its default), rather than being refused as one request forever.
func TestPushReportsFitsTheVendorsBodyLimit(t *testing.T) {
	w := disttest.New(t)
	queueFailures(t, w, 600)
	var got atomic.Int64
	vendor := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, 1<<20))
		if err != nil {
			http.Error(rw, `{"error":{"code":"too_large","message":"request body is over the limit"}}`, http.StatusRequestEntityTooLarge)
			return
		}
		var sts []catalog.Status
		if err := json.Unmarshal(body, &sts); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		got.Add(int64(len(sts)))
		rw.Write([]byte(`{}`))
	}))
	defer vendor.Close()
	w.Mir.Vendor = siteVendor(t, vendor.URL)
	n, err := w.Mir.PushReports(t.Context())
	if err != nil || n != 600 || got.Load() != 600 {
		t.Fatalf("pushed %d (vendor got %d): %v", n, got.Load(), err)
	}
}

// An air-gapped site's reports file must fit the vendor's request body
// limit too, and the statuses stay queued when the file cannot be written.
func TestExportReportsFitsAndKeepsUnwritten(t *testing.T) {
	w := disttest.New(t)
	queueFailures(t, w, 600)
	w.Mir.Vendor = siteVendor(t, "")
	ctx := t.Context()
	if _, err := w.Mir.ExportReports(ctx, func([]byte) error { return errors.New("disk full") }); err == nil {
		t.Fatal("ExportReports succeeded although the file was not written")
	}
	if rs, err := w.Mir.Store.PendingDistReports(ctx, 1000); err != nil || len(rs) != 600 {
		t.Fatalf("after a failed write %d statuses are queued, want 600 (%v)", len(rs), err)
	}
	total := 0
	for total < 600 {
		var size int
		n, err := w.Mir.ExportReports(ctx, func(f []byte) error { size = len(f); return nil })
		if err != nil || n == 0 {
			t.Fatalf("export after %d: %d, %v", total, n, err)
		}
		if size > 1<<20 {
			t.Fatalf("a reports file of %d statuses has %d bytes, over the vendor's 1 MiB body limit", n, size)
		}
		total += n
	}
}
