package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/verify"
)

// legacyEnv is a gateway with a legacy license store in front of an
// upstream, on a clock the test moves.
type legacyEnv struct {
	*env
	dir   string
	store *gateway.LegacyStore
	clock atomic.Int64 // unix nanoseconds
	hc    *http.Client
	// upgrade and minVersion, if set, are the gateway's Options.Upgrade and
	// Options.MinVersion (set them, then restart).
	upgrade    func(ctx context.Context, licensePEM []byte) (*gateway.Upgraded, error)
	minVersion string
}

func (e *legacyEnv) now() time.Time { return time.Unix(0, e.clock.Load()) }

func newLegacyEnv(t *testing.T) *legacyEnv {
	t.Helper()
	e := &legacyEnv{env: newEnv(t), dir: filepath.Join(t.TempDir(), "legacy")}
	e.clock.Store(e.env.now.UnixNano())
	e.restart(t)
	return e
}

// restart serves a new gateway on a new LegacyStore over the same directory.
func (e *legacyEnv) restart(t *testing.T) {
	t.Helper()
	var err error
	if e.store, err = gateway.NewLegacyStore(e.dir); err != nil {
		t.Fatal(err)
	}
	opts := options()
	opts.Legacy, opts.Now = e.store, e.now
	opts.Upgrade, opts.MinVersion = e.upgrade, e.minVersion
	mux := http.NewServeMux()
	mux.Handle(gateway.LegacyPath, e.store.Handler(e.f.v, opts))
	mux.Handle("/", gateway.NewProxy(e.f.v, e.up.url(), opts))
	e.gw = e.f.startGateway(t, mux, nil)
	e.hc = httpClient(e.gw, nil)
}

// legacySigned makes a request signed by signer without a Licet-License header.
func (e *legacyEnv) legacySigned(t *testing.T, signer gateway.Signer, method, target string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, e.gw.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.SignLegacyRequest(req, body, signer, e.now()); err != nil {
		t.Fatal(err)
	}
	if req.Header.Get(gateway.HeaderLicense) != "" {
		t.Fatal("SignLegacyRequest left a Licet-License header")
	}
	return req
}

func (e *legacyEnv) deposit(t *testing.T, signer gateway.Signer, pem []byte) answer {
	t.Helper()
	return do(t, e.hc, e.legacySigned(t, signer, http.MethodPut, gateway.LegacyPath, pem))
}

// withKeyid replaces the keyid of req's signature (in Signature-Input).
func withKeyid(req *http.Request, keyid string) *http.Request {
	h := req.Header.Get(gateway.HeaderSignatureInput)
	req.Header.Set(gateway.HeaderSignatureInput, regexp.MustCompile(`keyid="[^"]*"`).ReplaceAllLiteralString(h, `keyid="`+keyid+`"`))
	return req
}

func TestLegacyDepositAndUse(t *testing.T) {
	e := newLegacyEnv(t)

	// Before the deposit: no license.
	wantRefused(t, do(t, e.hc, e.legacySigned(t, e.c.key, "GET", "/x", nil)), "license_required")

	a := e.deposit(t, e.c.key, e.c.licPEM)
	if a.status != http.StatusCreated || !strings.Contains(string(a.body), e.c.id) {
		t.Fatalf("deposit: %d %s", a.status, a.body)
	}
	fi, err := os.Stat(filepath.Join(e.dir, e.c.id))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("stored license has mode %v, want 0600", fi.Mode().Perm())
	}

	// Requests with only Licet-Signature reach the application as the client.
	body := []byte(`{"scene":"teapot"}`)
	a = do(t, e.hc, e.legacySigned(t, e.c.key, "POST", "/render?job=1", body))
	if a.status != http.StatusOK {
		t.Fatalf("legacy request: %d %s", a.status, a.msg)
	}
	hits, h, got := e.up.seen()
	if hits != 1 || !bytes.Equal(got, body) {
		t.Fatalf("upstream: %d hits, body %q", hits, got)
	}
	wantIdentity(t, h, e.c, "7", "render,export", "false")

	// GET shows the stored license.
	a = do(t, e.hc, e.legacySigned(t, e.c.key, "GET", gateway.LegacyPath, nil))
	if a.status != http.StatusOK || !bytes.Equal(a.body, e.c.licPEM) {
		t.Fatalf("GET %s: %d %q", gateway.LegacyPath, a.status, a.body)
	}

	// A new license of the same client replaces the stored one.
	e.c.issue(t, e.f.site, appAttrs(8), e.env.now.Add(-time.Hour), e.env.now.Add(10*24*time.Hour))
	if a = e.deposit(t, e.c.key, e.c.licPEM); a.status != http.StatusOK || !strings.Contains(string(a.body), `"replaced": true`) {
		t.Fatalf("second deposit: %d %s", a.status, a.body)
	}
	if a = do(t, e.hc, e.legacySigned(t, e.c.key, "GET", "/y", nil)); a.status != http.StatusOK {
		t.Fatalf("after replacement: %d %s", a.status, a.msg)
	}
	_, h, _ = e.up.seen()
	wantIdentity(t, h, e.c, "8", "render,export", "false")

	// A client with a license file is not affected by the store.
	c2 := e.f.newClient(t, appAttrs(9), e.env.now.Add(-time.Hour), e.env.now.Add(time.Hour))
	if a = do(t, e.hc, signed(t, c2, "GET", e.gw.URL+"/z", nil, e.now())); a.status != http.StatusOK {
		t.Fatalf("signed request with Licet-License: %d %s", a.status, a.msg)
	}
	// ...but without its license file and no deposit it has none.
	wantRefused(t, do(t, e.hc, e.legacySigned(t, c2.key, "GET", "/z", nil)), "license_required")

	// DELETE removes it; then the client has no license here.
	resp, err := e.hc.Do(e.legacySigned(t, e.c.key, "DELETE", gateway.LegacyPath, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	if _, err := os.Stat(filepath.Join(e.dir, e.c.id)); !os.IsNotExist(err) {
		t.Fatalf("stored license still there after DELETE: %v", err)
	}
	wantRefused(t, do(t, e.hc, e.legacySigned(t, e.c.key, "GET", "/x", nil)), "license_required")
	wantRefused(t, do(t, e.hc, e.legacySigned(t, e.c.key, "GET", gateway.LegacyPath, nil)), "license_required")

	// Other methods.
	req, _ := http.NewRequest("POST", e.gw.URL+gateway.LegacyPath, nil)
	if a = do(t, e.hc, req); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST %s: %d", gateway.LegacyPath, a.status)
	}
}

// TestLegacyStolenKeyid: a client cannot use another's stored license, nor
// deposit a license for a key it does not hold.
func TestLegacyStolenKeyid(t *testing.T) {
	e := newLegacyEnv(t)
	if a := e.deposit(t, e.c.key, e.c.licPEM); a.status != http.StatusCreated {
		t.Fatalf("deposit: %d %s", a.status, a.msg)
	}
	thief, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}

	// Signed by the thief's key, claiming the victim's client ID.
	wantRefused(t, do(t, e.hc, withKeyid(e.legacySigned(t, thief, "GET", "/x", nil), e.c.id)), "invalid_signature")
	// GET and DELETE of the victim's license likewise.
	wantRefused(t, do(t, e.hc, withKeyid(e.legacySigned(t, thief, "GET", gateway.LegacyPath, nil), e.c.id)), "invalid_signature")
	wantRefused(t, do(t, e.hc, withKeyid(e.legacySigned(t, thief, "DELETE", gateway.LegacyPath, nil), e.c.id)), "invalid_signature")

	// Depositing the victim's license (which is not secret): as itself, the
	// license is another client's; as the victim, the signature fails.
	wantRefused(t, e.deposit(t, thief, e.c.licPEM), "wrong_client")
	wantRefused(t, do(t, e.hc, withKeyid(e.legacySigned(t, thief, "PUT", gateway.LegacyPath, e.c.licPEM), e.c.id)), "invalid_signature")
	ents, _ := os.ReadDir(e.dir)
	if len(ents) != 1 || ents[0].Name() != e.c.id {
		t.Fatalf("legacy directory holds %v, want only %s", ents, e.c.id)
	}

	// The victim's own request still works: nothing was replaced.
	if a := do(t, e.hc, e.legacySigned(t, e.c.key, "GET", "/x", nil)); a.status != http.StatusOK {
		t.Fatalf("victim after the attempts: %d %s", a.status, a.msg)
	}
	_, h, _ := e.up.seen()
	wantIdentity(t, h, e.c, "7", "render,export", "false")

	// A license for another product cannot be deposited.
	other := appAttrs(20)
	other.ProductID = "other-app"
	c3 := e.f.newClient(t, other, e.env.now.Add(-time.Hour), e.env.now.Add(time.Hour))
	wantRefused(t, e.deposit(t, c3.key, c3.licPEM), "wrong_product")

	// Nor with a Licet-License header, nor an empty body.
	req := e.legacySigned(t, e.c.key, "PUT", gateway.LegacyPath, e.c.licPEM)
	req.Header.Set(gateway.HeaderLicense, "x")
	if a := do(t, e.hc, req); a.status != http.StatusBadRequest {
		t.Fatalf("deposit with Licet-License: %d %s", a.status, a.msg)
	}
	if a := e.deposit(t, e.c.key, nil); a.status != http.StatusBadRequest {
		t.Fatalf("empty deposit: %d %s", a.status, a.msg)
	}
}

// TestLegacyPathTraversal: the keyid names a file only in the exact form of a
// client ID.
func TestLegacyPathTraversal(t *testing.T) {
	e := newLegacyEnv(t)
	// A file the attacker would like to be read as a license.
	outside := filepath.Join(filepath.Dir(e.dir), "client-0000000000000000")
	os.WriteFile(outside, e.c.licPEM, 0o600)
	for _, keyid := range []string{
		"../client-0000000000000000",
		"client-../../etc/passwd",
		"client-0123456789ABCDEF", // upper case is not a client ID
		"client-0123456789abcde",
		"client-0123456789abcdef0",
		".tmp-client-0123456789abcdef",
		"client-0123456789abcdef/",
	} {
		wantRefused(t, do(t, e.hc, withKeyid(e.legacySigned(t, e.c.key, "GET", "/x", nil), keyid)), "invalid_signature")
		wantRefused(t, do(t, e.hc, withKeyid(e.legacySigned(t, e.c.key, "PUT", gateway.LegacyPath, e.c.licPEM), keyid)), "invalid_signature")
		wantRefused(t, do(t, e.hc, withKeyid(e.legacySigned(t, e.c.key, "DELETE", gateway.LegacyPath, nil), keyid)), "invalid_signature")
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("file outside the store: %v", err)
	}
	if ents, _ := os.ReadDir(e.dir); len(ents) != 0 {
		t.Fatalf("legacy directory holds %v", ents)
	}
}

func TestLegacyExpired(t *testing.T) {
	e := newLegacyEnv(t)
	c := e.f.newClient(t, appAttrs(30), e.env.now.Add(-time.Hour), e.env.now.Add(time.Hour))
	if a := e.deposit(t, c.key, c.licPEM); a.status != http.StatusCreated {
		t.Fatalf("deposit: %d %s", a.status, a.msg)
	}
	if a := do(t, e.hc, e.legacySigned(t, c.key, "GET", "/x", nil)); a.status != http.StatusOK {
		t.Fatalf("before expiry: %d %s", a.status, a.msg)
	}
	e.clock.Store(e.env.now.Add(2 * time.Hour).UnixNano())
	a := do(t, e.hc, e.legacySigned(t, c.key, "GET", "/x", nil))
	wantRefused(t, a, "license_expired")
	if !strings.Contains(a.msg, "deposit it again") || !strings.Contains(a.msg, siteURL) {
		t.Errorf("expired message does not say what to do: %s", a.msg)
	}
	// An expired license cannot be deposited; a new one can.
	wantRefused(t, e.deposit(t, c.key, c.licPEM), "license_expired")
	c.issue(t, e.f.site, appAttrs(31), e.env.now, e.env.now.Add(24*time.Hour))
	if a := e.deposit(t, c.key, c.licPEM); a.status != http.StatusOK {
		t.Fatalf("new deposit: %d %s", a.status, a.msg)
	}
	if a := do(t, e.hc, e.legacySigned(t, c.key, "GET", "/x", nil)); a.status != http.StatusOK {
		t.Fatalf("after the new deposit: %d %s", a.status, a.msg)
	}
}

func TestLegacyDepositReplay(t *testing.T) {
	e := newLegacyEnv(t)
	req := e.legacySigned(t, e.c.key, "PUT", gateway.LegacyPath, e.c.licPEM)
	replay := req.Clone(req.Context())
	if a := do(t, e.hc, req); a.status != http.StatusCreated {
		t.Fatalf("deposit: %d %s", a.status, a.msg)
	}
	replay.Body = io.NopCloser(bytes.NewReader(e.c.licPEM))
	wantRefused(t, do(t, e.hc, replay), "replayed_request")

	// A legacy request replayed likewise.
	req = e.legacySigned(t, e.c.key, "GET", "/x", nil)
	replay = req.Clone(req.Context())
	if a := do(t, e.hc, req); a.status != http.StatusOK {
		t.Fatalf("legacy request: %d %s", a.status, a.msg)
	}
	wantRefused(t, do(t, e.hc, replay), "replayed_request")
}

func TestLegacyRestart(t *testing.T) {
	e := newLegacyEnv(t)
	if a := e.deposit(t, e.c.key, e.c.licPEM); a.status != http.StatusCreated {
		t.Fatalf("deposit: %d %s", a.status, a.msg)
	}
	// A crashed deposit's temporary file is cleaned up at start.
	os.WriteFile(filepath.Join(e.dir, ".tmp-"+e.c.id+"-123"), []byte("half"), 0o600)
	e.restart(t)
	if a := do(t, e.hc, e.legacySigned(t, e.c.key, "GET", "/x", nil)); a.status != http.StatusOK {
		t.Fatalf("after restart: %d %s", a.status, a.msg)
	}
	_, h, _ := e.up.seen()
	wantIdentity(t, h, e.c, "7", "render,export", "false")
	if ents, _ := os.ReadDir(e.dir); len(ents) != 1 {
		t.Fatalf("legacy directory after restart holds %v", ents)
	}
}

// TestLegacyOff: without Options.Legacy a request with only a signature is
// refused as before.
func TestLegacyOff(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.gw.URL+"/x", nil)
	if err := gateway.SignLegacyRequest(req, nil, e.c.key, time.Now()); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, do(t, httpClient(e.gw, nil), req), "license_required")
}

// TestLegacyMiddleware: Middleware uses the store too, and LicenseFrom gives
// the stored license.
func TestLegacyMiddleware(t *testing.T) {
	f := newFixture(t, time.Now().Add(-time.Hour))
	c := f.newClient(t, appAttrs(40), time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	store, err := gateway.NewLegacyStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := options()
	opts.Legacy = store
	var seen *verify.License
	mux := http.NewServeMux()
	mux.Handle(gateway.LegacyPath, store.Handler(f.v, opts))
	mux.Handle("/", gateway.Middleware(f.v, opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = gateway.LicenseFrom(r.Context())
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("PUT", srv.URL+gateway.LegacyPath, nil)
	gateway.SignLegacyRequest(req, c.licPEM, c.key, time.Now())
	if a := do(t, srv.Client(), req); a.status != http.StatusCreated {
		t.Fatalf("deposit: %d %s", a.status, a.msg)
	}
	req, _ = http.NewRequest("GET", srv.URL+"/app", nil)
	gateway.SignLegacyRequest(req, nil, c.key, time.Now())
	if a := do(t, srv.Client(), req); a.status != http.StatusOK {
		t.Fatalf("legacy request: %d %s", a.status, a.msg)
	}
	if seen == nil || seen.ClientID != c.id || seen.LicenseID != 40 {
		t.Fatalf("LicenseFrom: %+v", seen)
	}
}

// TestLegacyDepositNoUpgrade: a deposit never exchanges a license with the
// license server, even when the gateway upgrades licenses on the way to the
// application: an expired license or one older than MinVersion is refused.
func TestLegacyDepositNoUpgrade(t *testing.T) {
	e := newLegacyEnv(t)
	u := &siteUpgrades{f: e.f, now: e.now}
	e.upgrade, e.minVersion = u.upgrade, "3.0"
	e.restart(t)

	// appAttrs is version 2.1, older than 3.0.
	a := e.deposit(t, e.c.key, e.c.licPEM)
	wantRefused(t, a, "old_version")
	expired := e.f.newClient(t, func() verify.Attributes { a := appAttrs(50); a.ProductVersion = "3.1"; return a }(),
		e.env.now.Add(-48*time.Hour), e.env.now.Add(-time.Hour))
	wantRefused(t, e.deposit(t, expired.key, expired.licPEM), "license_expired")
	if n := u.calls.Load(); n != 0 {
		t.Fatalf("deposits caused %d exchanges with the license server, want 0", n)
	}
	if ents, _ := os.ReadDir(e.dir); len(ents) != 0 {
		t.Fatalf("legacy directory holds %v after refused deposits", ents)
	}
	// A current license is stored.
	current := e.f.newClient(t, func() verify.Attributes { a := appAttrs(51); a.ProductVersion = "3.0"; return a }(),
		e.env.now.Add(-time.Hour), e.env.now.Add(time.Hour))
	if a := e.deposit(t, current.key, current.licPEM); a.status != http.StatusCreated {
		t.Fatalf("deposit of a current license: %d %s", a.status, a.msg)
	}
}

// TestLegacyUpgradeStored: a stored license that has expired (or is too old)
// is upgraded on the way to the application, and the upgraded license
// replaces the stored one, so that the license server is asked once.
func TestLegacyUpgradeStored(t *testing.T) {
	for _, tc := range []struct {
		name       string
		minVersion string
		later      time.Duration // the clock after the deposit
	}{
		{"expired", "", 2 * time.Hour},
		{"old-version", "3.0", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLegacyEnv(t)
			c := e.f.newClient(t, appAttrs(60), e.env.now.Add(-time.Hour), e.env.now.Add(time.Hour))
			if a := e.deposit(t, c.key, c.licPEM); a.status != http.StatusCreated {
				t.Fatalf("deposit: %d %s", a.status, a.msg)
			}
			u := &siteUpgrades{f: e.f, now: e.now}
			e.upgrade, e.minVersion = u.upgrade, tc.minVersion
			e.restart(t)
			e.clock.Store(e.env.now.Add(tc.later).UnixNano())

			a := do(t, e.hc, e.legacySigned(t, c.key, "POST", "/render", []byte("job")))
			if a.status != http.StatusOK || a.header.Get(gateway.HeaderLicenseUpdate) == "" {
				t.Fatalf("request with an upgradable stored license: %d %s, update %q", a.status, a.msg, a.header.Get(gateway.HeaderLicenseUpdate))
			}
			_, h, body := e.up.seen()
			if h.Get(gateway.HeaderLicenseID) != "1060" || h.Get(gateway.HeaderVersion) != "3.0" || h.Get(gateway.HeaderClientID) != c.id || string(body) != "job" {
				t.Fatalf("upstream saw license %q version %q client %q body %q", h.Get(gateway.HeaderLicenseID), h.Get(gateway.HeaderVersion), h.Get(gateway.HeaderClientID), body)
			}
			// The store holds the upgraded license file: license, then site certificate.
			stored, err := os.ReadFile(filepath.Join(e.dir, c.id))
			if err != nil {
				t.Fatal(err)
			}
			newLic, err := e.f.v.Verify(stored, verify.Options{Now: e.now(), Product: product, ClientKey: c.key.Public(), AllowUnbound: true})
			if err != nil || newLic.LicenseID != 1060 {
				t.Fatalf("stored license after the upgrade: %v, %v\n%s", newLic, err, stored)
			}
			if fi, _ := os.Stat(filepath.Join(e.dir, c.id)); fi.Mode().Perm() != 0o600 {
				t.Errorf("stored license has mode %v", fi.Mode().Perm())
			}
			if ents, _ := os.ReadDir(e.dir); len(ents) != 1 {
				t.Fatalf("legacy directory holds %v", ents)
			}

			// Later requests use the stored upgraded license: no update, no exchange.
			for range 2 {
				a = do(t, e.hc, e.legacySigned(t, c.key, "GET", "/x", nil))
				if a.status != http.StatusOK || a.header.Get(gateway.HeaderLicenseUpdate) != "" {
					t.Fatalf("after the upgrade: %d %s, update %q", a.status, a.msg, a.header.Get(gateway.HeaderLicenseUpdate))
				}
				_, h, _ = e.up.seen()
				if h.Get(gateway.HeaderLicenseID) != "1060" {
					t.Fatalf("after the upgrade the upstream saw license %s", h.Get(gateway.HeaderLicenseID))
				}
			}
			// Also after a restart, which forgets the exchange.
			e.restart(t)
			if a = do(t, e.hc, e.legacySigned(t, c.key, "GET", "/x", nil)); a.status != http.StatusOK {
				t.Fatalf("after a restart: %d %s", a.status, a.msg)
			}
			if n := u.calls.Load(); n != 1 {
				t.Fatalf("%d exchanges with the license server, want 1", n)
			}
			// GET of the store shows the new file.
			a = do(t, e.hc, e.legacySigned(t, c.key, "GET", gateway.LegacyPath, nil))
			if a.status != http.StatusOK || !bytes.Equal(a.body, stored) {
				t.Fatalf("GET %s after the upgrade: %d %q", gateway.LegacyPath, a.status, a.body)
			}
		})
	}
}

// TestLegacyUpgradeFails: an expired stored license that cannot be upgraded
// is refused with the license server's reason, not hidden.
func TestLegacyUpgradeFails(t *testing.T) {
	e := newLegacyEnv(t)
	c := e.f.newClient(t, appAttrs(70), e.env.now.Add(-time.Hour), e.env.now.Add(time.Hour))
	if a := e.deposit(t, c.key, c.licPEM); a.status != http.StatusCreated {
		t.Fatalf("deposit: %d %s", a.status, a.msg)
	}
	u := &siteUpgrades{f: e.f, now: e.now, fail: errors.New("no upgrade seat of app for platform linux-amd64")}
	e.upgrade = u.upgrade
	e.restart(t)
	e.clock.Store(e.env.now.Add(2 * time.Hour).UnixNano())
	a := do(t, e.hc, e.legacySigned(t, c.key, "GET", "/x", nil))
	wantRefused(t, a, "license_expired")
	if !strings.Contains(a.msg, "no upgrade seat") || !strings.Contains(a.msg, "deposit") || !strings.Contains(a.msg, c.id) {
		t.Errorf("refusal hides the upgrade failure: %s", a.msg)
	}
	if stored, _ := os.ReadFile(filepath.Join(e.dir, c.id)); !bytes.Equal(stored, c.licPEM) {
		t.Error("a failed upgrade changed the stored license")
	}
}

// TestLegacyUpgradeKeepsNewDeposit: an upgrade does not overwrite a license
// the client deposited after the exchange started.
func TestLegacyUpgradeKeepsNewDeposit(t *testing.T) {
	e := newLegacyEnv(t)
	c := e.f.newClient(t, appAttrs(80), e.env.now.Add(-time.Hour), e.env.now.Add(time.Hour))
	if a := e.deposit(t, c.key, c.licPEM); a.status != http.StatusCreated {
		t.Fatalf("deposit: %d %s", a.status, a.msg)
	}
	u := &siteUpgrades{f: e.f, now: e.now}
	var fresh []byte
	e.upgrade = func(ctx context.Context, licensePEM []byte) (*gateway.Upgraded, error) {
		// Meanwhile the client deposits a new license of its own.
		c2 := *c
		c2.issue(t, e.f.site, appAttrs(81), e.now().Add(-time.Minute), e.now().Add(time.Hour))
		fresh = c2.licPEM
		if a := e.deposit(t, c2.key, c2.licPEM); a.status != http.StatusOK {
			t.Errorf("deposit during the exchange: %d %s", a.status, a.msg)
		}
		return u.upgrade(ctx, licensePEM)
	}
	e.restart(t)
	e.clock.Store(e.env.now.Add(2 * time.Hour).UnixNano())
	if a := do(t, e.hc, e.legacySigned(t, c.key, "GET", "/x", nil)); a.status != http.StatusOK {
		t.Fatalf("upgraded request: %d %s", a.status, a.msg)
	}
	if stored, _ := os.ReadFile(filepath.Join(e.dir, c.id)); !bytes.Equal(stored, fresh) {
		t.Fatalf("the upgrade overwrote the license deposited meanwhile")
	}
}

// TestLegacyDepositTooLarge: a deposit over the size limit is refused as
// such, without talk of a header.
func TestLegacyDepositTooLarge(t *testing.T) {
	e := newLegacyEnv(t)
	for _, n := range []int{13 << 10, 20 << 10} {
		big := append(bytes.Repeat([]byte("#"), n), e.c.licPEM...)
		a := do(t, e.hc, e.legacySigned(t, e.c.key, "PUT", gateway.LegacyPath, big))
		if a.status != http.StatusRequestEntityTooLarge || strings.Contains(a.msg, "header") {
			t.Fatalf("deposit of %d bytes: %d %s", len(big), a.status, a.msg)
		}
	}
}

// TestLegacyDeleteRace: requests that read the stored license while it is
// deleted leave no deleted license behind in the store's memory.
func TestLegacyDeleteRace(t *testing.T) {
	e := newLegacyEnv(t)
	for i := range 20 {
		if a := e.deposit(t, e.c.key, e.c.licPEM); a.status/100 != 2 {
			t.Fatalf("deposit %d: %d %s", i, a.status, a.msg)
		}
		e.restart(t) // nothing cached
		done := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					resp, err := e.hc.Do(e.legacySigned(t, e.c.key, "GET", "/x", nil))
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
		}
		resp, err := e.hc.Do(e.legacySigned(t, e.c.key, "DELETE", gateway.LegacyPath, nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		close(done)
		wg.Wait()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: %s", resp.Status)
		}
		wantRefused(t, do(t, e.hc, e.legacySigned(t, e.c.key, "GET", "/x", nil)), "license_required")
	}
}
