package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
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
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/pki"
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
	hpke     map[string][]byte                  // the HPKE keys of the granted clients, by client ID
	upgrades int
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
func (s *fakeSite) issue(clientKey ed25519.PublicKey, hpke []byte, systemID, product string, id int64, nb, na time.Time) []byte {
	s.t.Helper()
	attrs := verify.Attributes{
		DataVersion: verify.CurrentDataVersion, LicenseID: id, ClientID: verify.ClientID(clientKey), SystemID: systemID,
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
		s.mu.Lock()
		if s.hpke == nil {
			s.hpke = map[string][]byte{}
		}
		s.hpke[verify.ClientID(req.ClientKey)] = req.ClientHPKEKey
		s.mu.Unlock()
		file := s.issue(req.ClientKey, req.ClientHPKEKey, req.SystemID, req.ProductID, id, nb, na)
		json.NewEncoder(w).Encode(api.GrantResponse{LicenseID: id, License: string(file)})
	})
}

// upgrade is an Options.Upgrade of a gateway: like the license server, it
// exchanges a license (expired, or too old) for license ID+1000, version
// 3.0, valid from nb to na, sealed to the client's HPKE key.
func (s *fakeSite) upgrade(nb, na time.Time) func(ctx context.Context, licensePEM []byte) (*gateway.Upgraded, error) {
	return func(ctx context.Context, licensePEM []byte) (*gateway.Upgraded, error) {
		v, err := verify.New(s.rootPEM())
		if err != nil {
			return nil, err
		}
		old, err := v.Verify(licensePEM, verify.Options{Now: nb, AllowExpired: true, AllowUnbound: true})
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.upgrades++
		hpke := s.hpke[old.ClientID]
		s.mu.Unlock()
		attrs := old.Attributes
		attrs.LicenseID, attrs.ProductVersion, attrs.Flags = old.LicenseID+1000, "3.0", verify.FlagUpgraded
		der, err := license.Issue(s.site, old.ClientKey, attrs, nb, na)
		if err != nil {
			return nil, err
		}
		file, err := licenseserver.SealLicense([][]byte{der, s.site.Cert.Raw}, hpke)
		if err != nil {
			return nil, err
		}
		return &gateway.Upgraded{Chain: [][]byte{der, s.site.Cert.Raw}, File: file}, nil
	}
}

func (s *fakeSite) upgradeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upgrades
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
	v    *verify.Verifier
	now  func() time.Time // the gateway's clock; nil: time.Now
	last chan seen
	// update, if set, is sent as the Licet-License-Update header.
	update func(r *http.Request) string

	mu        sync.Mutex
	files     map[string][]byte // served under gateway.LicenseUpdatePath, by path
	fetches   int               // GETs of those paths
	presented []int64           // the license IDs the requests presented (0: none)
}

// serveFile makes file available at a license update path, and returns it.
func (g *testGateway) serveFile(file []byte) string {
	sum := sha256.Sum256(file)
	path := gateway.LicenseUpdatePath + hex.EncodeToString(sum[:])
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.files == nil {
		g.files = map[string][]byte{}
	}
	g.files[path] = file
	return path
}

func (g *testGateway) fetchCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fetches
}

// takePresented returns the license IDs presented since the last call.
func (g *testGateway) takePresented() []int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.presented
	g.presented = nil
	return p
}

// presentedLicense is the ID of the license r presents (expired or not), or 0.
func (g *testGateway) presentedLicense(r *http.Request) int64 {
	var lic *verify.License
	var err error
	var now time.Time
	if g.now != nil {
		now = g.now()
	}
	switch {
	case r.TLS != nil && len(r.TLS.PeerCertificates) >= 2:
		lic, err = g.v.VerifyChain([][]byte{r.TLS.PeerCertificates[0].Raw, r.TLS.PeerCertificates[1].Raw}, verify.Options{Now: now, AllowExpired: true, AllowUnbound: true})
	case r.Header.Get(gateway.HeaderLicense) != "":
		var pem []byte
		if pem, err = base64.StdEncoding.DecodeString(r.Header.Get(gateway.HeaderLicense)); err == nil {
			lic, err = g.v.Verify(pem, verify.Options{Now: now, AllowExpired: true, AllowUnbound: true})
		}
	default:
		return 0
	}
	if err != nil {
		return -1
	}
	return lic.LicenseID
}

func newTestGateway(t *testing.T, site *fakeSite, useTLS bool, gwNow func() time.Time) *testGateway {
	return newTestGatewayOpts(t, site, useTLS, gateway.Options{Now: gwNow})
}

// newTestGatewayOpts is newTestGateway with gateway options (Product and
// SiteURL are set).
func newTestGatewayOpts(t *testing.T, site *fakeSite, useTLS bool, opts gateway.Options) *testGateway {
	v, err := verify.New(site.rootPEM())
	if err != nil {
		t.Fatal(err)
	}
	opts.AllowUnbound = true // the fake site's licenses carry no pack statement
	g := &testGateway{site: site, v: v, now: opts.Now, last: make(chan seen, 16)}
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
	opts.Product, opts.SiteURL = testProduct, "https://site.invalid"
	gw := gateway.Middleware(v, opts)(app)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, gateway.LicenseUpdatePath) {
			g.mu.Lock()
			g.fetches++
			file, ok := g.files[r.URL.Path]
			g.mu.Unlock()
			if ok && r.Method == http.MethodGet {
				w.Write(file)
				return
			}
		} else {
			id := g.presentedLicense(r)
			g.mu.Lock()
			g.presented = append(g.presented, id)
			g.mu.Unlock()
		}
		gw.ServeHTTP(w, r) // the gateway's own update files, too
	}))
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
	for _, useTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			g := newTestGateway(t, site, useTLS, nil)
			c, id := newTestClient(t, g, ClientOptions{})
			var mu sync.Mutex
			var update string
			setUpdate := func(u string) { mu.Lock(); update = u; mu.Unlock() }
			g.update = func(r *http.Request) string { mu.Lock(); defer mu.Unlock(); return update }

			send(t, c, "GET", "/", "", false)
			g.seen(t)
			old, _ := os.ReadFile(id.LicensePath(testProduct))
			first := c.License()
			grants := site.grantCount()

			// Refused updates: another product, another client, not a
			// license file, too large, not there; and header values that are
			// not an update path of the gateway (the old base64 form, other
			// hosts, upper case, too short or long, a query).
			other, _ := Init(filepath.Join(t.TempDir(), "other"), InitOptions{Platform: "non-windows", HWRoot: machineA.build(t)})
			good := site.issue(id.Signer.Public(), id.Decrypter.PublicBytes(), id.SystemID, testProduct, 777, now.Add(-time.Hour), now.Add(1000*time.Hour))
			goodPath := g.serveFile(good)
			hexOf := strings.TrimPrefix(goodPath, gateway.LicenseUpdatePath)
			fetches := g.fetchCount()
			for _, u := range []string{
				g.serveFile(site.issue(id.Signer.Public(), id.Decrypter.PublicBytes(), id.SystemID, "other-product", 500, now.Add(-time.Hour), now.Add(time.Hour*1000))),
				g.serveFile(site.issue(other.Signer.Public(), id.Decrypter.PublicBytes(), id.SystemID, testProduct, 501, now.Add(-time.Hour), now.Add(time.Hour*1000))),
				g.serveFile([]byte("not a license")),
				g.serveFile(append(bytes.Repeat([]byte(" "), maxUpdateFile+1), good...)),
				gateway.LicenseUpdatePath + strings.Repeat("0", 64),
			} {
				setUpdate(u)
				if status, _ := send(t, c, "GET", "/", "", false); status != 200 {
					t.Fatalf("status %d", status)
				}
				g.seen(t)
				if cur, _ := os.ReadFile(id.LicensePath(testProduct)); !bytes.Equal(cur, old) || c.License() != first {
					t.Fatalf("a bad update %s replaced the license", u)
				}
			}
			if n := g.fetchCount() - fetches; n != 5 {
				t.Fatalf("%d update fetches for 5 update paths", n)
			}
			fetches = g.fetchCount()
			for _, u := range []string{
				"!!!",
				base64.StdEncoding.EncodeToString(good),
				g.srv.URL + goodPath,
				"//evil.invalid" + goodPath,
				strings.ToUpper(goodPath),
				gateway.LicenseUpdatePath + strings.ToUpper(hexOf),
				goodPath[:len(goodPath)-1],
				goodPath + "0",
				goodPath + "?x=1",
				goodPath + "/",
				"/v1" + goodPath,
			} {
				setUpdate(u)
				if status, _ := send(t, c, "GET", "/", "", false); status != 200 {
					t.Fatalf("status %d", status)
				}
				g.seen(t)
				if c.License() != first {
					t.Fatalf("the header value %q installed an update", u)
				}
			}
			if n := g.fetchCount() - fetches; n != 0 {
				t.Fatalf("%d fetches for header values that are not update paths", n)
			}

			// A good update replaces the cache and is presented from the next request on.
			setUpdate(goodPath)
			send(t, c, "GET", "/", "", false)
			g.seen(t)
			setUpdate("")
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

			// Replayed and stale updates do not go back: the same license,
			// the first license, a license of the same version that expires
			// earlier, or of an older version that expires later.
			cached, _ := os.ReadFile(id.LicensePath(testProduct))
			cur := c.License()
			earlier := site.issue(id.Signer.Public(), id.Decrypter.PublicBytes(), id.SystemID, testProduct, 778, now.Add(-time.Hour), now.Add(900*time.Hour))
			for _, file := range [][]byte{good, earlier} {
				setUpdate(g.serveFile(file))
				send(t, c, "GET", "/", "", false)
				g.seen(t)
				if c.License() != cur {
					t.Fatalf("a stale update replaced license 777 with %d", c.License().LicenseID)
				}
				if now, _ := os.ReadFile(id.LicensePath(testProduct)); !bytes.Equal(now, cached) {
					t.Fatal("a stale update replaced the cached license")
				}
			}
			// A later expiry, or a later version, is installed.
			later := site.issue(id.Signer.Public(), id.Decrypter.PublicBytes(), id.SystemID, testProduct, 779, now.Add(-time.Hour), now.Add(2000*time.Hour))
			setUpdate(g.serveFile(later))
			send(t, c, "GET", "/", "", false)
			g.seen(t)
			setUpdate("")
			if lic := c.License(); lic.LicenseID != 779 {
				t.Fatalf("an update that expires later was not installed: license %d", lic.LicenseID)
			}
			if site.grantCount() != grants {
				t.Fatalf("grants = %d, want %d", site.grantCount(), grants)
			}
		})
	}
}

// TestNewerLicense: which updates replace the client's license.
func TestNewerLicense(t *testing.T) {
	base := time.Now()
	lic := func(id int64, version string, days int) *verify.License {
		return &verify.License{Attributes: verify.Attributes{LicenseID: id, ProductVersion: version}, NotAfter: base.Add(time.Duration(days) * 24 * time.Hour)}
	}
	cur := lic(10, "2.1", 30)
	for _, tc := range []struct {
		nl   *verify.License
		want bool
	}{
		{lic(10, "3.0", 60), false}, // the same license
		{lic(11, "2.1", 60), true},
		{lic(11, "2.1", 30), true},
		{lic(11, "2.1", 29), false},
		{lic(11, "3.0", 10), true}, // an upgrade may expire earlier
		{lic(11, "2.10", 1), true},
		{lic(11, "2.0", 90), false}, // never an older version
	} {
		if got := newerLicense(tc.nl, cur); got != tc.want {
			t.Errorf("newerLicense(%d %s until +%v) = %v, want %v", tc.nl.LicenseID, tc.nl.ProductVersion, tc.nl.NotAfter.Sub(base), got, tc.want)
		}
	}
}

// TestClientPresentsExpired: a client presents its license also after it
// has expired, so that a gateway that upgrades licenses can exchange it; it
// fetches a new one only when the gateway refuses the expired one.
func TestClientPresentsExpired(t *testing.T) {
	now := time.Now()
	later := now.Add(40 * 24 * time.Hour) // after the first license expired
	for _, useTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			site := newFakeSite(t, now)
			site.validity = func(n int) (time.Time, time.Time) {
				if n == 1 {
					return now.Add(-time.Hour), now.Add(30 * 24 * time.Hour)
				}
				return later.Add(-time.Hour), later.Add(30 * 24 * time.Hour)
			}
			var mu sync.Mutex
			clock := now
			setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
			getClock := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }

			// A gateway that upgrades: the expired license is exchanged, not
			// replaced by a grant; the client installs the upgraded license
			// the gateway names.
			g := newTestGatewayOpts(t, site, useTLS, gateway.Options{
				Now: getClock, Upgrade: site.upgrade(later.Add(-time.Minute), later.Add(60*24*time.Hour)),
			})
			c, id := newTestClient(t, g, ClientOptions{Now: getClock})
			if status, _ := send(t, c, "GET", "/", "", false); status != 200 {
				t.Fatalf("first request: %d", status)
			}
			g.seen(t)
			g.takePresented()
			setClock(later)

			// A new client reads the expired license from the cache.
			c2, err := NewClient(id, ClientOptions{Server: g.srv.URL, Product: testProduct, TLS: g.tlsConfig(), Now: getClock, SoftwareID: c.opts.SoftwareID, Image: c.opts.Image})
			if err != nil {
				t.Fatal(err)
			}
			defer c2.CloseIdleConnections()
			if lic := c2.License(); lic == nil || lic.LicenseID != 101 {
				t.Fatalf("a new client did not load the expired license: %v", lic)
			}

			if status, body := send(t, c, "POST", "/v1/x", "job", true); status != 200 {
				t.Fatalf("request with an expired license and an upgrading gateway: %d %s", status, body)
			}
			if s := g.seen(t); s.LicenseID != "1101" || s.Body != "job" {
				t.Fatalf("application saw %+v, want the upgraded license 1101", s)
			}
			if p := g.takePresented(); len(p) != 1 || p[0] != 101 {
				t.Fatalf("requests presented licenses %v, want the expired 101", p)
			}
			if site.grantCount() != 1 || site.upgradeCount() != 1 {
				t.Fatalf("%d grants, %d upgrades; want 1 grant (the first), 1 upgrade", site.grantCount(), site.upgradeCount())
			}
			if lic := c.License(); lic.LicenseID != 1101 || lic.ProductVersion != "3.0" {
				t.Fatalf("the client holds license %d after the upgrade", lic.LicenseID)
			}
			if lic, err := id.License(testProduct, later); err != nil || lic.LicenseID != 1101 {
				t.Fatalf("cache after the upgrade: %v, %v", lic, err)
			}
			send(t, c, "GET", "/", "", false)
			if s := g.seen(t); s.LicenseID != "1101" {
				t.Fatalf("after the upgrade the application saw license %s", s.LicenseID)
			}
			if p := g.takePresented(); len(p) != 1 || p[0] != 1101 {
				t.Fatalf("after the upgrade the client presented %v", p)
			}

			// A gateway that does not upgrade refuses the expired license
			// (license_expired); then, and only then, the client fetches.
			g2 := newTestGatewayOpts(t, site, useTLS, gateway.Options{Now: getClock})
			c3, id3 := newTestClient(t, g2, ClientOptions{Now: getClock})
			setClock(now)
			site.mu.Lock()
			site.grants = 0
			site.mu.Unlock()
			if _, err := c3.Fetch(context.Background()); err != nil {
				t.Fatal(err)
			}
			setClock(later)
			c3b, err := NewClient(id3, ClientOptions{Server: g2.srv.URL, Product: testProduct, TLS: g2.tlsConfig(), Now: getClock, SoftwareID: c3.opts.SoftwareID, Image: c3.opts.Image})
			if err != nil {
				t.Fatal(err)
			}
			defer c3b.CloseIdleConnections()
			for _, cl := range []*Client{c3, c3b} {
				g2.takePresented()
				before := site.grantCount()
				if status, body := send(t, cl, "PUT", "/v1/doc", "body", true); status != 200 {
					t.Fatalf("%d %s", status, body)
				}
				s := g2.seen(t)
				if s.Body != "body" || s.ClientID != id3.ClientID {
					t.Fatalf("application saw %+v", s)
				}
				p := g2.takePresented()
				if len(p) != 2 || p[0] == p[1] || p[1] != cl.License().LicenseID {
					t.Fatalf("requests presented %v; want the expired license, then the new one %d", p, cl.License().LicenseID)
				}
				if site.grantCount() != before+1 {
					t.Fatalf("grants %d, want %d", site.grantCount(), before+1)
				}
			}
		})
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
