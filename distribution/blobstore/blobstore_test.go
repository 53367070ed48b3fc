package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func shaOf(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// server serves data, honouring Range unless ignoreRange, and records the
// Range headers it saw.
func server(t *testing.T, data []byte, ignoreRange bool, ranges *[]string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*ranges = append(*ranges, r.Header.Get("Range"))
		if ignoreRange {
			r.Header.Del("Range")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(s.Close)
	return s
}

func fetch(d Dir, url, sha string, size int64) error {
	return d.Fetch(context.Background(), http.DefaultClient, func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, "GET", url, nil)
	}, sha, size, nil)
}

// TestFetchResume: a partial file resumes with a Range request from its
// length; a server that ignores Range sends the whole file again, which
// replaces the partial one; the result is stored under its hash.
func TestFetchResume(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefgh"), 10000)
	sha := shaOf(data)
	for _, ignore := range []bool{false, true} {
		d := Dir(t.TempDir())
		os.MkdirAll(filepath.Dir(d.partPath(sha)), 0o755)
		os.WriteFile(d.partPath(sha), data[:30000], 0o644)
		var ranges []string
		s := server(t, data, ignore, &ranges)
		if err := fetch(d, s.URL, sha, int64(len(data))); err != nil {
			t.Fatalf("ignore=%v: %v", ignore, err)
		}
		if len(ranges) != 1 || ranges[0] != "bytes=30000-" {
			t.Fatalf("ranges %q", ranges)
		}
		got, _ := os.ReadFile(d.Path(sha))
		if !bytes.Equal(got, data) || !d.Has(sha, int64(len(data))) {
			t.Fatalf("ignore=%v: stored blob differs", ignore)
		}
	}
}

// TestFetchMismatch: bytes that do not hash to the expected value are
// refused and deleted, and so is an answer of another length than the
// signed one; a partial file that is longer than the blob starts over.
func TestFetchMismatch(t *testing.T) {
	data := []byte("genuine bytes")
	d := Dir(t.TempDir())
	var ranges []string
	s := server(t, []byte("evil! bytes.."), false, &ranges)
	err := fetch(d, s.URL, shaOf(data), int64(len(data)))
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := os.Stat(d.partPath(shaOf(data))); !os.IsNotExist(err) {
		t.Fatal("tampered partial file kept")
	}
	s2 := server(t, append(append([]byte{}, data...), "trailing"...), false, &ranges)
	if err := fetch(d, s2.URL, shaOf(data), int64(len(data))); !errors.Is(err, ErrMismatch) {
		t.Fatalf("an answer longer than the signed length: %v", err)
	}
	os.WriteFile(d.partPath(shaOf(data)), bytes.Repeat([]byte("x"), 100), 0o644)
	s3 := server(t, data, false, &ranges)
	if err := fetch(d, s3.URL, shaOf(data), int64(len(data))); err != nil {
		t.Fatalf("overlong partial file: %v", err)
	}
	if err := d.Put(strings.NewReader("short"), shaOf(data), int64(len(data))); !errors.Is(err, ErrMismatch) {
		t.Fatalf("put of other bytes: %v", err)
	}
	if err := d.Put(strings.NewReader(string(data)), "nothex", 1); err == nil {
		t.Fatal("put under a bad hash accepted")
	}
}
