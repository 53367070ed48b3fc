package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/verify"
)

// RevocationFeed keeps a gateway's copy of the vendor's signed list of
// revoked sites current: it reads the list from a file (which the
// administrator replaces with 'licet vendor site revocations --out FILE')
// or fetches it from the vendor (GET /v1/revoked-sites), checks it against
// the vendor root, and replaces its copy only with a list at least as new
// (an older list, which would forget revocations, is refused). Current is
// what Options.Revocations calls.
type RevocationFeed struct {
	v      *verify.Verifier
	source string // a file path, or an http(s) URL
	now    func() time.Time
	client *http.Client
	cur    atomic.Pointer[verify.Revocations]
}

// NewRevocationFeed loads the list from source (a file path, or the
// http:// or https:// URL of the vendor's GET /v1/revoked-sites) once; an
// error if it cannot be read, does not verify against v's root or is out of
// date: a gateway does not start without a usable list it was told to use.
func NewRevocationFeed(ctx context.Context, v *verify.Verifier, source string, now func() time.Time) (*RevocationFeed, error) {
	if now == nil {
		now = time.Now
	}
	f := &RevocationFeed{v: v, source: source, now: now, client: &http.Client{Timeout: 30 * time.Second}}
	if err := f.Refresh(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// Current returns the list in use.
func (f *RevocationFeed) Current() *verify.Revocations { return f.cur.Load() }

// Refresh reads the list again and uses it if it verifies and is not older
// than the one in use.
func (f *RevocationFeed) Refresh(ctx context.Context) error {
	raw, err := f.read(ctx)
	if err != nil {
		return err
	}
	l, err := f.v.ParseRevocations(raw, f.now())
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "the list of revoked sites from %s is not usable", f.source)
	}
	if old := f.cur.Load(); old != nil && (l.Number < old.Number || l.Issued.Before(old.Issued)) {
		return errs.E(errs.Conflict, "the list of revoked sites from %s (number %d, issued %s) is older than the one in use (number %d, issued %s); kept the one in use",
			f.source, l.Number, l.Issued.Format(time.RFC3339), old.Number, old.Issued.Format(time.RFC3339))
	}
	f.cur.Store(l)
	return nil
}

// read reads the list from the file or the URL, at most verify.MaxRevocationList
// bytes of it.
func (f *RevocationFeed) read(ctx context.Context) ([]byte, error) {
	var body io.Reader
	if !strings.HasPrefix(f.source, "http://") && !strings.HasPrefix(f.source, "https://") {
		file, err := os.Open(f.source)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "cannot read the list of revoked sites %s", f.source)
		}
		defer file.Close()
		body = file
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.source, nil)
		if err != nil {
			return nil, errs.Wrap(errs.Usage, err, "bad URL of the list of revoked sites %q", f.source)
		}
		resp, err := f.client.Do(req)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "cannot fetch the list of revoked sites from %s", f.source)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, errs.E(errs.Internal, "GET %s answered %s", f.source, resp.Status)
		}
		body = resp.Body
	}
	raw, err := io.ReadAll(io.LimitReader(body, verify.MaxRevocationList+1))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the list of revoked sites from %s", f.source)
	}
	if len(raw) > verify.MaxRevocationList {
		return nil, errs.E(errs.TooLarge, "the list of revoked sites from %s is over %d bytes; give the file 'licet vendor site revocations --out' writes", f.source, verify.MaxRevocationList)
	}
	return raw, nil
}

// Run refreshes the list every interval until ctx ends, logging failures
// (the list in use stays until it is out of date, then the gateway refuses
// requests with 503 until a refresh succeeds).
func (f *RevocationFeed) Run(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := f.Refresh(ctx); err != nil {
			l := f.Current()
			log.Warn("could not refresh the list of revoked sites", "source", f.source, "err", err,
				"in_use", fmt.Sprintf("number %d, usable until %s", l.Number, l.UsableUntil().Format(time.RFC3339)))
		}
	}
}
