package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

// siteUpgrades stands in for the license server's upgrade endpoint at the
// edge of these tests: it issues real licenses from the fixture's site.
type siteUpgrades struct {
	f       *fixture
	calls   atomic.Int64
	mu      sync.Mutex
	got     [][]byte // the license PEMs it was asked to upgrade
	fail    error    // answer this instead
	version string   // of the new license; default 3.0
	rekey   bool     // issue the new license to another key (a broken server)
	delay   time.Duration
	panics  bool             // panic instead of answering
	now     func() time.Time // the clock of the new licenses; default time.Now
}

func (s *siteUpgrades) upgrade(ctx context.Context, licensePEM []byte) (*gateway.Upgraded, error) {
	s.calls.Add(1)
	s.mu.Lock()
	s.got = append(s.got, licensePEM)
	s.mu.Unlock()
	time.Sleep(s.delay)
	if s.panics {
		panic("upgrade function failed")
	}
	if s.fail != nil {
		return nil, s.fail
	}
	blk, _ := pem.Decode(licensePEM)
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	old, err := s.f.v.VerifyChain([][]byte{blk.Bytes, s.f.site.Cert.Raw}, verify.Options{Now: now(), AllowExpired: true, AllowUnbound: true})
	if err != nil {
		return nil, err
	}
	pub := old.ClientKey
	attrs := old.Attributes
	if s.rekey {
		pub, _, _ = ed25519.GenerateKey(nil)
		attrs.ClientID = verify.ClientID(pub)
	}
	attrs.LicenseID, attrs.ProductVersion, attrs.Flags = old.LicenseID+1000, "3.0", verify.FlagUpgraded
	if s.version != "" {
		attrs.ProductVersion = s.version
	}
	der, err := license.Issue(s.f.site, pub, attrs, now().Add(-time.Minute), now().Add(30*24*time.Hour))
	if err != nil {
		return nil, err
	}
	return &gateway.Upgraded{Chain: [][]byte{der, s.f.site.Cert.Raw}, File: []byte("sealed license " + attrs.ClientID)}, nil
}

func upgradeOptions(s *siteUpgrades, minVersion string) gateway.Options {
	o := options()
	o.Upgrade, o.MinVersion = s.upgrade, minVersion
	return o
}

// TestUpgradeExpiredMutualTLS: an expired license presented as the TLS
// client certificate is exchanged once; the request goes through with the
// new license's identity and the client gets the new file.
func TestUpgradeExpiredMutualTLS(t *testing.T) {
	e := newEnv(t)
	s := &siteUpgrades{f: e.f, delay: 50 * time.Millisecond}
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), upgradeOptions(s, "")), gateway.TLSConfig())
	c := e.f.newClient(t, appAttrs(12), e.now.Add(-48*time.Hour), e.now.Add(-time.Hour))
	cert := c.certificate()

	// Eight requests at once with the same expired license: one exchange.
	var wg sync.WaitGroup
	answers := make([]answer, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
			answers[i] = do(t, httpClient(gw, &cert), req)
		}()
	}
	wg.Wait()
	for i, a := range answers {
		if a.status != http.StatusOK {
			t.Fatalf("request %d with an expired license and an upgrade available: %d %s", i, a.status, a.msg)
		}
		if got := a.header.Get(gateway.HeaderLicenseUpdate); got != answers[0].header.Get(gateway.HeaderLicenseUpdate) {
			t.Fatalf("request %d: %s = %q, request 0 got %q", i, gateway.HeaderLicenseUpdate, got, answers[0].header.Get(gateway.HeaderLicenseUpdate))
		}
	}
	// The header names the file; anyone may fetch it (it is sealed to the client).
	update := answers[0].header.Get(gateway.HeaderLicenseUpdate)
	if !strings.HasPrefix(update, gateway.LicenseUpdatePath) || len(update) != len(gateway.LicenseUpdatePath)+64 {
		t.Fatalf("%s = %q, want %s and 64 hex digits", gateway.HeaderLicenseUpdate, update, gateway.LicenseUpdatePath)
	}
	req, _ := http.NewRequest("GET", gw.URL+update, nil)
	if a := do(t, httpClient(gw, nil), req); a.status != http.StatusOK || string(a.body) != "sealed license "+c.id {
		t.Fatalf("GET %s: %d %q", update, a.status, a.body)
	}
	req, _ = http.NewRequest("GET", gw.URL+gateway.LicenseUpdatePath+strings.Repeat("0", 64), nil)
	if a := do(t, httpClient(gw, nil), req); a.status != http.StatusNotFound {
		t.Fatalf("GET of an unknown update: %d", a.status)
	}
	req, _ = http.NewRequest("POST", gw.URL+update, nil)
	if a := do(t, httpClient(gw, nil), req); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST of an update: %d", a.status)
	}
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("%d exchanges with the license server for one license, want 1", n)
	}
	if !bytes.Equal(s.got[0], c.licPEM) {
		t.Fatalf("the gateway asked to upgrade\n%s\nnot the presented license\n%s", s.got[0], c.licPEM)
	}
	_, h, _ := e.up.seen()
	if h.Get(gateway.HeaderLicenseID) != "1012" || h.Get(gateway.HeaderVersion) != "3.0" || h.Get(gateway.HeaderClientID) != c.id {
		t.Fatalf("upstream saw license %q version %q client %q, want the upgraded license 1012, 3.0, %s",
			h.Get(gateway.HeaderLicenseID), h.Get(gateway.HeaderVersion), h.Get(gateway.HeaderClientID), c.id)
	}
	// Later requests with the old license reuse the exchange.
	req, _ = http.NewRequest("GET", gw.URL+"/x", nil)
	if a := do(t, httpClient(gw, &cert), req); a.status != http.StatusOK || s.calls.Load() != 1 {
		t.Fatalf("old license again: %d, %d exchanges", a.status, s.calls.Load())
	}
	// Without Upgrade the same license is simply refused.
	plain := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), options()), gateway.TLSConfig())
	req, _ = http.NewRequest("GET", plain.URL+"/x", nil)
	wantRefused(t, do(t, httpClient(plain, &cert), req), "license_expired")
}

// TestUpgradeNeedsProofOfKey: an expired license in a signed request is
// exchanged only when the request is signed by the license's key, fresh.
func TestUpgradeNeedsProofOfKey(t *testing.T) {
	e := newEnv(t)
	s := &siteUpgrades{f: e.f}
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), upgradeOptions(s, "")), nil)
	hc := httpClient(gw, nil)
	victim := e.f.newClient(t, appAttrs(20), e.now.Add(-48*time.Hour), e.now.Add(-time.Hour))
	thief := e.f.newClient(t, appAttrs(21), e.now.Add(-time.Hour), e.now.Add(time.Hour))

	// The victim's expired license, signed with the thief's key.
	stolen := *thief
	stolen.licPEM = victim.licPEM
	wantRefused(t, do(t, hc, signed(t, &stolen, "GET", gw.URL+"/x", nil, time.Now())), "wrong_client")
	// Signed by the victim's key, but the request was altered on the way.
	req := signed(t, victim, "GET", gw.URL+"/x", nil, time.Now())
	req.URL.Path = "/admin"
	wantRefused(t, do(t, hc, req), "invalid_signature")
	// Signed too long ago.
	wantRefused(t, do(t, hc, signed(t, victim, "GET", gw.URL+"/x", nil, time.Now().Add(-10*time.Minute))), "stale_request")
	if n := s.calls.Load(); n != 0 {
		t.Fatalf("%d exchanges without proof of the license's key, want 0", n)
	}

	// Properly signed: exchanged, and a replay of that request is refused.
	req = signed(t, victim, "POST", gw.URL+"/x", []byte("job"), time.Now())
	replay := req.Clone(req.Context())
	a := do(t, hc, req)
	if a.status != http.StatusOK || a.header.Get(gateway.HeaderLicenseUpdate) == "" || s.calls.Load() != 1 {
		t.Fatalf("signed request with an expired license: %d %s, %d exchanges", a.status, a.msg, s.calls.Load())
	}
	replay.Body, replay.ContentLength = io.NopCloser(strings.NewReader("job")), 3
	wantRefused(t, do(t, hc, replay), "replayed_request")
}

// TestUpgradeMinVersion: a valid license for a version older than
// MinVersion is refused as old_version, or upgraded.
func TestUpgradeMinVersion(t *testing.T) {
	e := newEnv(t)
	cert := e.c.certificate() // version 2.1

	// No upgrades configured: refused, saying which version is needed.
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), func() gateway.Options { o := options(); o.MinVersion = "3.0"; return o }()), gateway.TLSConfig())
	req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
	a := do(t, httpClient(gw, &cert), req)
	wantRefused(t, a, "old_version")
	if !strings.Contains(a.msg, "version 2.1") || !strings.Contains(a.msg, "3.0 or newer") {
		t.Errorf("old_version message: %s", a.msg)
	}
	// Versions compare part by part: 2.10 is older than 3.0, 3.0.0 is not.
	for v, want := range map[string]int{"2.10": http.StatusUnauthorized, "3.0.0": http.StatusOK, "10.0": http.StatusOK} {
		attrs := appAttrs(30)
		attrs.ProductVersion = v
		c := e.f.newClient(t, attrs, e.now.Add(-time.Hour), e.now.Add(time.Hour))
		cc := c.certificate()
		req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
		if a := do(t, httpClient(gw, &cc), req); a.status != want {
			t.Errorf("license for version %s with minimum 3.0: %d, want %d", v, a.status, want)
		}
	}

	// The license server has no upgrade seat: refused with its reason, and
	// the failure is remembered rather than asked again at once.
	s := &siteUpgrades{f: e.f, fail: errors.New("no upgrade seat of app for platform linux-amd64 from version 2.1")}
	gw = e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), upgradeOptions(s, "3.0")), gateway.TLSConfig())
	for range 3 {
		req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
		a := do(t, httpClient(gw, &cert), req)
		wantRefused(t, a, "old_version")
		if !strings.Contains(a.msg, "no upgrade seat") {
			t.Errorf("refusal does not pass on the license server's reason: %s", a.msg)
		}
	}
	if n := s.calls.Load(); n != 1 {
		t.Errorf("%d exchanges after a failure within 30 s, want 1", n)
	}

	// With Options.UpgradeSeats, the failure is forgotten as soon as the
	// license server's upgrade seats change (asked at most every
	// UpgradeSeatsPoll, and only while a remembered failure is refused).
	var (
		shift   atomic.Int64 // the gateway's clock, ahead of time.Now
		failing atomic.Bool
		seats   atomic.Value
		asked   atomic.Int64
	)
	failing.Store(true)
	seats.Store("v1")
	good := &siteUpgrades{f: e.f}
	var exchanges atomic.Int64
	o := options()
	o.MinVersion = "3.0"
	o.Now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	o.Upgrade = func(ctx context.Context, licensePEM []byte) (*gateway.Upgraded, error) {
		exchanges.Add(1)
		if failing.Load() {
			return nil, errors.New("no upgrade seat of app for platform linux-amd64 from version 2.1")
		}
		return good.upgrade(ctx, licensePEM)
	}
	o.UpgradeSeats = func(context.Context) (string, error) { asked.Add(1); return seats.Load().(string), nil }
	gw = e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), o), gateway.TLSConfig())
	get := func() answer {
		req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
		return do(t, httpClient(gw, &cert), req)
	}
	for range 3 {
		wantRefused(t, get(), "old_version")
	}
	if exchanges.Load() != 1 || asked.Load() != 1 {
		t.Errorf("within the poll interval: %d exchanges and %d questions about the seats, want 1 and 1", exchanges.Load(), asked.Load())
	}
	shift.Store(int64(gateway.UpgradeSeatsPoll + time.Second)) // seats unchanged: still remembered
	wantRefused(t, get(), "old_version")
	if exchanges.Load() != 1 || asked.Load() != 2 {
		t.Errorf("seats unchanged after the poll interval: %d exchanges and %d questions, want 1 and 2", exchanges.Load(), asked.Load())
	}
	failing.Store(false) // upgrade seats bought
	seats.Store("v2")
	shift.Store(int64(2*gateway.UpgradeSeatsPoll + 2*time.Second))
	if a := get(); a.status != http.StatusOK || a.header.Get(gateway.HeaderLicenseUpdate) == "" {
		t.Fatalf("after the upgrade seats changed (well within 30 s): %d %s", a.status, a.msg)
	}
	if exchanges.Load() != 2 {
		t.Errorf("%d exchanges, want 2", exchanges.Load())
	}

	// With an upgrade: through, as 3.0.
	s = &siteUpgrades{f: e.f}
	gw = e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), upgradeOptions(s, "3.0")), gateway.TLSConfig())
	req, _ = http.NewRequest("GET", gw.URL+"/x", nil)
	if a := do(t, httpClient(gw, &cert), req); a.status != http.StatusOK || a.header.Get(gateway.HeaderLicenseUpdate) == "" {
		t.Fatalf("upgrade of a 2.1 license: %d %s", a.status, a.msg)
	}
}

// TestUpgradeBadAnswer: what the license server returns is checked like any
// license: another client's key, or a version still too old, is refused.
func TestUpgradeBadAnswer(t *testing.T) {
	e := newEnv(t)
	cert := e.c.certificate()
	for _, tc := range []struct {
		name, reason string
		s            *siteUpgrades
	}{
		{"another key", "invalid_license", &siteUpgrades{f: e.f, rekey: true}},
		{"still old", "old_version", &siteUpgrades{f: e.f, version: "2.9"}},
	} {
		gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), upgradeOptions(tc.s, "3.0")), gateway.TLSConfig())
		req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
		a := do(t, httpClient(gw, &cert), req)
		wantRefused(t, a, tc.reason)
		if a.header.Get(gateway.HeaderLicenseUpdate) != "" || tc.s.calls.Load() != 1 {
			t.Errorf("%s: update header %q after %d exchanges; want none after 1", tc.name, a.header.Get(gateway.HeaderLicenseUpdate), tc.s.calls.Load())
		}
	}
	if hits, _, _ := e.up.seen(); hits != 0 {
		t.Errorf("the upstream saw %d requests", hits)
	}
}

// TestUpgradePanics: a panicking Options.Upgrade does not leave requests
// waiting forever; later requests with that license are refused.
func TestUpgradePanics(t *testing.T) {
	e := newEnv(t)
	s := &siteUpgrades{f: e.f, panics: true}
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), upgradeOptions(s, "")), gateway.TLSConfig())
	c := e.f.newClient(t, appAttrs(40), e.now.Add(-48*time.Hour), e.now.Add(-time.Hour))
	cert := c.certificate()
	req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
	if resp, err := httpClient(gw, &cert).Do(req); err == nil { // net/http drops the connection of a panicking handler
		resp.Body.Close()
		t.Fatalf("the request whose exchange panicked was answered %s", resp.Status)
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
		done <- do(t, httpClient(gw, &cert), req)
	}()
	select {
	case a := <-done:
		wantRefused(t, a, "license_expired")
	case <-time.After(5 * time.Second):
		t.Fatal("a request with the same license hangs after the exchange panicked")
	}
}

// TestUpgradeExchangeReasonBounded: the reason OnExchange gets for a license
// server's refusal (a metrics label) is its error code only when that is
// one of licet's few codes; any other code the answer carries is "refused",
// so an answer cannot grow the gateway's /metrics without bound.
func TestUpgradeExchangeReasonBounded(t *testing.T) {
	for _, tc := range []struct{ code, want string }{
		{"exhausted", "exhausted"},
		{"no-such-code-7f3a9c", "refused"},
		{"", "refused"},
	} {
		e := newEnv(t)
		cert := e.c.certificate()
		var mu sync.Mutex
		var got []string
		o := options()
		o.MinVersion = "3.0"
		o.Upgrade = func(context.Context, []byte) (*gateway.Upgraded, error) {
			return nil, &gateway.SiteRefusal{Status: http.StatusConflict, Code: tc.code, Message: "no upgrade seat"}
		}
		o.OnExchange = func(reason string) { mu.Lock(); got = append(got, reason); mu.Unlock() }
		gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), o), gateway.TLSConfig())
		req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
		wantRefused(t, do(t, httpClient(gw, &cert), req), "old_version")
		mu.Lock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("site code %q: OnExchange got %q, want [%s]", tc.code, got, tc.want)
		}
		mu.Unlock()
	}
}

// TestUpgradeSeatsUnreachableLogged: when the license server cannot say
// whether its upgrade seats changed (an older site without GET
// /v1/upgrades/seats, a token refused), the gateway logs it, since failed
// exchanges are then remembered the full 30 s instead of up to 2 s.
func TestUpgradeSeatsUnreachableLogged(t *testing.T) {
	e := newEnv(t)
	cert := e.c.certificate()
	var logged bytes.Buffer
	var mu sync.Mutex
	o := options()
	o.MinVersion = "3.0"
	o.Log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logged}, nil))
	o.Upgrade = func(context.Context, []byte) (*gateway.Upgraded, error) {
		return nil, &gateway.SiteRefusal{Status: http.StatusConflict, Code: "exhausted", Message: "no upgrade seat"}
	}
	o.UpgradeSeats = func(context.Context) (string, error) {
		return "", errors.New("the license server answered 404 Not Found")
	}
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), o), gateway.TLSConfig())
	req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
	wantRefused(t, do(t, httpClient(gw, &cert), req), "old_version")
	mu.Lock()
	defer mu.Unlock()
	if out := logged.String(); !strings.Contains(out, "upgrade seats") || !strings.Contains(out, "404 Not Found") || !strings.Contains(out, "30 s") {
		t.Fatalf("the gateway did not log that it could not ask for the upgrade seats:\n%s", out)
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
