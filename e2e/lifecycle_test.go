package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Issue 12: the offline root, token lifecycle and what unauthenticated
// callers learn, each attack through the real binary.

// getWithToken GETs url with a bearer token.
func getWithToken(url, token string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return http.DefaultClient.Do(req)
}

// siteToken makes a site API token of scope (extra flags appended) and
// returns its secret.
func siteToken(t *testing.T, dir, scope string, extra ...string) string {
	t.Helper()
	var out struct{ Token, ID string }
	okJSON(t, &out, append([]string{"site", "token", "create", "--data", dir, "--name", "t-" + scope, "--scope", scope, "--json"}, extra...)...)
	if !strings.HasPrefix(out.Token, "licet_") {
		t.Fatalf("site token create printed no token: %+v", out)
	}
	return out.Token
}

// status GETs url with token and returns the status and body.
func status(t *testing.T, url, token string) (int, string) {
	t.Helper()
	resp, err := getWithToken(url, token)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// TestOfflineRoot: 'licet vendor init' makes an issuing CA; the root key is
// exported (and leaves the data directory); a vendor server without root.key
// still enrolls sites, whose licenses verify root → issuing → site; an agent
// pinned to another root's fingerprint refuses the server's; a site's
// upgrade token bound to another product is refused.
func TestOfflineRoot(t *testing.T) {
	v := newVendor(t, "")
	if _, err := os.Stat(filepath.Join(v.dir, "issuing.crt")); err != nil {
		t.Fatalf("vendor init made no issuing CA: %v", err)
	}
	v.srv.stop(t)
	keyFile := filepath.Join(t.TempDir(), "root-offline.key")
	fails(t, 2, `-o`, "vendor", "root", "export", "--data", v.dir)
	rootKey, _ := os.ReadFile(filepath.Join(v.dir, "root.key"))
	r := licet(t, nil, "vendor", "root", "export", "--data", v.dir, "-o", keyFile)
	if r.code != 0 || !strings.Contains(r.stderr, "WARNING") {
		t.Fatalf("root export: %s", r)
	}
	if _, err := os.Stat(filepath.Join(v.dir, "root.key")); !os.IsNotExist(err) {
		t.Fatalf("root.key still in the data directory after export: %v", err)
	}
	if got, err := os.ReadFile(keyFile); err != nil || !bytes.Equal(got, rootKey) {
		t.Fatalf("exported key differs from root.key: %v", err)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("exported key mode %v, want 0600", fi.Mode().Perm())
	}
	fails(t, 3, `exported already`, "vendor", "root", "export", "--data", v.dir, "-o", keyFile+".2")

	// The server runs without the root key and still enrolls a site.
	v.srv = start(t, nil, "vendor", "serve", "--data", v.dir)
	g := newGrantEnvWith(t, v, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	a, hw := newAgent(t, "cccccccccccccccccccccccccccccccc")
	var lic licenseOut
	okJSON(t, &lic, "agent", "license", "acquire", "--data", a, "--hw-root", hw, "--server", site.URL,
		"--product", "app", "--software-id", softwareID, "--image", g.image)
	licPath := filepath.Join(a, "licenses", "app.pem")
	ok(t, "license", "verify", "--root", g.rootPE, "--product", "app", licPath)
	licPEM, _ := os.ReadFile(licPath)
	if n := bytes.Count(licPEM, []byte("BEGIN CERTIFICATE")); n != 3 {
		t.Fatalf("license file holds %d certificates, want 3 (license, site, issuing)", n)
	}

	t.Run("site certificate issued by a site", func(t *testing.T) {
		id, err := licenseserver.LoadIdentity(g.siteDir)
		if err != nil {
			t.Fatal(err)
		}
		evilKey, _ := keys.GenerateSigner()
		evilHPKE, _ := keys.GenerateDecrypter()
		csr, _ := pki.NewSiteRequest(evilKey, evilHPKE.PublicBytes(), "evil")
		req, _ := pki.ParseSiteRequest(csr)
		evilDER, err := (&pki.Authority{Cert: id.Site().Cert, Signer: id.Signer}).CertifySite(req, "acme", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		attrs := verify.Attributes{LicenseID: 77, ClientID: verify.ClientID(pub), ProductID: "app", ProductVersion: "2.0", Platform: "non-windows", Features: []string{"everything"}}
		ec, err := x509.ParseCertificate(evilDER)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := license.Issue(&pki.Authority{Cert: ec, Signer: evilKey}, pub, attrs, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "forged.pem")
		os.WriteFile(file, license.EncodePEM(append([][]byte{forged, evilDER}, id.SiteChain()...)), 0o644)
		fails(t, 3, `not certified|issuing CA`, "license", "verify", "--root", g.rootPE, "--product", "app", file)
	})

	t.Run("agent pinned to another root", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "agent")
		hw := fakeHardware(t, "dddddddddddddddddddddddddddddddd")
		ok(t, "agent", "init", "--data", dir, "--platform", "non-windows", "--hw-root", hw, "--root-fingerprint", strings.Repeat("ab", 32))
		fails(t, 3, `not the .* this agent was set up to trust`, "agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", site.URL,
			"--product", "app", "--software-id", softwareID, "--image", g.image)
		if _, err := os.Stat(filepath.Join(dir, "root.crt")); !os.IsNotExist(err) {
			t.Fatalf("a root that does not match the pin was pinned: %v", err)
		}
		rootDER, _ := os.ReadFile(g.rootPE)
		blk, _ := pem.Decode(rootDER)
		dir2 := filepath.Join(t.TempDir(), "agent")
		ok(t, "agent", "init", "--data", dir2, "--platform", "non-windows", "--hw-root", hw, "--root-fingerprint", pki.Fingerprint(blk.Bytes))
		ok(t, "agent", "license", "acquire", "--data", dir2, "--hw-root", hw, "--server", site.URL,
			"--product", "app", "--software-id", softwareID, "--image", g.image)
	})

	t.Run("upgrade token bound to another product", func(t *testing.T) {
		tok := siteToken(t, g.siteDir, "upgrade", "--product", "other")
		body, _ := json.Marshal(map[string]string{"license": string(licPEM)})
		req, _ := http.NewRequest(http.MethodPost, site.URL+"/v1/upgrades", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(msg), "bound to product") {
			t.Fatalf("upgrade with a token of another product: %d %s", resp.StatusCode, msg)
		}
	})
}

// TestTokenLifecycle: several vendor admin tokens; one revoked is refused at
// once by a second vendor process on the same database; an expired one is
// refused; /metrics needs a token of scope metrics (or admin), which opens
// nothing else; a database driver's error text does not reach the client.
func TestTokenLifecycle(t *testing.T) {
	v := newVendor(t, "")
	var created struct {
		ID, Token, Status string
		Expires           *time.Time
	}
	okJSON(t, &created, v.admin("vendor", "apitoken", "create", "--name", "ops", "--json")...)
	if created.Status != "active" || created.Expires == nil || time.Until(*created.Expires) < 89*24*time.Hour {
		t.Fatalf("apitoken create: %+v", created)
	}
	var list []struct{ ID, Name, Scope, Status string }
	okJSON(t, &list, v.admin("vendor", "apitoken", "list", "--json")...)
	if len(list) != 2 || list[0].Name != "initial admin token" || list[1].ID != created.ID {
		t.Fatalf("apitoken list: %+v", list)
	}
	second := start(t, nil, "vendor", "serve", "--data", v.dir)
	ok(t, "vendor", "customer", "list", "--server", second.URL, "--token", created.Token)
	ok(t, v.admin("vendor", "apitoken", "revoke", created.ID)...)
	fails(t, 4, `revoked`, "vendor", "customer", "list", "--server", second.URL, "--token", created.Token)
	fails(t, 4, `revoked`, "vendor", "customer", "list", "--server", v.srv.URL, "--token", created.Token)

	// Expired.
	var short struct{ Token string }
	okJSON(t, &short, v.admin("vendor", "apitoken", "create", "--name", "short", "--expires", "2s", "--json")...)
	ok(t, "vendor", "customer", "list", "--server", v.srv.URL, "--token", short.Token)
	time.Sleep(2100 * time.Millisecond)
	fails(t, 4, `expired`, "vendor", "customer", "list", "--server", v.srv.URL, "--token", short.Token)

	// /metrics.
	var m struct{ Token string }
	okJSON(t, &m, v.admin("vendor", "apitoken", "create", "--name", "prometheus", "--scope", "metrics", "--json")...)
	if code, _ := status(t, v.srv.URL+"/metrics", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d, want 401", code)
	}
	if code, body := status(t, v.srv.URL+"/metrics", m.Token); code != http.StatusOK || !strings.Contains(body, "licet_http_requests_total") {
		t.Fatalf("/metrics with a metrics token: %d", code)
	}
	if code, _ := status(t, v.srv.URL+"/v1/customers", m.Token); code != http.StatusForbidden {
		t.Fatalf("/v1/customers with a metrics token: %d, want 403", code)
	}

	// A unique-constraint violation: the answer says what to do, not what
	// the driver said.
	r := fails(t, 3, `already exists`, v.admin("vendor", "customer", "add", "--id", "acme", "--name", "Again")...)
	for _, leak := range []string{"UNIQUE", "constraint", "v_customers", "SQLSTATE", "sqlite"} {
		if strings.Contains(r.stderr+r.stdout, leak) {
			t.Fatalf("the answer leaks the database driver's error (%q): %s", leak, r)
		}
	}
}
