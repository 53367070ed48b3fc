package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/licet/licet/internal/testpki"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

const (
	product = "app"
	siteURL = "https://licenses.example.com"
)

// fixture is a vendor root, a certified site, and a verifier for the root.
type fixture struct {
	root, site *pki.Authority
	v          *verify.Verifier
	roots      *x509.CertPool
	now        time.Time // when the root and site were made
}

func newFixture(tb testing.TB, now time.Time) *fixture {
	tb.Helper()
	f := &fixture{now: now}
	f.root = newRoot(tb, "Acme", now)
	f.site = newSite(tb, f.root, "Acme Site Berlin", now)
	var err error
	if f.v, err = verify.New(f.root.Cert.Raw); err != nil {
		tb.Fatal(err)
	}
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.root.Cert)
	return f
}

func newRoot(tb testing.TB, name string, now time.Time) *pki.Authority {
	tb.Helper()
	return testpki.Root(tb, name, now)
}

// newSite certifies a new site with root, the way a vendor does.
func newSite(tb testing.TB, root *pki.Authority, name string, now time.Time) *pki.Authority {
	tb.Helper()
	return testpki.Site(tb, root, name, "cust-1", now)
}

func appAttrs(id int64) verify.Attributes {
	return verify.Attributes{
		LicenseID: id, PackID: "pack-1", ProductID: product, ProductVersion: "2.1",
		Platform: "linux-amd64", Features: []string{"render", "export"},
	}
}

// client is a client key with a license issued to it.
type client struct {
	key    *keys.Signer
	id     string
	licDER []byte
	licPEM []byte
	site   *pki.Authority
}

// newClient makes a client key and a license for it from f's site.
func (f *fixture) newClient(tb testing.TB, attrs verify.Attributes, notBefore, notAfter time.Time) *client {
	tb.Helper()
	key, err := keys.GenerateSigner()
	if err != nil {
		tb.Fatal(err)
	}
	c := &client{key: key, id: verify.ClientID(key.Public())}
	c.issue(tb, f.site, attrs, notBefore, notAfter)
	return c
}

// issue gives c a (new) license from site.
func (c *client) issue(tb testing.TB, site *pki.Authority, attrs verify.Attributes, notBefore, notAfter time.Time) {
	tb.Helper()
	var err error
	if c.licDER, err = license.Issue(site, c.key.Public(), attrs, notBefore, notAfter); err != nil {
		tb.Fatal(err)
	}
	c.site = site
	c.licPEM = license.EncodePEM([][]byte{c.licDER, site.Cert.Raw})
}

func (c *client) certificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.licDER, c.site.Cert.Raw}, PrivateKey: c.key.Private()}
}

// upstream is the application behind the gateway; it records what it saw.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	hits   int
	header http.Header
	body   []byte
}

func newUpstream(tb testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.hits++
		u.header, u.body = r.Header.Clone(), body
		u.mu.Unlock()
		io.WriteString(w, "hello from the app")
	}))
	tb.Cleanup(u.Close)
	return u
}

func (u *upstream) url() *url.URL {
	p, _ := url.Parse(u.URL)
	return p
}

func (u *upstream) seen() (int, http.Header, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits, u.header, u.body
}

func options() gateway.Options {
	// Hand-made licenses carry no pack statement (statement_test.go covers
	// bound ones).
	return gateway.Options{Product: product, SiteURL: siteURL, AllowUnbound: true}
}

// startGateway serves h over TLS the way the issue describes, with
// ClientAuth tls.VerifyClientCertIfGiven against the vendor root, or with
// conf if given.
func (f *fixture) startGateway(tb testing.TB, h http.Handler, conf *tls.Config) *httptest.Server {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	if conf == nil {
		conf = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: f.roots}
	}
	srv.TLS = conf
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv
}

// httpClient is a client of srv, presenting cert (if any) in TLS.
func httpClient(srv *httptest.Server, cert *tls.Certificate) *http.Client {
	tr := srv.Client().Transport.(*http.Transport).Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: tr}
}

type answer struct {
	status int
	header http.Header
	body   []byte
	code   string // of a JSON error
	msg    string
}

func do(tb testing.TB, hc *http.Client, req *http.Request) answer {
	tb.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	a.body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(a.body, &e); err != nil {
			tb.Fatalf("error answer %d is not licet's JSON error: %q", resp.StatusCode, a.body)
		}
		a.code, a.msg = e.Error.Code, e.Error.Message
	}
	return a
}

// signed makes a request signed by c at now.
func signed(tb testing.TB, c *client, method, target string, body []byte, now time.Time) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := gateway.SignRequest(req, body, c.licPEM, c.key, now); err != nil {
		tb.Fatal(err)
	}
	return req
}

// wantRefused checks a 401 with the given WWW-Authenticate error reason.
func wantRefused(tb testing.TB, a answer, reason string) {
	tb.Helper()
	want := `Licet realm="app", site="https://licenses.example.com", error="` + reason + `"`
	if a.status != http.StatusUnauthorized || a.code != "unauthenticated" || a.header.Get("WWW-Authenticate") != want {
		tb.Fatalf("got %d %s %q, WWW-Authenticate %q; want 401 unauthenticated, %q", a.status, a.code, a.msg, a.header.Get("WWW-Authenticate"), want)
	}
	tb.Logf("refused (%s): %s", reason, a.msg)
}

// wantIdentity checks the headers the upstream saw against c's license.
func wantIdentity(tb testing.TB, h http.Header, c *client, licenseID, features, temporary string) {
	tb.Helper()
	lic, err := x509.ParseCertificate(c.licDER)
	if err != nil {
		tb.Fatal(err)
	}
	want := map[string]string{
		"Licet-Client-Id":         c.id,
		"Licet-License-Id":        licenseID,
		"Licet-License-Product":   product,
		"Licet-License-Version":   "2.1",
		"Licet-License-Platform":  "linux-amd64",
		"Licet-License-Features":  features,
		"Licet-License-Expires":   lic.NotAfter.UTC().Format(time.RFC3339),
		"Licet-License-Temporary": temporary,
		"Licet-License-Site":      c.site.Cert.Subject.SerialNumber,
		"Licet-License-Customer":  "cust-1",
	}
	for k, v := range want {
		if got := h[k]; len(got) != 1 || got[0] != v {
			tb.Errorf("upstream saw %s: %q, want %q", k, got, v)
		}
	}
	// Nothing else of the Licet namespace reaches the application.
	for k := range h {
		if _, ok := want[k]; !ok && strings.HasPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "licet-") {
			tb.Errorf("upstream saw header %s: %q", k, h[k])
		}
	}
	if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
		tb.Errorf("upstream saw X-Forwarded-For %q, want 127.0.0.1", got)
	}
}

// env is one gateway in front of one upstream, with a licensed client.
type env struct {
	f   *fixture
	up  *upstream
	gw  *httptest.Server
	c   *client // license 7, valid
	now time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	now := time.Now()
	e := &env{f: newFixture(t, now.Add(-72*time.Hour)), now: now}
	e.up = newUpstream(t)
	e.gw = e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), options()), nil)
	e.c = e.f.newClient(t, appAttrs(7), now.Add(-time.Hour), now.Add(30*24*time.Hour))
	return e
}

func TestMutualTLS(t *testing.T) {
	e := newEnv(t)
	cert := e.c.certificate()
	hc := httpClient(e.gw, &cert)
	for i := range 3 { // keep-alive: the second and third requests hit the license cache
		req, _ := http.NewRequest("GET", e.gw.URL+"/hello?x=1", nil)
		a := do(t, hc, req)
		if a.status != http.StatusOK || string(a.body) != "hello from the app" {
			t.Fatalf("request %d: %d %q", i, a.status, a.body)
		}
		_, h, _ := e.up.seen()
		wantIdentity(t, h, e.c, "7", "render,export", "false")
	}
}

func TestSignedRequest(t *testing.T) {
	e := newEnv(t)
	hc := httpClient(e.gw, nil)
	body := []byte(`{"scene": "teapot"}`)
	a := do(t, hc, signed(t, e.c, "POST", e.gw.URL+"/render?q=a%20b&z=1", body, time.Now()))
	if a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.msg)
	}
	_, h, got := e.up.seen()
	if !bytes.Equal(got, body) {
		t.Fatalf("upstream got body %q, want %q", got, body)
	}
	wantIdentity(t, h, e.c, "7", "render,export", "false")

	// An empty body and a temporary license.
	tmp := appAttrs(9)
	tmp.Flags, tmp.Features = verify.FlagTemporary, nil
	c := e.f.newClient(t, tmp, e.now.Add(-time.Hour), e.now.Add(time.Hour))
	if a := do(t, hc, signed(t, c, "DELETE", e.gw.URL+"/jobs/3", nil, time.Now())); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.msg)
	}
	_, h, _ = e.up.seen()
	wantIdentity(t, h, c, "9", "", "true")
}

func TestLicenseFromContext(t *testing.T) {
	now := time.Now()
	f := newFixture(t, now.Add(-72*time.Hour))
	c := f.newClient(t, appAttrs(7), now.Add(-time.Hour), now.Add(time.Hour))
	var got *verify.License
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = gateway.LicenseFrom(r.Context())
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
	})
	srv := httptest.NewServer(gateway.Middleware(f.v, options())(app))
	defer srv.Close()
	body := bytes.Repeat([]byte("x"), 5000)
	req := signed(t, c, "PUT", srv.URL+"/doc", body, now)
	req.ContentLength = -1 // chunked
	req.GetBody = nil
	a := do(t, srv.Client(), req)
	if a.status != http.StatusOK || !bytes.Equal(a.body, body) {
		t.Fatalf("%d, %d bytes back", a.status, len(a.body))
	}
	if got == nil || got.LicenseID != 7 || got.ClientID != c.id || !got.ClientKey.Equal(c.key.Public()) {
		t.Fatalf("LicenseFrom: %+v", got)
	}
	if gateway.LicenseFrom(context.Background()) != nil {
		t.Fatal("LicenseFrom outside the gateway is not nil")
	}
}

func TestNoLicense(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.gw.URL+"/hello", nil)
	a := do(t, httpClient(e.gw, nil), req)
	wantRefused(t, a, "license_required")
	if !strings.Contains(a.msg, "present a license") || !strings.Contains(a.msg, siteURL) {
		t.Fatalf("message %q does not say what to do", a.msg)
	}
	if n, _, _ := e.up.seen(); n != 0 {
		t.Fatal("the upstream was reached without a license")
	}
}

func TestHeaderInjection(t *testing.T) {
	e := newEnv(t)
	victim := e.f.newClient(t, appAttrs(8), e.now.Add(-time.Hour), e.now.Add(time.Hour))
	inject := func(req *http.Request) {
		req.Header.Set("Licet-Client-Id", victim.id)
		req.Header["licet-license-id"] = []string{"8"}
		req.Header["Licet_Client_Id"] = []string{victim.id} // CGI-style servers read _ as -
		req.Header["LICET-LICENSE_FEATURES"] = []string{"admin"}
		req.Header.Set("Licet-License-Temporary", "false")
		req.Header.Set("Licet-Client-Role", "admin")
		// Ask a proxy behind the gateway to drop the verified headers as hop-by-hop.
		req.Header.Set("Connection", "Licet-Client-Id, Licet-License-Features")
	}

	t.Run("signed", func(t *testing.T) {
		req := signed(t, e.c, "GET", e.gw.URL+"/me", nil, time.Now())
		inject(req)
		if a := do(t, httpClient(e.gw, nil), req); a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.msg)
		}
		_, h, _ := e.up.seen()
		wantIdentity(t, h, e.c, "7", "render,export", "false")
	})
	t.Run("mtls", func(t *testing.T) {
		// And the victim's license file in the header: the TLS certificate wins.
		req := signed(t, victim, "GET", e.gw.URL+"/me", nil, time.Now())
		inject(req)
		cert := e.c.certificate()
		if a := do(t, httpClient(e.gw, &cert), req); a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.msg)
		}
		_, h, _ := e.up.seen()
		wantIdentity(t, h, e.c, "7", "render,export", "false")
	})
	t.Run("no license", func(t *testing.T) {
		before, _, _ := e.up.seen()
		req, _ := http.NewRequest("GET", e.gw.URL+"/me", nil)
		inject(req)
		wantRefused(t, do(t, httpClient(e.gw, nil), req), "license_required")
		if after, _, _ := e.up.seen(); after != before {
			t.Fatal("the upstream was reached")
		}
	})
}

func TestReplay(t *testing.T) {
	e := newEnv(t)
	hc := httpClient(e.gw, nil)
	body := []byte("pay 10")
	req := signed(t, e.c, "POST", e.gw.URL+"/pay", body, time.Now())
	replay := req.Clone(context.Background())
	replay.Body = io.NopCloser(bytes.NewReader(body))
	if a := do(t, hc, req); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.msg)
	}
	wantRefused(t, do(t, hc, replay), "replayed_request")
	if n, _, _ := e.up.seen(); n != 1 {
		t.Fatalf("upstream reached %d times", n)
	}
}

func TestStaleTimestamp(t *testing.T) {
	e := newEnv(t)
	hc := httpClient(e.gw, nil)
	for _, d := range []time.Duration{-10 * time.Minute, -61 * time.Second, 10 * time.Minute} {
		wantRefused(t, do(t, hc, signed(t, e.c, "GET", e.gw.URL+"/x", nil, time.Now().Add(d))), "stale_request")
	}
	// Within the skew, either way.
	for _, d := range []time.Duration{-50 * time.Second, 50 * time.Second} {
		if a := do(t, hc, signed(t, e.c, "GET", e.gw.URL+"/x", nil, time.Now().Add(d))); a.status != http.StatusOK {
			t.Fatalf("skew %s: %d %s", d, a.status, a.msg)
		}
	}
}

func TestTampered(t *testing.T) {
	e := newEnv(t)
	hc := httpClient(e.gw, nil)
	t.Run("body", func(t *testing.T) {
		req := signed(t, e.c, "POST", e.gw.URL+"/pay", []byte("pay 10"), time.Now())
		req.Body = io.NopCloser(strings.NewReader("pay 99"))
		wantRefused(t, do(t, hc, req), "invalid_signature")
	})
	t.Run("path", func(t *testing.T) {
		req := signed(t, e.c, "GET", e.gw.URL+"/jobs/1", nil, time.Now())
		req.URL.Path = "/jobs/2"
		wantRefused(t, do(t, hc, req), "invalid_signature")
	})
	t.Run("method", func(t *testing.T) {
		req := signed(t, e.c, "GET", e.gw.URL+"/jobs/1", nil, time.Now())
		req.Method = "DELETE"
		wantRefused(t, do(t, hc, req), "invalid_signature")
	})
	t.Run("malformed", func(t *testing.T) {
		req := signed(t, e.c, "GET", e.gw.URL+"/jobs/1", nil, time.Now())
		req.Header.Set("Signature-Input", req.Header.Get("Signature-Input")+";extra=1")
		wantRefused(t, do(t, hc, req), "invalid_signature")
	})
	t.Run("license without signature", func(t *testing.T) {
		req := signed(t, e.c, "GET", e.gw.URL+"/jobs/1", nil, time.Now())
		req.Header.Del("Signature-Input")
		req.Header.Del("Signature")
		wantRefused(t, do(t, hc, req), "invalid_signature")
	})
	if n, _, _ := e.up.seen(); n != 0 {
		t.Fatalf("upstream reached %d times", n)
	}
}

// TestWrongProduct: a license for another product is 401 (with the
// challenge naming where to get one for this product), not 403; see the
// package documentation.
func TestWrongProduct(t *testing.T) {
	e := newEnv(t)
	a := appAttrs(11)
	a.ProductID = "other-app"
	c := e.f.newClient(t, a, e.now.Add(-time.Hour), e.now.Add(time.Hour))
	wantRefused(t, do(t, httpClient(e.gw, nil), signed(t, c, "GET", e.gw.URL+"/x", nil, time.Now())), "wrong_product")
	cert := c.certificate()
	req, _ := http.NewRequest("GET", e.gw.URL+"/x", nil)
	wantRefused(t, do(t, httpClient(e.gw, &cert), req), "wrong_product")
}

func TestExpired(t *testing.T) {
	e := newEnv(t)
	hc := httpClient(e.gw, nil)
	c := e.f.newClient(t, appAttrs(12), e.now.Add(-48*time.Hour), e.now.Add(-time.Hour))
	wantRefused(t, do(t, hc, signed(t, c, "GET", e.gw.URL+"/x", nil, time.Now())), "license_expired")

	// A temporary license that expired, like any other.
	tmp := appAttrs(13)
	tmp.Flags = verify.FlagTemporary
	c = e.f.newClient(t, tmp, e.now.Add(-61*24*time.Hour), e.now.Add(-time.Minute))
	wantRefused(t, do(t, hc, signed(t, c, "GET", e.gw.URL+"/x", nil, time.Now())), "license_expired")

	// Over mutual TLS. With VerifyClientCertIfGiven, crypto/tls itself refuses
	// the expired chain in the handshake, and the client learns nothing...
	cert := c.certificate()
	req, _ := http.NewRequest("GET", e.gw.URL+"/x", nil)
	if _, err := httpClient(e.gw, &cert).Do(req); err == nil {
		t.Fatal("expired client certificate accepted by the TLS handshake")
	} else {
		t.Logf("VerifyClientCertIfGiven: %v", err)
	}
	// ...with gateway.TLSConfig it connects and gets the 401 and challenge.
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), options()), gateway.TLSConfig())
	req, _ = http.NewRequest("GET", gw.URL+"/x", nil)
	wantRefused(t, do(t, httpClient(gw, &cert), req), "license_expired")
	// And a good license works there too.
	good := e.c.certificate()
	req, _ = http.NewRequest("GET", gw.URL+"/x", nil)
	if a := do(t, httpClient(gw, &good), req); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.msg)
	}
}

// TestWrongClient: a license used with a key it was not issued to.
func TestWrongClient(t *testing.T) {
	e := newEnv(t)
	hc := httpClient(e.gw, nil)
	thief, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	stolen := &client{key: thief, id: verify.ClientID(thief.Public()), licDER: e.c.licDER, licPEM: e.c.licPEM, site: e.c.site}

	// Signed by the thief as the thief.
	wantRefused(t, do(t, hc, signed(t, stolen, "GET", e.gw.URL+"/x", nil, time.Now())), "wrong_client")
	// Signed by the thief, claiming the license's client ID.
	req := signed(t, stolen, "GET", e.gw.URL+"/x", nil, time.Now())
	req.Header.Set("Signature-Input", strings.Replace(req.Header.Get("Signature-Input"), `keyid="`+stolen.id, `keyid="`+e.c.id, 1))
	wantRefused(t, do(t, hc, req), "invalid_signature")
	// Over TLS, the handshake itself fails: the thief cannot sign for the license's key.
	cert := stolen.certificate()
	req, _ = http.NewRequest("GET", e.gw.URL+"/x", nil)
	if _, err := httpClient(e.gw, &cert).Do(req); err == nil {
		t.Fatal("a copied license passes the TLS handshake")
	}
	// The same with gateway.TLSConfig, which leaves the chain to the gateway:
	// the handshake still proves possession of the license's key.
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), options()), gateway.TLSConfig())
	req, _ = http.NewRequest("GET", gw.URL+"/x", nil)
	if _, err := httpClient(gw, &cert).Do(req); err == nil {
		t.Fatal("a copied license passes the TLS handshake of gateway.TLSConfig")
	}
	if n, _, _ := e.up.seen(); n != 0 {
		t.Fatalf("upstream reached %d times", n)
	}
}

// TestExpiresWhileCached: a verified license is remembered, but not past its
// expiry.
func TestExpiresWhileCached(t *testing.T) {
	start := time.Now()
	f := newFixture(t, start.Add(-72*time.Hour))
	c := f.newClient(t, appAttrs(7), start.Add(-time.Hour), start.Add(10*time.Minute))
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	opts := options()
	opts.Now = now
	h := gateway.Middleware(f.v, opts)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	send := func() *httptest.ResponseRecorder {
		req := signed(t, c, "GET", "http://app.example.com/x", nil, now())
		req.RequestURI = "/x"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, d := range []time.Duration{0, 5 * time.Minute, 10*time.Minute - time.Second} {
		clock.Store(start.Add(d).UnixNano())
		if rec := send(); rec.Code != http.StatusOK {
			t.Fatalf("at +%s: %d %s", d, rec.Code, rec.Body)
		}
	}
	clock.Store(start.Add(10*time.Minute + time.Second).UnixNano())
	rec := send()
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="license_expired"`) {
		t.Fatalf("after expiry: %d %s %s", rec.Code, rec.Header(), rec.Body)
	}
}

func TestUntrustedSite(t *testing.T) {
	e := newEnv(t)
	rogueRoot := newRoot(t, "Rogue", e.f.now)
	rogueSite := newSite(t, rogueRoot, "Rogue Site", e.f.now)
	c := e.f.newClient(t, appAttrs(14), e.now.Add(-time.Hour), e.now.Add(time.Hour))
	c.issue(t, rogueSite, appAttrs(14), e.now.Add(-time.Hour), e.now.Add(time.Hour))
	wantRefused(t, do(t, httpClient(e.gw, nil), signed(t, c, "GET", e.gw.URL+"/x", nil, time.Now())), "invalid_license")
	// Over TLS with gateway.TLSConfig the handshake passes, the gateway refuses.
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), options()), gateway.TLSConfig())
	cert := c.certificate()
	req, _ := http.NewRequest("GET", gw.URL+"/x", nil)
	wantRefused(t, do(t, httpClient(gw, &cert), req), "invalid_license")
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	opts := options()
	opts.MaxBody = 1000
	gw := e.f.startGateway(t, gateway.NewProxy(e.f.v, e.up.url(), opts), nil)
	hc := httpClient(gw, nil)
	body := bytes.Repeat([]byte("y"), 1001)
	a := do(t, hc, signed(t, e.c, "POST", gw.URL+"/up", body, time.Now()))
	if a.status != http.StatusRequestEntityTooLarge || a.code != "too_large" {
		t.Fatalf("%d %s %s", a.status, a.code, a.msg)
	}
	req := signed(t, e.c, "POST", gw.URL+"/up", body, time.Now())
	req.ContentLength, req.GetBody = -1, nil // chunked: no length to check up front
	if a := do(t, hc, req); a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: %d %s", a.status, a.msg)
	}
	if a := do(t, hc, signed(t, e.c, "POST", gw.URL+"/up", body[:1000], time.Now())); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.msg)
	}
}

func TestUpstreamDown(t *testing.T) {
	e := newEnv(t)
	e.up.Close()
	a := do(t, httpClient(e.gw, nil), signed(t, e.c, "GET", e.gw.URL+"/x", nil, time.Now()))
	if a.status != http.StatusBadGateway {
		t.Fatalf("%d %s", a.status, a.msg)
	}
}

func TestConcurrentClients(t *testing.T) {
	e := newEnv(t)
	clients := []*client{e.c}
	for i := range 3 {
		clients = append(clients, e.f.newClient(t, appAttrs(int64(20+i)), e.now.Add(-time.Hour), e.now.Add(time.Hour)))
	}
	var wg sync.WaitGroup
	var fails atomic.Int32
	for g := range 8 {
		wg.Go(func() {
			c := clients[g%len(clients)]
			hc := httpClient(e.gw, nil)
			if g%2 == 1 {
				cert := c.certificate()
				hc = httpClient(e.gw, &cert)
			}
			for i := range 25 {
				body := fmt.Appendf(nil, "%d-%d", g, i)
				resp, err := hc.Do(signed(t, c, "POST", e.gw.URL+"/c", body, time.Now()))
				if err != nil || resp.StatusCode != http.StatusOK {
					fails.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n, _, _ := e.up.seen(); fails.Load() != 0 || n != 200 {
		t.Fatalf("%d failures, %d requests reached the upstream", fails.Load(), n)
	}
}

// TestSignatureVectorV1 checks the test vector of the Licet-Signature scheme
// in the package documentation: the message, the signature, that a gateway
// accepts the request with Options.AcceptLicetSignature, and refuses it
// without.
func TestSignatureVectorV1(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	key := keys.NewSigner(ed25519.NewKeyFromSeed(seed))
	const (
		id    = "client-56475aa75463474c"
		msg   = "licet/v1 request\nPOST\n/v1/render?job=42\napp.example.com\n1767225600\nAAECAwQFBgcICQoLDA0ODw\ned95557e5e74b2039de6c31045e8679922cee52b6f479ef762f61d919a8a15de"
		sig   = "meeX2LKw795BRwD/020yKz3AzKzfC4M/A6bUoiV9YH8UvBR2G1JrN8BqY9/trWrGcYItnbnqrHKysYBmoNX8AA=="
		hdr   = "keyid=" + id + ",ts=1767225600,nonce=AAECAwQFBgcICQoLDA0ODw,sig=" + sig
		ts    = 1767225600
		bodyS = `{"scene":1}`
	)
	if got := verify.ClientID(key.Public()); got != id {
		t.Fatalf("client ID %s, want %s", got, id)
	}
	if got := base64.StdEncoding.EncodeToString(key.Sign([]byte(msg))); got != sig {
		t.Fatalf("signature %s, want %s", got, sig)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte(strings.ReplaceAll(msg, "\n", `\n`))) || !bytes.Contains(doc, []byte("Licet-Signature: "+hdr)) {
		t.Fatal("the test vector in doc.go differs from this test")
	}

	// A gateway at the vector's time accepts the request as documented.
	now := time.Unix(ts, 0)
	f := newFixture(t, now.Add(-time.Hour))
	c := &client{key: key, id: id}
	c.issue(t, f.site, appAttrs(5), now.Add(-time.Hour), now.Add(time.Hour))
	send := func(h http.Handler) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "http://app.example.com/v1/render?job=42", strings.NewReader(bodyS))
		req.Header.Set("Licet-License", base64.StdEncoding.EncodeToString(c.licPEM))
		req.Header.Set("Licet-Signature", hdr)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	opts := options()
	opts.Now = func() time.Time { return now.Add(30 * time.Second) }
	var reached bool
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })
	if rec := send(gateway.Middleware(f.v, opts)(app)); rec.Code != http.StatusUnauthorized || reached ||
		!strings.Contains(rec.Body.String(), "--accept-licet-signature") {
		t.Fatalf("vector request without AcceptLicetSignature: %d %s", rec.Code, rec.Body)
	}
	opts.AcceptLicetSignature = true
	opts.PublicNames = []string{"gw.example.com"}
	if rec := send(gateway.Middleware(f.v, opts)(app)); rec.Code != http.StatusUnauthorized || reached ||
		!strings.Contains(rec.Header().Get("WWW-Authenticate"), "wrong_gateway") {
		t.Fatalf("vector request to another gateway: %d %s", rec.Code, rec.Body)
	}
	opts.PublicNames = []string{"APP.example.com:80"}
	h := gateway.Middleware(f.v, opts)(app)
	if rec := send(h); rec.Code != http.StatusOK || !reached {
		t.Fatalf("vector request: %d %s", rec.Code, rec.Body)
	}
	if rec := send(h); rec.Code != http.StatusUnauthorized {
		t.Fatalf("vector request replayed: %d", rec.Code)
	}
}

// Benchmarks: the same httputil.ReverseProxy (gateway.NewReverseProxy) to
// the same upstream on loopback, on keep-alive connections, without
// (BenchmarkBareProxy) and with (BenchmarkGatewayCheck) the license check.
// The signed requests are signed before the timer starts and sent to both
// proxies alike, so the difference is the gateway's work alone.
//
//	go test -run='^$' -bench='BareProxy|GatewayCheck' -benchtime=2s -count=3 ./gateway

type benchEnv struct {
	f   *fixture
	c   *client
	up  *url.URL
	now time.Time
}

func newBenchEnv(b *testing.B) *benchEnv {
	now := time.Now()
	e := &benchEnv{f: newFixture(b, now.Add(-time.Hour)), now: now}
	e.c = e.f.newClient(b, appAttrs(7), now.Add(-time.Hour), now.Add(time.Hour))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the app")
	}))
	b.Cleanup(up.Close)
	e.up, _ = url.Parse(up.URL)
	return e
}

// presign returns n sets of signature headers for GET target.
func (e *benchEnv) presign(b *testing.B, target string, n int) (license string, sigs []http.Header) {
	sigs = make([]http.Header, n)
	for i := range sigs {
		req := signed(b, e.c, "GET", target, nil, time.Now())
		sigs[i] = http.Header{}
		for _, k := range []string{gateway.HeaderSignatureInput, gateway.HeaderMessageSignature, gateway.HeaderContentDigest} {
			sigs[i][k] = req.Header[k]
		}
		license = req.Header.Get("Licet-License")
	}
	return license, sigs
}

// setSig copies the signature headers sig into h.
func setSig(h, sig http.Header) {
	for k, v := range sig {
		h[k] = v
	}
}

// run sends b.N GETs of target with hc, serially or from parallel goroutines.
func run(b *testing.B, hc *http.Client, target string, parallel bool, license string, sigs []http.Header) {
	var next atomic.Int64
	one := func() {
		req, _ := http.NewRequest("GET", target, nil)
		if sigs != nil {
			req.Header["Licet-License"] = []string{license}
			setSig(req.Header, sigs[next.Add(1)-1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	one()        // open the connection (and use the first signature)
	runtime.GC() // of the presigning
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	if !parallel {
		for range b.N {
			one()
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one()
			}
		})
	}
	b.StopTimer()
	// CPU time of the whole process (client, proxy and upstream) per request:
	// steadier than ns/op on a shared machine.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchClient(srv *httptest.Server, cert *tls.Certificate) *http.Client {
	hc := httpClient(srv, cert)
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	return hc
}

func BenchmarkBareProxy(b *testing.B) {
	e := newBenchEnv(b)
	for _, mode := range []string{"signed", "signed-parallel", "mtls", "mtls-parallel"} {
		b.Run(mode, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(gateway.NewReverseProxy(e.up, options()))
			var hc *http.Client
			var license string
			var sigs []http.Header
			if strings.HasPrefix(mode, "signed") {
				srv.Start()
				hc = benchClient(srv, nil)
				license, sigs = e.presign(b, srv.URL+"/bench", b.N+1)
			} else {
				srv.StartTLS()
				hc = benchClient(srv, nil)
			}
			defer srv.Close()
			run(b, hc, srv.URL+"/bench", strings.HasSuffix(mode, "parallel"), license, sigs)
		})
	}
}

func BenchmarkGatewayCheck(b *testing.B) {
	e := newBenchEnv(b)
	for _, mode := range []string{"signed", "signed-parallel", "mtls", "mtls-parallel"} {
		b.Run(mode, func(b *testing.B) {
			srv := httptest.NewUnstartedServer(gateway.NewProxy(e.f.v, e.up, options()))
			var hc *http.Client
			var license string
			var sigs []http.Header
			if strings.HasPrefix(mode, "signed") {
				srv.Start()
				hc = benchClient(srv, nil)
				license, sigs = e.presign(b, srv.URL+"/bench", b.N+1)
			} else {
				srv.TLS = gateway.TLSConfig()
				srv.StartTLS()
				cert := e.c.certificate()
				hc = benchClient(srv, &cert)
			}
			defer srv.Close()
			run(b, hc, srv.URL+"/bench", strings.HasSuffix(mode, "parallel"), license, sigs)
		})
	}
}

// BenchmarkGatewayRatio alternates the requests of BenchmarkBareProxy and
// BenchmarkGatewayCheck, one each in turn, so that both see the same load
// on a shared machine, and reports each one's time per request and their
// ratio.
func BenchmarkGatewayRatio(b *testing.B) {
	e := newBenchEnv(b)
	for _, mode := range []string{"signed", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			bare := httptest.NewUnstartedServer(gateway.NewReverseProxy(e.up, options()))
			gw := httptest.NewUnstartedServer(gateway.NewProxy(e.f.v, e.up, options()))
			var bareClient, gwClient *http.Client
			var license string
			var sigs []http.Header
			if mode == "signed" {
				bare.Start()
				gw.Start()
				bareClient, gwClient = benchClient(bare, nil), benchClient(gw, nil)
				license, sigs = e.presign(b, gw.URL+"/bench", b.N+1)
			} else {
				bare.StartTLS()
				gw.TLS = gateway.TLSConfig()
				gw.StartTLS()
				cert := e.c.certificate()
				bareClient, gwClient = benchClient(bare, nil), benchClient(gw, &cert)
			}
			defer bare.Close()
			defer gw.Close()
			one := func(hc *http.Client, target string, i int) time.Duration {
				start := time.Now()
				req, _ := http.NewRequest("GET", target, nil)
				if sigs != nil {
					req.Header["Licet-License"] = []string{license}
					setSig(req.Header, sigs[i])
				}
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
				return time.Since(start)
			}
			one(bareClient, bare.URL+"/bench", 0)
			one(gwClient, gw.URL+"/bench", 0)
			runtime.GC()
			var tBare, tGw time.Duration
			b.ResetTimer()
			for i := range b.N {
				tBare += one(bareClient, bare.URL+"/bench", i+1)
				tGw += one(gwClient, gw.URL+"/bench", i+1)
			}
			b.StopTimer()
			b.ReportMetric(float64(tBare)/float64(b.N), "bare-ns/req")
			b.ReportMetric(float64(tGw)/float64(b.N), "gateway-ns/req")
			b.ReportMetric(float64(tGw)/float64(tBare), "ratio")
			b.ReportMetric(0, "ns/op") // two requests per op; see the metrics above
		})
	}
}

// BenchmarkSignRequest is the client's cost per signed request.
func BenchmarkSignRequest(b *testing.B) {
	e := newBenchEnv(b)
	body := []byte(`{"scene":1}`)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("POST", "https://app.example.com/v1/render?job=42", nil)
		if err := gateway.SignRequest(req, body, e.c.licPEM, e.c.key, e.now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMiddleware is the check alone, in process, on a request as the
// server hands it over; "none" is the same request straight to the handler.
func BenchmarkMiddleware(b *testing.B) {
	e := newBenchEnv(b)
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	leaf, _ := x509.ParseCertificate(e.c.licDER)
	tlsState := &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{leaf, e.c.site.Cert}}
	for _, mode := range []string{"none", "signed", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			h := http.Handler(noop)
			if mode != "none" {
				h = gateway.Middleware(e.f.v, options())(noop)
			}
			var license string
			var sigs []http.Header
			if mode == "signed" {
				license, sigs = e.presign(b, "http://app.example.com/bench", b.N)
				runtime.GC()
			}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r := &http.Request{Method: "GET", URL: &url.URL{Path: "/bench"}, RequestURI: "/bench", Host: "app.example.com",
					Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"User-Agent": {"bench"}, "Accept": {"*/*"}},
					Body: http.NoBody, RemoteAddr: "127.0.0.1:5000"}
				switch mode {
				case "signed":
					r.Header["Licet-License"] = []string{license}
					setSig(r.Header, sigs[i])
				case "mtls":
					r.TLS = tlsState
				}
				r = r.WithContext(context.Background())
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
