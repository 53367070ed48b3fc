package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

// TestRevokedSiteRefused: with a revocation list, the license of a revoked
// site is refused (site_revoked) even when the gateway verified and cached
// it before the list named the site; while the list is out of date, every
// request gets 503 instead of passing; a feed keeps a newer list over an
// older one.
func TestRevokedSiteRefused(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	f := newFixture(t, start.Add(-72*time.Hour))
	c := f.newClient(t, appAttrs(7), start.Add(-time.Hour), start.Add(30*24*time.Hour))
	ch := testpki.Clearinghouse(t, f.root, start.Add(-72*time.Hour))
	sign := func(l *verify.Revocations) []byte {
		s, err := envelope.Sign(verify.RevokedSitesType, verify.RevokedSitesVersion, l, ch.Signer, [][]byte{ch.Cert.Raw})
		if err != nil {
			t.Fatal(err)
		}
		return s.Marshal()
	}
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	dir := t.TempDir()
	file := filepath.Join(dir, "revoked.json")
	empty := &verify.Revocations{Vendor: "Acme", Issued: start.Add(-time.Minute), NextUpdate: start.Add(24 * time.Hour), Sites: []verify.RevokedSite{}}
	os.WriteFile(file, sign(empty), 0o644)
	feed, err := gateway.NewRevocationFeed(t.Context(), f.v, file, now)
	if err != nil {
		t.Fatal(err)
	}
	opts := options()
	opts.Now, opts.Revocations = now, feed.Current
	h := gateway.Middleware(f.v, opts)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	send := func() *httptest.ResponseRecorder {
		req := signed(t, c, "GET", "http://app.example.com/x", nil, now())
		req.RequestURI = "/x"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := send(); rec.Code != http.StatusOK {
		t.Fatalf("with an empty list: %d %s", rec.Code, rec.Body)
	}

	revoked := &verify.Revocations{Vendor: "Acme", Number: 1, Issued: start, NextUpdate: start.Add(24 * time.Hour),
		Sites: []verify.RevokedSite{{SiteID: f.site.Cert.Subject.SerialNumber, CustomerID: "cust-1", Revoked: start, Reason: "test"}}}
	os.WriteFile(file, sign(revoked), 0o644)
	if err := feed.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := send()
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="site_revoked"`) {
		t.Fatalf("cached license of a site revoked since: %d %s %s", rec.Code, rec.Header(), rec.Body)
	}

	// The older, empty list is not taken back.
	os.WriteFile(file, sign(empty), 0o644)
	if err := feed.Refresh(t.Context()); err == nil || feed.Current().Number != 1 {
		t.Fatalf("an older list replaced the newer one: %v, number %d", err, feed.Current().Number)
	}

	// Past next update and grace: 503, not a pass.
	clock.Store(start.Add(24*time.Hour + verify.RevocationGrace + time.Second).UnixNano())
	other := f.newClient(t, appAttrs(8), start.Add(-time.Hour), start.Add(30*24*time.Hour))
	c = other
	rec = send()
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "out of date") {
		t.Fatalf("with a stale list: %d %s", rec.Code, rec.Body)
	}
}

// TestRevokedUpgradeSite: a license the gateway got in an upgrade exchange
// (and keeps for the client's next requests) is refused once the list names
// the site that issued it, though the client's own license comes from a
// site in good standing.
func TestRevokedUpgradeSite(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	f := newFixture(t, start.Add(-72*time.Hour))
	other := newSite(t, f.root, "Acme Site Paris", start.Add(-72*time.Hour))
	c := f.newClient(t, appAttrs(7), start.Add(-time.Hour), start.Add(30*24*time.Hour)) // version 2.1
	upgrade := func(ctx context.Context, licensePEM []byte) (*gateway.Upgraded, error) {
		attrs := appAttrs(1007)
		attrs.ProductVersion, attrs.Flags = "3.0", verify.FlagUpgraded
		der, err := license.Issue(other, c.key.Public(), attrs, start.Add(-time.Minute), start.Add(30*24*time.Hour))
		if err != nil {
			return nil, err
		}
		return &gateway.Upgraded{Chain: [][]byte{der, other.Cert.Raw}, File: []byte("sealed license")}, nil
	}
	var list atomic.Pointer[verify.Revocations]
	list.Store(&verify.Revocations{Vendor: "Acme", Issued: start.Add(-time.Minute), NextUpdate: start.Add(24 * time.Hour)})
	opts := options()
	opts.Now = func() time.Time { return start }
	opts.Upgrade, opts.MinVersion, opts.Revocations = upgrade, "3.0", list.Load
	h := gateway.Middleware(f.v, opts)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	send := func() *httptest.ResponseRecorder {
		req := signed(t, c, "GET", "http://app.example.com/x", nil, start)
		req.RequestURI = "/x"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := send(); rec.Code != http.StatusOK || rec.Header().Get(gateway.HeaderLicenseUpdate) == "" {
		t.Fatalf("upgrade before the revocation: %d %s %s", rec.Code, rec.Header(), rec.Body)
	}
	list.Store(&verify.Revocations{Vendor: "Acme", Number: 1, Issued: start, NextUpdate: start.Add(24 * time.Hour),
		Sites: []verify.RevokedSite{{SiteID: other.Cert.Subject.SerialNumber, CustomerID: "cust-1", Revoked: start, Reason: "test"}}})
	rec := send()
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="site_revoked"`) {
		t.Fatalf("the kept upgraded license of a site revoked since: %d %s %s", rec.Code, rec.Header(), rec.Body)
	}
}

// TestRevocationFileTooLarge: a --revocations file over the size limit is
// refused as too large before it is read whole (the URL source already was).
func TestRevocationFileTooLarge(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Hour))
	file := filepath.Join(t.TempDir(), "revoked.json")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 16<<20+1); err != nil { // sparse: no 16 MiB written
		t.Fatal(err)
	}
	_, err := gateway.NewRevocationFeed(t.Context(), f.v, file, time.Now)
	if !errs.Is(err, errs.TooLarge) || !strings.Contains(err.Error(), "over 16777216 bytes") {
		t.Fatalf("a 16 MiB + 1 revocation file: got %v, want a TooLarge error naming the limit", err)
	}
}
