package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/agent"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/softid"
)

// TestLegacyStore runs site, 'licet gateway --legacy-dir' and an upstream
// application: a legacy client gets its license through the gateway,
// deposits it there, and then reaches the application with Licet-Signature
// alone; another key claiming its client ID is refused; the licenses
// survive a restart of the gateway.
func TestLegacyStore(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)

	app := newEchoApp(t)

	legacyDir := filepath.Join(t.TempDir(), "legacy")
	gwArgs := []string{"gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE, "--legacy-dir", legacyDir}
	gw := start(t, nil, gwArgs...)

	// The client gets its license through the gateway and opens it (the CLI
	// agent does both; a legacy client does the same in its own code), then
	// keeps only its key.
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	var lic licenseOut
	okJSON(t, &lic, "agent", "license", "acquire", "--data", a, "--hw-root", hwA, "--server", gw.URL,
		"--product", "app", "--software-id", softwareID, "--image", g.image)
	licPEM, err := os.ReadFile(filepath.Join(a, "licenses", "app.pem"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.LoadSigner(filepath.Join(a, "client.key"))
	if err != nil {
		t.Fatal(err)
	}

	legacy := func(s gateway.Signer, method, target string, body []byte) *http.Request {
		t.Helper()
		req, err := http.NewRequest(method, gw.URL+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := gateway.SignLegacyRequest(req, body, s, time.Now()); err != nil {
			t.Fatal(err)
		}
		return req
	}
	send := func(req *http.Request) (int, string, []byte) {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), data
	}

	// Before the deposit: 401 license_required.
	if st, ch, body := send(legacy(signer, "GET", "/v1/render", nil)); st != http.StatusUnauthorized || !strings.Contains(ch, "license_required") {
		t.Fatalf("before the deposit: %d %q %s", st, ch, body)
	}

	// The deposit.
	st, _, body := send(legacy(signer, "PUT", gateway.LegacyPath, licPEM))
	if st != http.StatusCreated {
		t.Fatalf("deposit: %d %s", st, body)
	}
	var dep struct {
		ClientID  string `json:"client_id"`
		LicenseID int64  `json:"license_id"`
	}
	if err := json.Unmarshal(body, &dep); err != nil || dep.ClientID != lic.ClientID || dep.LicenseID != lic.LicenseID {
		t.Fatalf("deposit answer %s (%v), want client %s license %d", body, err, lic.ClientID, lic.LicenseID)
	}
	if _, err := os.Stat(filepath.Join(legacyDir, lic.ClientID)); err != nil {
		t.Fatalf("stored license: %v", err)
	}

	// Signed requests with only Licet-Signature reach the application.
	check := func(what string) {
		t.Helper()
		payload := []byte(`{"scene":"` + what + `"}`)
		req := legacy(signer, "POST", "/v1/render?job=7", payload)
		if req.Header.Get(gateway.HeaderLicense) != "" {
			t.Fatal("legacy request carries a license")
		}
		got := doSeen[seen](t, req, http.StatusOK)
		if got.ClientID != lic.ClientID || got.LicenseID != itoa(int(lic.LicenseID)) || got.Product != "app" || got.Body != string(payload) {
			t.Fatalf("%s: upstream saw %+v, want client %s license %d", what, got, lic.ClientID, lic.LicenseID)
		}
	}
	check("first")

	// GET shows the stored license.
	if st, _, body := send(legacy(signer, "GET", gateway.LegacyPath, nil)); st != http.StatusOK || !bytes.Equal(body, licPEM) {
		t.Fatalf("GET %s: %d %s", gateway.LegacyPath, st, body)
	}

	// Another key claiming the client ID is refused, for use and deposit.
	thief, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	steal := func(req *http.Request) *http.Request { return withKeyid(req, lic.ClientID) }
	for _, req := range []*http.Request{
		steal(legacy(thief, "GET", "/v1/render", nil)),
		steal(legacy(thief, "GET", gateway.LegacyPath, nil)),
		steal(legacy(thief, "DELETE", gateway.LegacyPath, nil)),
		steal(legacy(thief, "PUT", gateway.LegacyPath, licPEM)),
	} {
		if st, ch, body := send(req); st != http.StatusUnauthorized || !strings.Contains(ch, "invalid_signature") {
			t.Fatalf("%s %s with a stolen keyid: %d %q %s", req.Method, req.URL.Path, st, ch, body)
		}
	}
	// As itself, with the victim's license: not its license.
	if st, ch, body := send(legacy(thief, "PUT", gateway.LegacyPath, licPEM)); st != http.StatusUnauthorized || !strings.Contains(ch, "wrong_client") {
		t.Fatalf("deposit of another's license: %d %q %s", st, ch, body)
	}
	// A keyid that is a path.
	if st, ch, body := send(withKeyid(legacy(signer, "GET", "/v1/render", nil), "../../../etc/passwd")); st != http.StatusUnauthorized || !strings.Contains(ch, "invalid_signature") {
		t.Fatalf("path keyid: %d %q %s", st, ch, body)
	}
	check("after the attacks")

	// A second legacy client, with no hardware system ID: it acquires with the
	// agent package and an empty system ID, through the gateway.
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	idB, err := agent.LoadWith(b, agent.LoadOptions{HWRoot: hwB})
	if err != nil {
		t.Fatal(err)
	}
	idB.SystemID = ""
	sid, err := softid.Parse(softwareID)
	if err != nil {
		t.Fatal(err)
	}
	licB, _, err := idB.Acquire(context.Background(), agent.AcquireOptions{Server: gw.URL, ProductID: "app", SoftwareID: sid, Image: g.image})
	if err != nil {
		t.Fatalf("acquire with an empty system ID: %v", err)
	}
	pemB, err := os.ReadFile(idB.LicensePath("app"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _, body := send(legacy(idB.Signer, "PUT", gateway.LegacyPath, pemB)); st != http.StatusCreated {
		t.Fatalf("deposit of B: %d %s", st, body)
	}
	if got := doSeen[seen](t, legacy(idB.Signer, "GET", "/v1/whoami", nil), http.StatusOK); got.ClientID != licB.ClientID || got.ClientID == lic.ClientID {
		t.Fatalf("B: upstream saw %+v, want %s", got, licB.ClientID)
	}

	// A restarted gateway keeps the deposited licenses.
	gw.stop(t)
	gw = start(t, nil, gwArgs...)
	check("after a restart")

	// DELETE removes the license; then the client has none here.
	if st, _, body := send(legacy(signer, "DELETE", gateway.LegacyPath, nil)); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	if st, ch, body := send(legacy(signer, "GET", "/v1/render", nil)); st != http.StatusUnauthorized || !strings.Contains(ch, "license_required") {
		t.Fatalf("after DELETE: %d %q %s", st, ch, body)
	}
}

// withKeyid sets the keyid of req's signature (in Signature-Input) to keyid.
func withKeyid(req *http.Request, keyid string) *http.Request {
	h := req.Header.Get(gateway.HeaderSignatureInput)
	req.Header.Set(gateway.HeaderSignatureInput, regexp.MustCompile(`keyid="[^"]*"`).ReplaceAllLiteralString(h, `keyid="`+keyid+`"`))
	return req
}

// TestLegacyGatewayFlags: --legacy-dir is documented and must be usable.
func TestLegacyGatewayFlags(t *testing.T) {
	if out := ok(t, "gateway", "--help"); !strings.Contains(out, "-legacy-dir") {
		t.Fatalf("gateway --help does not mention --legacy-dir: %s", out)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	g := newVendor(t, "")
	fails(t, 3, `not a directory`, "gateway", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:1", "--site", "http://127.0.0.1:2",
		"--product", "app", "--root", filepath.Join(g.dir, "root.crt"), "--legacy-dir", file)
}

// TestLegacyUpgrade: with 'licet gateway --legacy-dir --min-version', a
// deposit of a license too old is refused without asking the site for an
// upgrade, while a request with a stored old license is upgraded on the way
// and the upgraded license replaces the stored one: the site is asked once.
func TestLegacyUpgrade(t *testing.T) {
	g := newGrantEnv(t, "", 3) // product app 2.0
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	app := newEchoApp(t)
	tokenFile := siteTokenFile(t, g.siteDir) // the gateway upgrades with it
	legacyDir := filepath.Join(t.TempDir(), "legacy")
	gwArgs := []string{"gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE, "--legacy-dir", legacyDir,
		"--site-token-file", tokenFile}
	gw := start(t, nil, gwArgs...)

	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	var lic licenseOut
	okJSON(t, &lic, "agent", "license", "acquire", "--data", a, "--hw-root", hwA, "--server", gw.URL,
		"--product", "app", "--software-id", softwareID, "--image", g.image)
	licPEM := mustRead(t, filepath.Join(a, "licenses", "app.pem"))
	signer, err := keys.LoadSigner(filepath.Join(a, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, target string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, gw.URL+target, bytes.NewReader(body))
		if err := gateway.SignLegacyRequest(req, body, signer, time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Logf("%s %s: %s %s", method, target, resp.Status, b)
		}
		return resp
	}
	if resp := send("PUT", gateway.LegacyPath, licPEM); resp.StatusCode != http.StatusCreated {
		t.Fatalf("deposit: %s", resp.Status)
	}

	// Version 3.0 is released, the site holds an upgrade seat, and the
	// gateway now needs 3.0.
	ok(t, g.v.admin("vendor", "product", "release", "--id", "app", "--version", "3.0")...)
	var o struct{ ID string }
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows",
		"--quantity", "1", "--upgrade-from", "2.0..2.9")...)
	ok(t, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID)
	gw.stop(t)
	gw = start(t, nil, append(gwArgs, "--min-version", "3.0")...)

	upgradesUsed := func() int {
		var rep struct {
			Products []struct {
				UpgradesUsed int `json:"upgrades_used"`
			}
		}
		okJSON(t, &rep, "site", "report", "--data", g.siteDir, "--json")
		if len(rep.Products) != 1 {
			t.Fatalf("report: %+v", rep.Products)
		}
		return rep.Products[0].UpgradesUsed
	}

	// Depositing the old license again: refused as too old, no exchange.
	resp := send("PUT", gateway.LegacyPath, licPEM)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="old_version"`) {
		t.Fatalf("deposit of a 2.0 license at a 3.0 gateway: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	if n := upgradesUsed(); n != 0 {
		t.Fatalf("a deposit used %d upgrade seats", n)
	}

	// A request with the stored license: upgraded on the way, and stored.
	if resp := send("POST", "/v1/render", []byte("job")); resp.StatusCode != http.StatusOK {
		t.Fatalf("legacy request with an upgradable stored license: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	if last := app.lastSeen(); last.Version != "3.0" || last.LicenseID == itoa(int(lic.LicenseID)) {
		t.Fatalf("upstream saw license %s version %s; want a new 3.0 license", last.LicenseID, last.Version)
	}
	upgraded := app.lastSeen().LicenseID
	stored := mustRead(t, filepath.Join(legacyDir, lic.ClientID))
	if bytes.Equal(stored, licPEM) {
		t.Fatal("the stored license was not replaced by the upgraded one")
	}
	// A restarted gateway (which forgot the exchange) uses the stored
	// upgraded license: no second exchange.
	gw.stop(t)
	gw = start(t, nil, append(gwArgs, "--min-version", "3.0")...)
	for range 2 {
		if resp := send("GET", "/v1/render", nil); resp.StatusCode != http.StatusOK || resp.Header.Get(gateway.HeaderLicenseUpdate) != "" {
			t.Fatalf("after the upgrade: %s, update %q", resp.Status, resp.Header.Get(gateway.HeaderLicenseUpdate))
		}
		if last := app.lastSeen(); last.LicenseID != upgraded || last.Version != "3.0" {
			t.Fatalf("after the upgrade the upstream saw license %s version %s, want %s 3.0", last.LicenseID, last.Version, upgraded)
		}
	}
	if n := upgradesUsed(); n != 1 {
		t.Fatalf("%d upgrade seats used, want 1", n)
	}
}

// TestLegacyAgentCommands drives the legacy store with the real binary:
// 'licet agent legacy deposit' and 'licet agent legacy request'.
func TestLegacyAgentCommands(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	app := newEchoApp(t)
	gw := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
		"--legacy-dir", filepath.Join(t.TempDir(), "legacy"))
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	var lic licenseOut
	okJSON(t, &lic, "agent", "license", "acquire", "--data", a, "--hw-root", hwA, "--server", gw.URL,
		"--product", "app", "--software-id", softwareID, "--image", g.image)
	legacy := func(args ...string) []string {
		return append([]string{"agent", "legacy", args[0], "--data", a, "--hw-root", hwA, "--server", gw.URL}, args[1:]...)
	}

	// Before the deposit the gateway knows no license for the key.
	fails(t, 4, "license_required", legacy("request", "/v1/render")...)
	out := ok(t, legacy("deposit", "--product", "app")...)
	if !strings.Contains(out, "Deposited license "+itoa(int(lic.LicenseID))) || !strings.Contains(out, lic.ClientID) {
		t.Fatalf("deposit printed %q", out)
	}
	var dep struct {
		LicenseID int64 `json:"license_id"`
		Replaced  bool  `json:"replaced"`
	}
	okJSON(t, &dep, legacy("deposit", "--license", filepath.Join(a, "licenses", "app.pem"), "--json")...)
	if dep.LicenseID != lic.LicenseID || !dep.Replaced {
		t.Fatalf("second deposit: %+v", dep)
	}
	// Requests signed by the key alone reach the application as the license.
	var answer struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	okJSON(t, &answer, legacy("request", "--json", "-H", "Content-Type: application/json", "--body", `{"scene":1}`, "/v1/render?job=1")...)
	var got seen
	if err := json.Unmarshal([]byte(answer.Body), &got); err != nil || answer.Status != 200 || got.ClientID != lic.ClientID ||
		got.LicenseID != itoa(int(lic.LicenseID)) || got.Body != `{"scene":1}` {
		t.Fatalf("legacy request: %+v (%v)", answer, err)
	}
	// The stored license, shown and removed.
	if out := ok(t, legacy("request", gateway.LegacyPath)...); out != string(mustRead(t, filepath.Join(a, "licenses", "app.pem"))) {
		t.Fatalf("GET %s printed %q", gateway.LegacyPath, out)
	}
	ok(t, legacy("request", "-X", "DELETE", gateway.LegacyPath)...)
	fails(t, 4, "license_required", legacy("request", "/v1/render")...)

	// Another client cannot deposit A's license: the deposit is signed by its key.
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	fails(t, 4, "wrong_client|client", "agent", "legacy", "deposit", "--data", b, "--hw-root", hwB, "--server", gw.URL,
		"--license", filepath.Join(a, "licenses", "app.pem"))
	fails(t, 2, "--product .* or --license", legacy("deposit")...)
	fails(t, 3, "no license of other", legacy("deposit", "--product", "other")...)
}
