package mirror_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/distribution/disttest"
)

// benchSite is a site with group g1's bundle (one artifact of size bytes)
// imported from an export file, its device API on a loopback HTTP server.
type benchSite struct {
	url, token, blob, path string
	size                   int64
}

func newBenchSite(b *testing.B, size int) *benchSite {
	b.Helper()
	w := disttest.New(b)
	data := make([]byte, size)
	rand.Read(data)
	rel := w.Release("1.0", data)
	w.Bundle("g1", rel)
	w.Transfer()
	sha := rel.Artifacts[0].SHA256
	return &benchSite{url: w.Site.URL, token: w.Tokens["dev-g1"], blob: "/v1/update/groups/g1/blobs/" + sha, path: w.Mir.Blobs.Path(sha), size: int64(size)}
}

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
}

func get(b *testing.B, c *http.Client, url, token, rng string) int64 {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Error(err)
		return 0
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 206 {
		b.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return n
}

func perSecond(b *testing.B, start time.Time, unit string) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

// BenchmarkUpdateCheck is the device's update check at the site over
// loopback HTTP with keep-alive, 64 concurrent clients: device token
// authentication, the group lock, and the group's timestamp metadata. The
// Baseline sub-benchmark serves the same bytes from a bare handler behind
// the same server plumbing (metrics, limits), in the same run.
func BenchmarkUpdateCheck(b *testing.B) {
	s := newBenchSite(b, 1024)
	ts := func() []byte {
		req, _ := http.NewRequest("GET", s.url+"/v1/update/groups/g1/timestamp", nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return body
	}()
	base := api.NewServer("baseline", slog.New(slog.NewTextHandler(io.Discard, nil)), api.Limits{MaxBody: 1 << 20}, nil)
	base.Public("GET /timestamp", func(w http.ResponseWriter, r *http.Request) error { w.Write(ts); return nil })
	bs := httptest.NewServer(base)
	defer bs.Close()
	for _, tc := range []struct{ name, url, token string }{
		{"Site", s.url + "/v1/update/groups/g1/timestamp", s.token},
		{"Baseline", bs.URL + "/timestamp", ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := client()
			b.SetParallelism(64 / max(1, runtimeProcs()))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, c, tc.url, tc.token, "")
				}
			})
			perSecond(b, start, "checks/s")
		})
	}
}

// BenchmarkArtifact serves a 64 MiB artifact: whole and as 4 MiB Range
// requests from the site (authenticated, group lock, bundle check), beside
// http.FileServer on the same file and a plain read of it from disk, in the
// same run. MB/s is the rate a client receives.
func BenchmarkArtifact(b *testing.B) {
	const size = 64 << 20
	s := newBenchSite(b, size)
	fsrv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(s.path))))
	defer fsrv.Close()
	plain := fsrv.URL + "/" + filepath.Base(s.path)
	const chunk = 4 << 20
	for _, tc := range []struct {
		name, url, token string
		ranged           bool
	}{
		{"SiteWhole", s.url + s.blob, s.token, false},
		{"FileServerWhole", plain, "", false},
		{"SiteRange4MiB", s.url + s.blob, s.token, true},
		{"FileServerRange4MiB", plain, "", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := client()
			var n int64
			for i := 0; i < b.N; i++ {
				rng := ""
				if tc.ranged {
					off := int64(i%(size/chunk)) * chunk
					rng = fmt.Sprintf("bytes=%d-%d", off, off+chunk-1)
				}
				n += get(b, c, tc.url, tc.token, rng)
			}
			b.SetBytes(n / int64(max(1, b.N)))
		})
	}
	b.Run("DiskRead", func(b *testing.B) {
		buf := make([]byte, 1<<20)
		for i := 0; i < b.N; i++ {
			f, err := os.Open(s.path)
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.CopyBuffer(io.Discard, onlyReader{f}, buf)
			f.Close()
			b.SetBytes(n)
		}
	})
}

// onlyReader hides WriterTo/ReaderFrom so the copy really reads the file.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
