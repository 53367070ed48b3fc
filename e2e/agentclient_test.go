package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/licensing/gateway"
)

// agentGatewayCert writes a self-signed TLS certificate for 127.0.0.1 and its key
// to dir and returns their paths; the certificate is also the CA a client
// trusts.
func agentGatewayCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "licet e2e gateway"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "gateway.crt"), filepath.Join(dir, "gateway.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// agentAppSeen is what the upstream application answers: what it saw.
type agentAppSeen struct {
	ClientID  string `json:"client_id"`
	LicenseID string `json:"license_id"`
	Temporary string `json:"temporary"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Body      string `json:"body"`
}

func newAgentApp(t *testing.T) *httptest.Server {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.Error(w, "no such page", http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(agentAppSeen{
			ClientID: r.Header.Get(gateway.HeaderClientID), LicenseID: r.Header.Get(gateway.HeaderLicenseID),
			Temporary: r.Header.Get(gateway.HeaderTemporary), Method: r.Method, Path: r.URL.RequestURI(), Body: string(body),
		})
	}))
	t.Cleanup(app.Close)
	return app
}

type agentSiteLicense struct {
	LicenseID int64  `json:"license_id"`
	ClientID  string `json:"client_id"`
}

func agentSiteLicenses(t *testing.T, siteDir string) []agentSiteLicense {
	t.Helper()
	var rows []agentSiteLicense
	okJSON(t, &rows, "site", "license", "list", "--data", siteDir)
	return rows
}

// agentLicenseFile returns the stat of an agent's cached license (nil if none).
func agentLicenseFile(t *testing.T, dir string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "licenses", "app.pem"))
	if err != nil {
		return nil
	}
	return fi
}

// TestAgentRequestThroughGateway runs vendor, site and two 'licet gateway'
// processes, one serving HTTPS (licenses as TLS client certificates) and one
// plain http (signed headers), in front of an application, and drives them
// with 'licet agent request': the first request fetches a license through the
// gateway, later ones use the cached license, and a temporary license is
// renewed close to its expiry.
func TestAgentRequestThroughGateway(t *testing.T) {
	g := newGrantEnv(t, "", 1)
	site := start(t, nil, "site", "serve", "--data", g.siteDir, "--temporary-days", "10")
	app := newAgentApp(t)
	certFile, keyFile := agentGatewayCert(t, g.tmp)
	gwTLS := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
		"--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(gwTLS.URL, "https://") {
		t.Fatalf("gateway with --tls-cert announced %s", gwTLS.URL)
	}
	gwHTTP := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE)

	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	request := func(dir, hw, gw string, extra ...string) []string {
		args := []string{"agent", "request", "--data", dir, "--hw-root", hw, "--server", gw, "--product", "app",
			"--software-id", softwareID, "--image", g.image}
		if strings.HasPrefix(gw, "https://") {
			args = append(args, "--cacert", certFile)
		}
		return append(args, extra...)
	}
	seenOf := func(out string) agentAppSeen {
		t.Helper()
		var s agentAppSeen
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("upstream answer is not JSON: %v: %q", err, out)
		}
		return s
	}

	// No license and no software ID to fetch one with: a usage error.
	r := licet(t, nil, "agent", "request", "--data", a, "--hw-root", hwA, "--server", gwTLS.URL, "--cacert", certFile, "--product", "app", "/v1/whoami")
	if r.code != 2 || !strings.Contains(r.stderr, "--software-id") {
		t.Fatalf("no license and no software ID: want exit 2 naming --software-id, got %s", r)
	}
	// An untrusted gateway certificate: no request is sent.
	r = licet(t, nil, "agent", "request", "--data", a, "--hw-root", hwA, "--server", gwTLS.URL, "--product", "app", "--software-id", softwareID, "--image", g.image, "/v1/whoami")
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("untrusted gateway: want exit 1 about the certificate, got %s", r)
	}
	if agentLicenseFile(t, a) != nil {
		t.Fatal("a license was cached without a trusted gateway")
	}

	// Mutual TLS, no license yet: granted through the gateway, then 200.
	s := seenOf(ok(t, request(a, hwA, gwTLS.URL, "/v1/whoami?x=1")...))
	var lic licenseOut
	okJSON(t, &lic, "agent", "license", "show", "--data", a, "--hw-root", hwA, "--product", "app")
	if s.ClientID == "" || s.ClientID != lic.ClientID || s.LicenseID != itoa(int(lic.LicenseID)) || s.Path != "/v1/whoami?x=1" {
		t.Fatalf("upstream saw %+v; license %+v", s, lic)
	}
	rows := agentSiteLicenses(t, g.siteDir)
	if len(rows) != 1 || rows[0].ClientID != lic.ClientID {
		t.Fatalf("site licenses after the first request: %+v", rows)
	}
	cached := agentLicenseFile(t, a)

	// Again: the cached license, no grant (the cache file is the same file).
	var out struct {
		Status    int    `json:"status"`
		ClientID  string `json:"client_id"`
		LicenseID int64  `json:"license_id"`
		Body      string `json:"body"`
	}
	okJSON(t, &out, request(a, hwA, gwTLS.URL, "-X", "PUT", "--body", "hello", "/v1/doc")...)
	if s := seenOf(out.Body); out.Status != 200 || out.LicenseID != lic.LicenseID || s.ClientID != lic.ClientID || s.Method != "PUT" || s.Body != "hello" {
		t.Fatalf("second request: %+v, upstream saw %+v", out, s)
	}
	if now := agentLicenseFile(t, a); now == nil || !os.SameFile(now, cached) || !now.ModTime().Equal(cached.ModTime()) {
		t.Fatal("the second request rewrote the license cache")
	}

	// license acquire through the HTTPS gateway: refused without --cacert
	// (private certificate), and with it the site reissues A's license.
	acquire := []string{"agent", "license", "acquire", "--data", a, "--hw-root", hwA, "--server", gwTLS.URL, "--product", "app", "--software-id", softwareID, "--image", g.image}
	if r := licet(t, nil, acquire...); r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("acquire from a gateway with a private certificate, no --cacert: want exit 1 about the certificate, got %s", r)
	}
	var again struct {
		licenseOut
		Reissued bool `json:"reissued"`
	}
	okJSON(t, &again, append(acquire, "--cacert", certFile)...)
	if !again.Reissued || again.LicenseID != lic.LicenseID {
		t.Fatalf("acquire with --cacert: %+v, want license %d reissued", again, lic.LicenseID)
	}
	cached = agentLicenseFile(t, a) // acquire stored the reissued license
	if rows := agentSiteLicenses(t, g.siteDir); len(rows) != 1 {
		t.Fatalf("site licenses after the second request: %+v", rows)
	}

	// Signed headers over plain http, body from a file.
	bodyFile := filepath.Join(g.tmp, "body.json")
	os.WriteFile(bodyFile, []byte(`{"scene":1}`), 0o644)
	s = seenOf(ok(t, request(a, hwA, gwHTTP.URL, "--body", "@"+bodyFile, "/v1/render?job=42")...))
	if s.ClientID != lic.ClientID || s.Method != "POST" || s.Body != `{"scene":1}` || s.Path != "/v1/render?job=42" {
		t.Fatalf("signed request: upstream saw %+v", s)
	}
	// Signed headers over https (--signed).
	s = seenOf(ok(t, request(a, hwA, gwTLS.URL, "--signed", "/v1/signed")...))
	if s.ClientID != lic.ClientID {
		t.Fatalf("signed request over https: upstream saw %+v", s)
	}
	if now := agentLicenseFile(t, a); !os.SameFile(now, cached) {
		t.Fatal("a signed request rewrote the license cache")
	}

	// The application's errors come back as exit codes, the body printed.
	r = licet(t, nil, request(a, hwA, gwTLS.URL, "/missing")...)
	if r.code != 3 || !strings.Contains(r.stdout, "no such page") || !strings.Contains(r.stderr, "404") {
		t.Fatalf("404 from the application: %s", r)
	}

	// The pool is empty now: B gets a temporary license (10 days) through the gateway.
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	s = seenOf(ok(t, request(b, hwB, gwTLS.URL, "/v1/whoami")...))
	if s.Temporary != "true" {
		t.Fatalf("B's license: upstream saw %+v, want a temporary license", s)
	}
	var temp struct {
		licenseOut
		Temporary bool      `json:"temporary"`
		NotAfter  time.Time `json:"not_after"`
	}
	okJSON(t, &temp, "agent", "license", "show", "--data", b, "--hw-root", hwB, "--product", "app")
	if !temp.Temporary || time.Until(temp.NotAfter) > 11*24*time.Hour {
		t.Fatalf("B's license: %+v", temp)
	}
	if out := ok(t, "agent", "license", "show", "--data", b, "--hw-root", hwB, "--product", "app"); !strings.HasPrefix(out, "Temporary license ") {
		t.Fatalf("agent license show does not say the license is temporary:\n%s", out)
	}
	tempFile := agentLicenseFile(t, b)

	// Seats appear. Eight days on, the license is not yet within its renewal
	// window (a fifth of 10 days): no renewal. Nine days on it is: the agent
	// fetches a fresh license, the permanent one that replaces the temporary.
	var o struct{ ID string }
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows", "--quantity", "1")...)
	ok(t, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID)
	at := func(d time.Duration) []string {
		return []string{"LICET_NOW=" + time.Now().Add(d).UTC().Format(time.RFC3339)}
	}
	r = licet(t, at(8*24*time.Hour-time.Hour), request(b, hwB, gwTLS.URL, "/v1/whoami")...)
	if r.code != 0 || seenOf(r.stdout).LicenseID != itoa(int(temp.LicenseID)) {
		t.Fatalf("eight days on: %s", r)
	}
	if !os.SameFile(agentLicenseFile(t, b), tempFile) {
		t.Fatal("the license was renewed outside its renewal window")
	}
	r = licet(t, at(9*24*time.Hour), request(b, hwB, gwTLS.URL, "/v1/whoami")...)
	if r.code != 0 {
		t.Fatalf("nine days on: %s", r)
	}
	s = seenOf(r.stdout)
	var perm struct {
		licenseOut
		Temporary bool `json:"temporary"`
	}
	okJSON(t, &perm, "agent", "license", "show", "--data", b, "--hw-root", hwB, "--product", "app")
	if perm.Temporary || perm.LicenseID == temp.LicenseID || s.LicenseID != itoa(int(perm.LicenseID)) || s.Temporary != "false" {
		t.Fatalf("after renewal: cache %+v, upstream saw %+v (temporary was %d)", perm, s, temp.LicenseID)
	}

	// 'agent license renew': not due, then forced.
	var ren struct {
		licenseOut
		Renewed bool `json:"renewed"`
	}
	okJSON(t, &ren, "agent", "license", "renew", "--data", b, "--hw-root", hwB, "--server", gwTLS.URL, "--cacert", certFile,
		"--product", "app", "--software-id", softwareID, "--image", g.image)
	if ren.Renewed || ren.LicenseID != perm.LicenseID {
		t.Fatalf("renew when not due: %+v", ren)
	}
	okJSON(t, &ren, "agent", "license", "renew", "--data", b, "--hw-root", hwB, "--server", gwHTTP.URL,
		"--product", "app", "--software-id", softwareID, "--image", g.image, "--force")
	if ren.LicenseID != perm.LicenseID || ren.Reissued {
		t.Fatalf("forced renew: %+v", ren)
	}
	if out := ok(t, "agent", "request", "--help"); !strings.Contains(out, "URL_PATH") || !strings.Contains(out, "-cacert") {
		t.Fatalf("agent request --help: %s", out)
	}
}

// TestAgentClientExample builds examples/licensed-client and runs it against
// an HTTPS gateway: it registers its own executable with the site, gets its
// license through the gateway and reaches the application.
func TestAgentClientExample(t *testing.T) {
	g := newGrantEnv(t, "", 2)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	app := newAgentApp(t)
	certFile, keyFile := agentGatewayCert(t, g.tmp)
	gw := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
		"--tls-cert", certFile, "--tls-key", keyFile)

	exe := filepath.Join(g.tmp, "licensed-client")
	build := exec.Command("go", "build", "-o", exe, "../examples/licensed-client")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	// The vendor signs the example program; the site registers it, so the
	// platform challenge is answered over the program itself.
	sig := filepath.Join(g.tmp, "licensed-client.sig")
	const exampleID = "non-windows/7/400"
	ok(t, g.v.admin("vendor", "image", "sign", "--software-id", exampleID, "-o", sig, exe)...)
	ok(t, "site", "image", "add", "--data", g.siteDir, "--signature", sig, exe)

	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	run := func() (agentAppSeen, string) {
		t.Helper()
		cmd := exec.Command(exe, "--agent", a, "--hw-root", hwA, "--gateway", gw.URL, "--cacert", certFile,
			"--product", "app", "--software-id", exampleID, "/v1/hello")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("licensed-client: %v\n%s%s", err, out, stderr.String())
		}
		var s agentAppSeen
		if err := json.Unmarshal(out, &s); err != nil {
			t.Fatalf("licensed-client output: %v: %q", err, out)
		}
		return s, stderr.String()
	}
	s, log := run()
	var lic licenseOut
	okJSON(t, &lic, "agent", "license", "show", "--data", a, "--hw-root", hwA, "--product", "app")
	if s.ClientID != lic.ClientID || s.LicenseID != itoa(int(lic.LicenseID)) || s.Path != "/v1/hello" || !strings.Contains(log, "200 OK") {
		t.Fatalf("example: upstream saw %+v, license %+v, log %s", s, lic, log)
	}
	cached := agentLicenseFile(t, a)
	if s2, _ := run(); s2.LicenseID != s.LicenseID || !os.SameFile(agentLicenseFile(t, a), cached) {
		t.Fatalf("second run: %+v; the cache was rewritten: %v", s2, !os.SameFile(agentLicenseFile(t, a), cached))
	}
	if rows := agentSiteLicenses(t, g.siteDir); len(rows) != 1 {
		t.Fatalf("site licenses: %+v", rows)
	}
}
