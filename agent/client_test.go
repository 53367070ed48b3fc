package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/gateway"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/license"
	"github.com/licet/licet/licenseserver"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/softid"
	"github.com/licet/licet/verify"
)

const testProduct = "app"

// fakeSite grants licenses the way a license server does on the wire
// (challenge, grant sealed to the client's HPKE key), with validity the test
// chooses.
type fakeSite struct {
	t    *testing.T
	root *pki.Authority
	site *pki.Authority

	mu       sync.Mutex
	grants   int
	nextID   int64
	validity func(n int) (time.Time, time.Time) // of the n-th grant, from 1
}

func newFakeSite(t *testing.T, now time.Time) *fakeSite {
	root := testpki.Root(t, "Test Vendor", now.Add(-100*24*time.Hour))
	return &fakeSite{
		t: t, root: root, site: testpki.Site(t, root, "site-1", "cust-1", now.Add(-100*24*time.Hour)), nextID: 100,
		validity: func(int) (time.Time, time.Time) { return now.Add(-time.Hour), now.Add(30 * 24 * time.Hour) },
	}
}

func (s *fakeSite) rootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.root.Cert.Raw})
}

func (s *fakeSite) grantCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// issue makes a sealed license file for a client.
func (s *fakeSite) issue(clientKey ed25519.PublicKey, hpke []byte, product string, id int64, nb, na time.Time) []byte {
	s.t.Helper()
	attrs := verify.Attributes{
		DataVersion: verify.CurrentDataVersion, LicenseID: id, ClientID: verify.ClientID(clientKey),
		PackID: "pack-1", ProductID: product, ProductVersion: "1.0", Platform: "non-windows", Features: []string{"core"},
	}
	der, err := license.Issue(s.site, clientKey, attrs, nb, na)
	if err != nil {
		s.t.Fatal(err)
	}
	file, err := licenseserver.SealLicense([][]byte{der, s.site.Cert.Raw}, hpke)
	if err != nil {
		s.t.Fatal(err)
	}
	return file
}

func (s *fakeSite) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/root", func(w http.ResponseWriter, r *http.Request) { w.Write(s.rootPEM()) })
	mux.HandleFunc("POST /v1/challenges", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(licenseserver.ChallengeResponse{ChallengeID: "ch-1", Nonce: bytes.Repeat([]byte{7}, 16), Expires: time.Now().Add(time.Minute)})
	})
	mux.HandleFunc("POST /v1/licenses", func(w http.ResponseWriter, r *http.Request) {
		var req licenseserver.GrantRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !ed25519.Verify(req.ClientKey, licenseserver.GrantMessage(&req), req.Signature) {
			http.Error(w, `{"error":{"code":"forbidden","message":"bad grant"}}`, http.StatusForbidden)
			return
		}
		s.mu.Lock()
		s.grants++
		n := s.grants
		s.nextID++
		id := s.nextID
		s.mu.Unlock()
		nb, na := s.validity(n)
		file := s.issue(req.ClientKey, req.ClientHPKEKey, req.ProductID, id, nb, na)
		json.NewEncoder(w).Encode(api.GrantResponse{LicenseID: id, License: string(file)})
	})
}

// seen is what the application behind the gateway saw of a request.
type seen struct {
	ClientID, LicenseID, Body string
	TLSCert                   bool
}

// testGateway is gateway.Middleware in front of an application, with the
// license endpoints of a fakeSite, over TLS (client certificate requested)
// or plain http.
type testGateway struct {
	srv  *httptest.Server
	site *fakeSite
	last chan seen
	// update, if set, is sent as the Licet-License-Update header.
	update func(r *http.Request) string
}

func newTestGateway(t *testing.T, site *fakeSite, useTLS bool, gwNow func() time.Time) *testGateway {
	v, err := verify.New(site.rootPEM())
	if err != nil {
		t.Fatal(err)
	}
	g := &testGateway{site: site, last: make(chan seen, 16)}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g.last <- seen{
			ClientID: r.Header.Get(gateway.HeaderClientID), LicenseID: r.Header.Get(gateway.HeaderLicenseID),
			Body: string(body), TLSCert: r.TLS != nil && len(r.TLS.PeerCertificates) > 0,
		}
		if g.update != nil {
			if u := g.update(r); u != "" {
				w.Header().Set(gateway.HeaderLicenseUpdate, u)
			}
		}
		io.WriteString(w, "ok "+r.Header.Get(gateway.HeaderClientID))
	})
	mux := http.NewServeMux()
	site.register(mux)
	mux.Handle("/", gateway.Middleware(v, gateway.Options{Product: testProduct, SiteURL: "https://site.invalid", Now: gwNow})(app))
	g.srv = httptest.NewUnstartedServer(mux)
	if useTLS {
		g.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		g.srv.StartTLS()
	} else {
		g.srv.Start()
	}
	t.Cleanup(g.srv.Close)
	return g
}

func (g *testGateway) tlsConfig() *tls.Config {
	if g.srv.TLS == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(g.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

func (g *testGateway) seen(t *testing.T) seen {
	t.Helper()
	select {
	case s := <-g.last:
		return s
	default:
		t.Fatal("the application saw no request")
		return seen{}
	}
}

// newTestClient makes an agent identity and a Client for gateway g.
func newTestClient(t *testing.T, g *testGateway, opts ClientOptions) (*Client, *Identity) {
	t.Helper()
	id, err := Init(filepath.Join(t.TempDir(), "agent"), InitOptions{Platform: "non-windows", HWRoot: machineA.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := id.PinRoot(g.site.rootPEM()); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "image")
	os.WriteFile(image, []byte("the client program"), 0o755)
	opts.Server, opts.Product, opts.Image = g.srv.URL, testProduct, image
	if opts.SoftwareID == 0 {
		opts.SoftwareID, _ = softid.Parse("non-windows/7/312")
	}
	if opts.TLS == nil {
		opts.TLS = g.tlsConfig()
	}
	c, err := NewClient(id, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, id
}

// onlyReader hides every method but Read, so http.NewRequest sets no GetBody.
type onlyReader struct{ io.Reader }

func send(t *testing.T, c *Client, method, path, body string, noGetBody bool) (int, string) {
	t.Helper()
	req, err := c.NewRequest(context.Background(), method, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		if noGetBody {
			req.Body, req.GetBody, req.ContentLength = io.NopCloser(onlyReader{strings.NewReader(body)}), nil, -1
		} else {
			req.Body = io.NopCloser(strings.NewReader(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
			req.ContentLength = int64(len(body))
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestClientMutualTLS(t *testing.T) {
	now := time.Now()
	site := newFakeSite(t, now)
	g := newTestGateway(t, site, true, nil)
	c, id := newTestClient(t, g, ClientOptions{})
	if c.License() != nil {
		t.Fatal("a new agent has a license")
	}
	// No license: fetched through the gateway, then presented as the TLS certificate.
	status, body := send(t, c, "POST", "/v1/render?job=1", `{"scene":1}`, true)
	if status != 200 || body != "ok "+id.ClientID {
		t.Fatalf("first request: %d %q", status, body)
	}
	s := g.seen(t)
	if !s.TLSCert || s.ClientID != id.ClientID || s.Body != `{"scene":1}` || s.LicenseID != "101" {
		t.Fatalf("application saw %+v", s)
	}
	if site.grantCount() != 1 {
		t.Fatalf("grants = %d, want 1", site.grantCount())
	}
	cached, err := os.ReadFile(id.LicensePath(testProduct))
	if err != nil {
		t.Fatal(err)
	}
	// Cached: no new grant, and a new Client reads the cache.
	for range 3 {
		if status, _ := send(t, c, "GET", "/v1/x", "", false); status != 200 {
			t.Fatalf("cached: %d", status)
		}
		g.seen(t)
	}
	c2, err := NewClient(id, ClientOptions{Server: g.srv.URL, Product: testProduct, TLS: g.tlsConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseIdleConnections()
	if status, _ := send(t, c2, "GET", "/v1/x", "", false); status != 200 {
		t.Fatalf("second client: %d", status)
	}
	g.seen(t)
	if site.grantCount() != 1 {
		t.Fatalf("grants = %d after cached requests, want 1", site.grantCount())
	}
	if now, _ := os.ReadFile(id.LicensePath(testProduct)); !bytes.Equal(now, cached) {
		t.Fatal("the cache changed")
	}
}

func TestClientSignedHeaders(t *testing.T) {
	site := newFakeSite(t, time.Now())
	for _, tc := range []struct {
		name   string
		tls    bool
		signed bool
	}{{"http", false, false}, {"https-signed", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGateway(t, site, tc.tls, nil)
			c, id := newTestClient(t, g, ClientOptions{SignedHeaders: tc.signed})
			for i, body := range []string{`{"a":1}`, "", strings.Repeat("x", 100<<10)} {
				status, got := send(t, c, "POST", "/v1/upload?i="+strconv.Itoa(i), body, i == 2)
				if status != 200 || got != "ok "+id.ClientID {
					t.Fatalf("request %d: %d %q", i, status, got)
				}
				if s := g.seen(t); s.TLSCert || s.ClientID != id.ClientID || s.Body != body {
					t.Fatalf("request %d: application saw %+v", i, s)
				}
			}
		})
	}
}

// TestClientRetryOn401: the gateway's clock says the license expired; the
// client fetches a new one and sends the request again, once.
func TestClientRetryOn401(t *testing.T) {
	now := time.Now()
	site := newFakeSite(t, now)
	site.validity = func(n int) (time.Time, time.Time) {
		if n == 1 {
			return now.Add(-time.Hour), now.Add(30 * 24 * time.Hour)
		}
		return now.Add(-time.Hour), now.Add(90 * 24 * time.Hour)
	}
	gwNow := func() time.Time { return now.Add(40 * 24 * time.Hour) }
	g := newTestGateway(t, site, true, gwNow)
	c, id := newTestClient(t, g, ClientOptions{})
	if _, err := c.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if status, body := send(t, c, "PUT", "/v1/doc", "the body", true); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if s := g.seen(t); s.Body != "the body" || s.ClientID != id.ClientID || s.LicenseID != "102" {
		t.Fatalf("application saw %+v", s)
	}
	if site.grantCount() != 2 {
		t.Fatalf("grants = %d, want 2", site.grantCount())
	}

	// A license the gateway keeps refusing: one retry, then the 401 is the answer.
	site.validity = func(int) (time.Time, time.Time) { return now.Add(-time.Hour), now.Add(30 * 24 * time.Hour) }
	site.mu.Lock()
	site.grants = 0
	site.mu.Unlock()
	c, _ = newTestClient(t, g, ClientOptions{})
	if _, err := c.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if status, _ := send(t, c, "GET", "/v1/doc", "", false); status != http.StatusUnauthorized {
		t.Fatalf("refused license: %d, want 401", status)
	}
	if site.grantCount() != 2 {
		t.Fatalf("grants = %d, want 2 (the first and one retry)", site.grantCount())
	}
}

func TestClientRenewsBeforeExpiry(t *testing.T) {
	now := time.Now()
	site := newFakeSite(t, now)
	site.validity = func(n int) (time.Time, time.Time) {
		if n == 1 {
			return now.Add(-time.Hour), now.Add(10 * 24 * time.Hour) // renewal window: 2 days
		}
		if n == 2 {
			return now.Add(-time.Hour), now.Add(40 * 24 * time.Hour)
		}
		return now.Add(-time.Hour), now.Add(40 * 24 * time.Hour)
	}
	clock := now
	var mu sync.Mutex
	g := newTestGateway(t, site, true, nil)
	c, _ := newTestClient(t, g, ClientOptions{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
	setClock := func(d time.Duration) { mu.Lock(); clock = now.Add(d); mu.Unlock() }

	send(t, c, "GET", "/", "", false)
	g.seen(t)
	first := c.License()
	setClock(7 * 24 * time.Hour) // 3 days left: not yet
	send(t, c, "GET", "/", "", false)
	g.seen(t)
	if site.grantCount() != 1 || c.License() != first {
		t.Fatalf("renewed too early: %d grants", site.grantCount())
	}
	setClock(8*24*time.Hour + time.Hour) // under 2 days left
	send(t, c, "GET", "/", "", false)
	if s := g.seen(t); s.LicenseID != "102" {
		t.Fatalf("after renewal the application saw license %s, want 102", s.LicenseID)
	}
	if site.grantCount() != 2 || !c.License().NotAfter.After(first.NotAfter) {
		t.Fatalf("no renewal: %d grants, license until %s", site.grantCount(), c.License().NotAfter)
	}
	// A license server with nothing newer is not asked on every request.
	setClock(38*24*time.Hour + time.Hour)
	site.validity = func(int) (time.Time, time.Time) { return now.Add(-time.Hour), now.Add(40 * 24 * time.Hour) }
	for range 3 {
		send(t, c, "GET", "/", "", false)
		g.seen(t)
	}
	if site.grantCount() != 3 {
		t.Fatalf("grants = %d, want 3 (one renewal attempt that gave nothing newer)", site.grantCount())
	}

	// An explicit window.
	c2, _ := newTestClient(t, g, ClientOptions{RenewBefore: 60 * 24 * time.Hour})
	send(t, c2, "GET", "/", "", false)
	g.seen(t)
	n := site.grantCount()
	send(t, c2, "GET", "/", "", false)
	g.seen(t)
	if site.grantCount() != n+1 {
		t.Fatalf("RenewBefore 60 days over a 40-day license: grants %d, want %d", site.grantCount(), n+1)
	}
}

func TestClientLicenseUpdate(t *testing.T) {
	now := time.Now()
	site := newFakeSite(t, now)
	g := newTestGateway(t, site, true, nil)
	c, id := newTestClient(t, g, ClientOptions{})
	var update string
	g.update = func(r *http.Request) string { return update }

	send(t, c, "GET", "/", "", false)
	g.seen(t)
	old, _ := os.ReadFile(id.LicensePath(testProduct))

	// Refused updates: another product, another client, not base64.
	other, _ := Init(filepath.Join(t.TempDir(), "other"), InitOptions{Platform: "non-windows", HWRoot: machineA.build(t)})
	for _, u := range []string{
		base64.StdEncoding.EncodeToString(site.issue(id.Signer.Public(), id.Decrypter.PublicBytes(), "other-product", 500, now.Add(-time.Hour), now.Add(time.Hour*1000))),
		base64.StdEncoding.EncodeToString(site.issue(other.Signer.Public(), id.Decrypter.PublicBytes(), testProduct, 501, now.Add(-time.Hour), now.Add(time.Hour*1000))),
		"!!!",
	} {
		update = u
		if status, _ := send(t, c, "GET", "/", "", false); status != 200 {
			t.Fatalf("status %d", status)
		}
		g.seen(t)
		if cur, _ := os.ReadFile(id.LicensePath(testProduct)); !bytes.Equal(cur, old) {
			t.Fatal("a bad update replaced the cached license")
		}
	}

	// A good update replaces the cache and is presented from the next request on.
	update = base64.StdEncoding.EncodeToString(site.issue(id.Signer.Public(), id.Decrypter.PublicBytes(), testProduct, 777, now.Add(-time.Hour), now.Add(1000*time.Hour)))
	send(t, c, "GET", "/", "", false)
	g.seen(t)
	update = ""
	if lic := c.License(); lic.LicenseID != 777 {
		t.Fatalf("after the update the client holds license %d", lic.LicenseID)
	}
	if lic, err := id.License(testProduct, time.Time{}); err != nil || lic.LicenseID != 777 {
		t.Fatalf("cache after the update: %v, %v", lic, err)
	}
	send(t, c, "GET", "/", "", false)
	if s := g.seen(t); s.LicenseID != "777" {
		t.Fatalf("after the update the application saw license %s", s.LicenseID)
	}
	if site.grantCount() != 1 {
		t.Fatalf("grants = %d", site.grantCount())
	}
}

func TestNewClientErrors(t *testing.T) {
	id, err := Init(filepath.Join(t.TempDir(), "agent"), InitOptions{Platform: "non-windows", HWRoot: machineA.build(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []ClientOptions{{Product: "app"}, {Server: "ftp://x", Product: "app"}, {Server: "https://gw"}} {
		if _, err := NewClient(id, o); err == nil {
			t.Errorf("NewClient(%+v) succeeded", o)
		}
	}
}
