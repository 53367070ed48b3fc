package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// TestNginxLicenses runs the shipped deploy/nginx/licet.conf with the real
// nginx in front of an application and the license server: unlicensed
// requests get a 401 challenge, an agent acquires its license through nginx,
// the license as TLS client certificate reaches the application with the
// verified identity, and licenses for another product, from another vendor
// root or expired are refused.
func TestNginxLicenses(t *testing.T) {
	nginxBin := nginxOrSkip(t)
	g := newGrantEnv(t, "", 3)
	// A second product with its own pack, for the wrong-product case.
	ok(t, g.v.admin("vendor", "product", "add", "--id", "other", "--name", "Other", "--version", "1.0")...)
	var o struct{ ID string }
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "other", "--platform", "non-windows", "--quantity", "1")...)
	ok(t, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)

	var mu sync.Mutex
	var seen http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(app.Close)

	ng := startNginx(t, nginxBin, map[string]string{
		"@PRODUCT@":       "app",
		"@ROOT_CRT@":      g.rootPE,
		"@UPSTREAM@":      app.URL,
		"@SITE_UPSTREAM@": site.URL,
	})
	client := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: ng.pool}
		if cert != nil {
			// Always present the chain, even when its issuer is not among the
			// CAs nginx names (the other-root case).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client, path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ng.url+path, nil)
		for k, v := range hdr {
			req.Header[k] = []string{v} // as written, underscores included
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	refused := func(c *http.Client, reason string) {
		t.Helper()
		resp, body := get(c, "/v1/render", nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: want 401, got %s: %s", reason, resp.Status, body)
		}
		want := fmt.Sprintf(`Licet realm="app", site="%s", error="%s"`, ng.url, reason)
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Fatalf("%s: WWW-Authenticate %q, want %q", reason, got, want)
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code != "unauthenticated" || e.Error.Message == "" {
			t.Fatalf("%s: body %q is not a licet error (%v)", reason, body, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q", reason, ct)
		}
	}

	// nginx answers /healthz itself.
	if resp, body := get(client(nil), "/healthz", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %s %s", resp.Status, body)
	}
	// No license.
	refused(client(nil), "license_required")

	// The agent acquires its license with nginx's address only (challenge,
	// grant and root are relayed to the site); it trusts nginx's test
	// certificate through SSL_CERT_FILE.
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	lic := acquireVia(t, []string{"SSL_CERT_FILE=" + ng.caFile}, a, hwA, ng.url, "app", g.image)
	if lic.LicenseID == 0 || lic.ProductID != "app" {
		t.Fatalf("license through nginx: %+v", lic)
	}
	licPEM := mustRead(t, filepath.Join(a, "licenses", "app.pem"))
	keyPEM := mustRead(t, filepath.Join(a, "client.key"))
	good, err := tls.X509KeyPair(licPEM, keyPEM)
	if err != nil {
		t.Fatalf("the license file and key as a TLS client certificate: %v", err)
	}

	// The license reaches the application with the verified identity;
	// forged identity headers are replaced or removed.
	resp, body := get(client(&good), "/v1/render", map[string]string{
		"Licet-Client-Id":       "client-evil",
		"Licet-License-Product": "evil",
		"Licet-License-Id":      "1",
		"Licet_Client_Id":       "client-underscore",
	})
	if resp.StatusCode != http.StatusOK || body != `{"ok":true}` {
		t.Fatalf("valid license: %s %s", resp.Status, body)
	}
	mu.Lock()
	h := seen
	mu.Unlock()
	if got := h.Values("Licet-Client-Id"); len(got) != 1 || got[0] != lic.ClientID {
		t.Fatalf("upstream saw Licet-Client-Id %q, want %s", got, lic.ClientID)
	}
	if got := h.Values("Licet-License-Product"); len(got) != 1 || got[0] != "app" {
		t.Fatalf("upstream saw Licet-License-Product %q", got)
	}
	if got, want := h.Get("Licet-License-Serial"), strings.ToUpper(strconv.FormatInt(lic.LicenseID, 16)); !strings.EqualFold(strings.TrimLeft(got, "0"), want) {
		t.Fatalf("upstream saw Licet-License-Serial %q, want hex %s (license %d)", got, want, lic.LicenseID)
	}
	if v, ok := h["Licet-License-Id"]; ok {
		t.Fatalf("a client-sent Licet-License-Id reached the upstream: %q", v)
	}
	if v, ok := h["Licet_client_id"]; ok {
		t.Fatalf("a client-sent Licet_Client_Id reached the upstream: %q", v)
	}

	// A license for another product, from the same site.
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	acquireVia(t, nil, b, hwB, site.URL, "other", g.image)
	other, err := tls.X509KeyPair(mustRead(t, filepath.Join(b, "licenses", "other.pem")), mustRead(t, filepath.Join(b, "client.key")))
	if err != nil {
		t.Fatal(err)
	}
	refused(client(&other), "wrong_product")

	// A license from a site certified by another vendor root.
	now := time.Now()
	rogueSite := testpki.Site(t, testpki.Root(t, "Test Vendor", now), "rogue", "acme", now)
	refused(client(issueTLS(t, rogueSite, "app", now.Add(-time.Minute), now.Add(time.Hour))), "invalid_license")

	// An expired license, signed by the real site. nginx checks the dates with
	// the real clock (no LICET_NOW), so the site key from its data directory
	// signs one that ended ten minutes ago; the site certificate dates from an
	// hour before certification, so the chain is otherwise valid.
	siteKey, err := keys.LoadSigner(filepath.Join(g.siteDir, "site.key"))
	if err != nil {
		t.Fatal(err)
	}
	siteCert, err := x509.ParseCertificate(good.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	realSite := &pki.Authority{Cert: siteCert, Signer: siteKey}
	// The chain goes on with the issuing CA certificate that certified the
	// site, as in the license files the site writes.
	above := good.Certificate[2:]
	refused(client(issueTLS(t, realSite, "app", now.Add(-50*time.Minute), now.Add(-10*time.Minute), above...)), "license_expired")
	// The same site key, in date: accepted (so the refusal above is the date).
	// This license carries no pack statement and a serial of no pack: nginx
	// admits what any certified site signs, as docs/nginx.md says ("The
	// sale"); licet gateway refuses it (TestLicenseOutsideTheSale).
	resp, body = get(client(issueTLS(t, realSite, "app", now.Add(-time.Minute), now.Add(time.Hour), above...)), "/v1/render", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("in-date license from the real site: %s %s", resp.Status, body)
	}
	// The relay accepts only the methods the site serves.
	resp, body = get(client(nil), "/v1/challenges", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET /v1/challenges: want 403, got %s %s", resp.Status, body)
	}
}

// nginxOrSkip finds nginx, skipping the test without it unless
// LICET_REQUIRE_NGINX=1 (CI).
func nginxOrSkip(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nginx")
	if err != nil {
		for _, c := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
			if _, serr := os.Stat(c); serr == nil {
				p, err = c, nil
				break
			}
		}
	}
	if err != nil {
		if os.Getenv("LICET_REQUIRE_NGINX") == "1" {
			t.Fatal("nginx is not installed, and LICET_REQUIRE_NGINX=1")
		}
		t.Skip("nginx is not installed (apt-get install nginx); LICET_REQUIRE_NGINX=1 makes this a failure")
	}
	return p
}

// acquireVia runs 'licet agent license acquire' with extra environment and
// decodes its JSON answer.
func acquireVia(t *testing.T, env []string, dir, hw, server, product, image string) licenseOut {
	t.Helper()
	r := licet(t, env, "agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", server,
		"--product", product, "--software-id", softwareID, "--image", image, "--json")
	if r.code != 0 {
		t.Fatalf("acquire %s from %s: %s", product, server, r)
	}
	var out licenseOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("acquire: %v: %s", err, r.stdout)
	}
	return out
}

// issueTLS issues a license for a new client key by site and returns it as a
// TLS client certificate (license, site certificate).
func issueTLS(t *testing.T, site *pki.Authority, product string, notBefore, notAfter time.Time, above ...[]byte) *tls.Certificate {
	t.Helper()
	k, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	der, err := license.Issue(site, k.Public(), verify.Attributes{LicenseID: 7, ProductID: product, ProductVersion: "2.0", Platform: "non-windows"}, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: append([][]byte{der, site.Cert.Raw}, above...), PrivateKey: k.Private()}
}

// nginxProc is an nginx running deploy/nginx/licet.conf on a loopback port.
type nginxProc struct {
	url    string
	pool   *x509.CertPool // trusts nginx's certificate
	caFile string         // the same, as a PEM file
}

// startNginx renders deploy/nginx/licet.conf with vars (plus its own
// listener, server name, TLS certificate and site URL) into a temporary
// prefix and runs nginx in the foreground until the test ends.
func startNginx(t *testing.T, bin string, vars map[string]string) *nginxProc {
	t.Helper()
	dir := t.TempDir()
	tmpl, err := os.ReadFile(filepath.Join("..", "deploy", "nginx", "licet.conf"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	n := &nginxProc{url: "https://" + addr}
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	n.pool, n.caFile = serverCert(t, crt, key), crt
	all := map[string]string{"@LISTEN@": addr, "@SERVER_NAME@": "127.0.0.1", "@SERVER_CRT@": crt, "@SERVER_KEY@": key, "@SITE_URL@": n.url}
	for k, v := range vars {
		all[k] = v
	}
	conf := string(tmpl)
	for k, v := range all {
		conf = strings.ReplaceAll(conf, k, v)
	}
	if left := regexp.MustCompile(`@[A-Z_]+@`).FindAllString(conf, -1); len(left) > 0 {
		t.Fatalf("licet.conf has placeholders the test does not fill: %v", left)
	}
	if err := os.WriteFile(filepath.Join(dir, "licet.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var top bytes.Buffer
	if os.Geteuid() == 0 {
		top.WriteString("user root;\n") // the workers must read the test's private temporary directory
	}
	fmt.Fprintf(&top, "worker_processes 1;\nevents { worker_connections 64; }\nhttp {\n")
	for _, p := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&top, "    %s_temp_path %s;\n", p, filepath.Join(dir, p+"_temp"))
	}
	fmt.Fprintf(&top, "    access_log off;\n    include %s;\n}\n", filepath.Join(dir, "licet.conf"))
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), top.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", "stderr", "-c", filepath.Join(dir, "nginx.conf"),
		"-g", "daemon off; master_process on; pid "+filepath.Join(dir, "nginx.pid")+"; error_log stderr;")
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // SIGINT: fast shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("nginx log:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s\n%s", cmd.ProcessState, stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s:\n%s", addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverCert writes a self-signed P-256 certificate for 127.0.0.1 and its key.
func serverCert(t *testing.T, crtPath, keyPath string) *x509.CertPool {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return pool
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
