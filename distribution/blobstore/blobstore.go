// Package blobstore keeps artifacts in a directory by SHA-256 and fetches
// them over HTTP with Range resume. A file appears under its hash only
// after its bytes were streamed through SHA-256 and matched, so a reader
// never sees a partial or tampered artifact; a download interrupted half
// way resumes from the bytes already on disk.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/licet/licet/errs"
)

// ErrMismatch marks bytes whose length or SHA-256 differ from what was expected.
var ErrMismatch = errors.New("artifact does not match its signed hash")

// Dir is a content-addressed directory: ROOT/ab/abcdef… for each SHA-256.
type Dir string

func checkSHA(sha string) error {
	if b, err := hex.DecodeString(sha); err != nil || len(b) != sha256.Size || hex.EncodeToString(b) != sha {
		return errs.E(errs.Invalid, "sha256 %q is not 64 lower-case hexadecimal digits", sha)
	}
	return nil
}

// Path is where the blob with this SHA-256 is kept.
func (d Dir) Path(sha string) string { return filepath.Join(string(d), sha[:2], sha) }

func (d Dir) partPath(sha string) string { return filepath.Join(string(d), "partial", sha+".part") }

// Has reports whether the blob is stored with the given size.
func (d Dir) Has(sha string, size int64) bool {
	if checkSHA(sha) != nil {
		return false
	}
	fi, err := os.Stat(d.Path(sha))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// Put streams r into the store as the blob sha of size bytes, checking both.
func (d Dir) Put(r io.Reader, sha string, size int64) error {
	if err := checkSHA(sha); err != nil {
		return err
	}
	part := d.partPath(sha)
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		return errs.Wrap(errs.Internal, err, "create %s", filepath.Dir(part))
	}
	f, err := os.Create(part)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "create %s", part)
	}
	n, err := io.Copy(f, io.LimitReader(r, size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(part)
		return errs.Wrap(errs.Internal, err, "write %s", part)
	}
	if n != size {
		os.Remove(part)
		return errs.Wrap(errs.Invalid, ErrMismatch, "blob %s has %d bytes, its metadata says %d", sha, n, size)
	}
	return d.commit(sha, size)
}

// commit hashes the complete partial file and moves it under its hash.
func (d Dir) commit(sha string, size int64) error {
	part := d.partPath(sha)
	got, n, err := HashFile(part)
	if err != nil {
		return err
	}
	if n != size || got != sha {
		os.Remove(part)
		return errs.Wrap(errs.Invalid, ErrMismatch, "downloaded artifact has %d bytes with SHA-256 %s, the signed metadata says %d bytes with %s: it was tampered with or corrupted; it was deleted", n, got, size, sha)
	}
	dst := d.Path(sha)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return errs.Wrap(errs.Internal, err, "create %s", filepath.Dir(dst))
	}
	if err := os.Rename(part, dst); err != nil {
		return errs.Wrap(errs.Internal, err, "store %s", dst)
	}
	return nil
}

// HashFile streams a file through SHA-256.
func HashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, errs.Wrap(errs.Internal, err, "open %s", path)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, errs.Wrap(errs.Internal, err, "read %s", path)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Progress is told the bytes on disk and the total after every write.
type Progress func(done, total int64)

// Fetch downloads the blob sha of size bytes with GET requests that
// newReq makes, resuming with a Range header from a partial file left by an
// interrupted download, and stores it once its hash matches. Bytes over
// size are never read.
func (d Dir) Fetch(ctx context.Context, client *http.Client, newReq func(ctx context.Context) (*http.Request, error), sha string, size int64, progress Progress) error {
	if err := checkSHA(sha); err != nil {
		return err
	}
	if d.Has(sha, size) {
		return nil
	}
	part := d.partPath(sha)
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		return errs.Wrap(errs.Internal, err, "create %s", filepath.Dir(part))
	}
	var have int64
	if fi, err := os.Stat(part); err == nil {
		have = fi.Size()
		if have > size {
			os.Remove(part)
			have = 0
		}
	}
	if have < size {
		req, err := newReq(ctx)
		if err != nil {
			return err
		}
		if have > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		}
		resp, err := client.Do(req)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "download %s: the server is unreachable; run again to resume from byte %d", sha[:12], have)
		}
		defer resp.Body.Close()
		flags := os.O_WRONLY | os.O_CREATE
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
			start, total, ok := contentRange(resp.Header.Get("Content-Range"))
			if !ok || start != have {
				return errs.E(errs.Internal, "download %s: server answered range %q to a request from byte %d", sha[:12], resp.Header.Get("Content-Range"), have)
			}
			if total >= 0 && total != size {
				os.Remove(part)
				return errs.Wrap(errs.Invalid, ErrMismatch, "download %s: the server's artifact has %d bytes, the signed metadata says %d: it was tampered with or is another file", sha[:12], total, size)
			}
			flags |= os.O_APPEND
		case resp.StatusCode == http.StatusOK:
			if resp.ContentLength >= 0 && resp.ContentLength != size {
				os.Remove(part)
				return errs.Wrap(errs.Invalid, ErrMismatch, "download %s: the server's artifact has %d bytes, the signed metadata says %d: it was tampered with or is another file", sha[:12], resp.ContentLength, size)
			}
			flags |= os.O_TRUNC
			have = 0
		default:
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return errs.E(errs.KindFromCode(codeOf(resp.StatusCode)), "download %s: HTTP %d: %s", sha[:12], resp.StatusCode, strings.TrimSpace(string(msg)))
		}
		f, err := os.OpenFile(part, flags, 0o644)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "open %s", part)
		}
		w := io.Writer(f)
		if progress != nil {
			w = &progressWriter{w: f, done: have, total: size, fn: progress}
		}
		n, err := io.Copy(w, io.LimitReader(resp.Body, size-have))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return errs.Wrap(errs.Internal, err, "download %s interrupted after %d bytes; run again to resume", sha[:12], have+n)
		}
		if have+n < size {
			return errs.E(errs.Internal, "download %s stopped at %d of %d bytes; run again to resume", sha[:12], have+n, size)
		}
	}
	return d.commit(sha, size)
}

func codeOf(status int) string {
	switch status {
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusNotFound:
		return "not_found"
	}
	return "internal"
}

// contentRange parses "bytes START-END/TOTAL"; total is -1 for "*".
func contentRange(cr string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(cr, "bytes ")
	if !found {
		return 0, 0, false
	}
	span, tot, found := strings.Cut(rest, "/")
	a, _, found2 := strings.Cut(span, "-")
	start, err := strconv.ParseInt(a, 10, 64)
	if !found || !found2 || err != nil {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(tot, 10, 64)
	return start, total, err == nil
}

type progressWriter struct {
	w           io.Writer
	done, total int64
	fn          Progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}

// Bar returns a Progress that draws a one-line bar on w (a terminal).
func Bar(w io.Writer, name string) Progress {
	last := int64(-1)
	return func(done, total int64) {
		pct := done * 100 / max(total, 1)
		if pct == last {
			return
		}
		last = pct
		fill := int(pct / 5)
		fmt.Fprintf(w, "\r%s [%s%s] %3d%% %d/%d bytes", name, strings.Repeat("#", fill), strings.Repeat(" ", 20-fill), pct, done, total)
		if done >= total {
			fmt.Fprintln(w)
		}
	}
}
