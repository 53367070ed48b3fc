package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
)

// TestGatewayFlow runs vendor, site and 'licet gateway' as processes in front
// of an upstream application: unlicensed requests are refused, an agent gets
// its license through the gateway, and signed requests reach the application
// with the verified identity, once.
func TestGatewayFlow(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)

	app := newEchoApp(t)

	gw := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE)

	// Its own endpoints.
	// /metrics is served on --metrics-listen only (the gateway keeps no tokens).
	for p, want := range map[string]int{"/healthz": http.StatusOK, "/metrics": http.StatusForbidden} {
		resp, err := http.Get(gw.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("gateway %s: %s, want %d", p, resp.Status, want)
		}
	}

	// No license: 401 with a challenge naming the site.
	resp, err := http.Get(gw.URL + "/v1/render")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no license: want 401, got %s", resp.Status)
	}
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="license_required"`) || !strings.Contains(ch, site.URL) {
		t.Fatalf("no license: WWW-Authenticate %q", ch)
	}

	// The agent gets its license through the gateway.
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	var lic licenseOut
	okJSON(t, &lic, "agent", "license", "acquire", "--data", a, "--hw-root", hwA, "--server", gw.URL,
		"--product", "app", "--software-id", softwareID, "--image", g.image)
	if lic.LicenseID == 0 || lic.ClientID == "" || lic.ProductID != "app" {
		t.Fatalf("license through the gateway: %+v", lic)
	}
	licPEM, err := os.ReadFile(filepath.Join(a, "licenses", "app.pem"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.LoadSigner(filepath.Join(a, "client.key"))
	if err != nil {
		t.Fatal(err)
	}

	// A signed request reaches the application with the verified identity.
	body := []byte(`{"scene":1}`)
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/render?job=42", nil)
	if err := gateway.SignRequest(req, body, licPEM, signer, time.Now()); err != nil {
		t.Fatal(err)
	}
	replay := req.Clone(req.Context())
	got := doSeen[seen](t, req, http.StatusOK)
	if got.ClientID != lic.ClientID || got.LicenseID != itoa(int(lic.LicenseID)) || got.Product != "app" || got.Body != string(body) {
		t.Fatalf("upstream saw %+v, want client %s license %d", got, lic.ClientID, lic.LicenseID)
	}

	// The same request again: refused as a replay.
	replay.Body = io.NopCloser(strings.NewReader(string(body)))
	resp, err = http.DefaultClient.Do(replay)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "replayed_request") {
		t.Fatalf("replay: want 401 replayed_request, got %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	// A forged identity header next to a valid signature is replaced.
	req, _ = http.NewRequest(http.MethodGet, gw.URL+"/v1/whoami", nil)
	req.Header.Set("Licet-Client-Id", "client-evil")
	req.Header.Set("Licet-License-Id", "1")
	if err := gateway.SignRequest(req, nil, licPEM, signer, time.Now()); err != nil {
		t.Fatal(err)
	}
	got = doSeen[seen](t, req, http.StatusOK)
	if got.ClientID != lic.ClientID || got.LicenseID != itoa(int(lic.LicenseID)) {
		t.Fatalf("forged headers: upstream saw %+v, want client %s", got, lic.ClientID)
	}

	// The relayed root is the site's.
	resp, err = http.Get(gw.URL + "/v1/root")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/root through the gateway: %s", resp.Status)
	}
}

// seen is what the echo application behind a gateway saw: the identity the
// gateway verified, and the body.
type seen struct {
	ClientID  string `json:"client_id"`
	LicenseID string `json:"license_id"`
	Product   string `json:"product"`
	Version   string `json:"version"`
	Body      string `json:"body"`
}

// newEchoApp is an application for a gateway to guard: it answers with what
// it saw, as JSON, and remembers the last request's.
func newEchoApp(t *testing.T) *echoApp {
	a := &echoApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := seen{
			ClientID:  r.Header.Get(gateway.HeaderClientID),
			LicenseID: r.Header.Get(gateway.HeaderLicenseID),
			Product:   r.Header.Get(gateway.HeaderProduct),
			Version:   r.Header.Get(gateway.HeaderVersion),
			Body:      string(body),
		}
		a.mu.Lock()
		a.last = s
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(a.Close)
	return a
}

type echoApp struct {
	*httptest.Server
	mu   sync.Mutex
	last seen
}

// lastSeen returns what the last request showed the application.
func (a *echoApp) lastSeen() seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// siteTokenFile makes a site token of scope upgrade (a gateway's) and
// writes it to a file for 'licet gateway --site-token-file'.
func siteTokenFile(t *testing.T, siteDir string) string {
	t.Helper()
	var tok struct{ Token string }
	okJSON(t, &tok, "site", "token", "create", "--data", siteDir, "--name", "gateway-1", "--json")
	f := filepath.Join(t.TempDir(), "site-token")
	if err := os.WriteFile(f, []byte(tok.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGatewayBadFlags checks the gateway's usage errors.
func TestGatewayBadFlags(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.crt")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	base := []string{"gateway", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:1", "--site", "http://127.0.0.1:2", "--product", "app"}
	fails(t, 2, `--root is required`, base...)
	fails(t, 3, `cannot read the vendor root`, append(base, "--root", filepath.Join(dir, "missing.crt"))...)
	fails(t, 3, `not a licet vendor root`, append(base, "--root", junk)...)
	fails(t, 2, `--upstream "ftp://x" is not`, "gateway", "--upstream", "ftp://x", "--site", "http://127.0.0.1:2", "--product", "app", "--root", junk)
	if out := ok(t, "gateway", "--help"); !strings.Contains(out, "-upstream") {
		t.Fatalf("gateway --help: %s", out)
	}
}

// doSeen sends req, checks the status and decodes the JSON answer.
func doSeen[T any](t *testing.T, req *http.Request, status int) T {
	t.Helper()
	var v T
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("%s %s: want %d, got %s: %s", req.Method, req.URL, status, resp.Status, data)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s %s: %v: %s", req.Method, req.URL, err, data)
	}
	return v
}
