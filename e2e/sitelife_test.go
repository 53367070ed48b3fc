package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
)

// siteInfo is what 'licet site info --json' prints.
type siteInfo struct {
	SiteID             string    `json:"site_id"`
	CertificateExpires time.Time `json:"certificate_expires"`
}

// clientLicense acquires a license for a new agent on machine m from server
// and returns its license file and key.
func (g *grantEnv) clientLicense(t *testing.T, env []string, m, server string) (path string, pem []byte, key *keys.Signer) {
	t.Helper()
	dir, hw := newAgent(t, m)
	if r := licet(t, env, g.acquireArgs(dir, hw, server)...); r.code != 0 {
		t.Fatalf("acquire a license: %s", r)
	}
	path = filepath.Join(dir, "licenses", "app.pem")
	key, err := keys.LoadSigner(filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	return path, mustRead(t, path), key
}

// TestSiteRevoked: the vendor revokes a site. From then on the signed list
// of revoked sites names it: 'licet license verify --revocations' and a
// gateway given the list (as a file, or fetched from the vendor and
// refreshed) refuse its licenses, which pass without the list; the site can
// no longer renew its certificate, buy packs or send usage reports; a list
// out of date is refused rather than trusted.
func TestSiteRevoked(t *testing.T) {
	// The list's life is bounded: an old copy hides later revocations
	// until its next update.
	fails(t, 2, "revocations-valid-for.*out of range", "vendor", "serve", "--data", t.TempDir(), "--revocations-valid-for", "100000h")
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	licPath, licPEM, key := g.clientLicense(t, nil, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", site.URL)
	var info siteInfo
	okJSON(t, &info, "site", "info", "--data", g.siteDir)
	app := newEchoApp(t)
	tmp := t.TempDir()

	// Before the revocation: the list is empty and the license passes.
	before := filepath.Join(tmp, "revoked-before.json")
	ok(t, g.v.admin("vendor", "site", "revocations", "--out", before)...)
	ok(t, "license", "verify", "--root", g.rootPE, "--revocations", before, licPath)
	fetched := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
		"--revocations", g.v.srv.URL+"/v1/revoked-sites", "--revocations-refresh", "1s")
	if code, ch := signedGet(t, fetched.URL+"/x", licPEM, key); code != http.StatusOK {
		t.Fatalf("before the revocation, at the gateway: %d %s", code, ch)
	}

	fails(t, 3, "reason", g.v.admin("vendor", "site", "revoke", "--reason", " ", info.SiteID)...)
	fails(t, 3, "not found", g.v.admin("vendor", "site", "revoke", "--reason", "test", "site-0000000000000000")...)
	ok(t, g.v.admin("vendor", "site", "revoke", "--reason", "duplicate serials in two databases", info.SiteID)...)
	fails(t, 3, "already revoked", g.v.admin("vendor", "site", "revoke", "--reason", "again", info.SiteID)...)
	var sites []struct {
		ID           string     `json:"id"`
		Revoked      *time.Time `json:"revoked"`
		RevokeReason string     `json:"revoke_reason"`
	}
	okJSON(t, &sites, g.v.admin("vendor", "site", "list")...)
	if len(sites) != 1 || sites[0].Revoked == nil || sites[0].RevokeReason != "duplicate serials in two databases" {
		t.Fatalf("vendor site list after the revocation: %+v", sites)
	}

	// The list names the site; verifiers given it refuse the license.
	list := filepath.Join(tmp, "revoked.json")
	ok(t, g.v.admin("vendor", "site", "revocations", "-o", list)...)
	var doc struct {
		Type    string `json:"type"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(mustRead(t, list), &doc); err != nil || doc.Type != "licet.revoked-sites" || doc.Version != 1 {
		t.Fatalf("revocation list file: %+v %v", doc, err)
	}
	ok(t, "license", "verify", "--root", g.rootPE, licPath) // without the list it passes
	fails(t, 3, "revoked by the vendor", "license", "verify", "--root", g.rootPE, "--revocations", list, licPath)
	fromFile := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE, "--revocations", list)
	if code, ch := signedGet(t, fromFile.URL+"/x", licPEM, key); code != http.StatusUnauthorized || !strings.Contains(ch, `error="site_revoked"`) {
		t.Errorf("revoked site's license at a gateway with the list file: %d %s, want 401 site_revoked", code, ch)
	}
	// The gateway that fetches the list refuses it after its next refresh,
	// although it had verified (and cached) the license before.
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, ch := signedGet(t, fetched.URL+"/x", licPEM, key)
		if code == http.StatusUnauthorized && strings.Contains(ch, `error="site_revoked"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refreshing gateway still answers %d %s after the revocation", code, ch)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The revoked site can renew nothing, buy nothing, report nothing.
	fails(t, 4, "revoked", "site", "renew", "--data", g.siteDir)
	renewal := filepath.Join(tmp, "renewal.json")
	ok(t, "site", "renew", "--data", g.siteDir, "--out", renewal)
	fails(t, 4, "revoked", g.v.admin("vendor", "site", "renew", "-o", filepath.Join(tmp, "cert.txt"), renewal)...)
	var o struct{ ID string }
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows", "--quantity", "5")...)
	fails(t, 4, "revoked", "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID)
	fails(t, 4, "revoked", "site", "report", "--data", g.siteDir, "--signed", "--upload")
	// Nor be certified again under its key, with a new enrollment code or by the vendor's admin.
	fails(t, 4, "revoked", g.v.admin("vendor", "site", "certify", "--customer", "acme", filepath.Join(g.siteDir, "site-request.txt"))...)
	_, err := (&api.Client{BaseURL: g.v.srv.URL}).Enroll(t.Context(), g.v.enrollCode(t, "acme"), mustRead(t, filepath.Join(g.siteDir, "site-request.txt")))
	if errs.KindOf(err) != errs.Forbidden || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("enrollment of the revoked site's key with a new code: %v, want forbidden, revoked", err)
	}

	// Out of date lists are refused, not trusted: by 'license verify', and
	// by a gateway, which does not start with one.
	late := []string{"LICET_NOW=" + time.Now().Add(9*24*time.Hour).UTC().Format(time.RFC3339)}
	failsEnv(t, late, 3, "out of date", "license", "verify", "--root", g.rootPE, "--revocations", before, licPath)
	failsEnv(t, late, 3, "out of date", "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
		"--revocations", before, "--listen", "127.0.0.1:0")
	// The current list with the empty list's payload (the revocation
	// removed after signing) is refused.
	var cur, old map[string]any
	if json.Unmarshal(mustRead(t, list), &cur) != nil || json.Unmarshal(mustRead(t, before), &old) != nil {
		t.Fatal("revocation lists are not JSON")
	}
	cur["payload"] = old["payload"]
	forged := filepath.Join(tmp, "forged.json")
	b, _ := json.Marshal(cur)
	if err := os.WriteFile(forged, b, 0o644); err != nil {
		t.Fatal(err)
	}
	fails(t, 3, "does not verify", "license", "verify", "--root", g.rootPE, "--revocations", forged, licPath)
}

// TestSiteCertificateExpiryAndRenewal: the vendor certifies sites for two
// hours (--site-validity). Once the certificate has expired the site says
// so (site report) and grants nothing, and its licenses fail to verify.
// Renewed online against its usage report, it grants licenses that verify
// again; renewed again by file (site renew --out, vendor site renew, site
// renew --install), its report continues the chain, even past a renewal
// file that was lost (the next one carries its report). A renewal from a
// second, fresh database (a report that does not continue the chain) and an
// older renewal file are refused.
func TestSiteCertificateExpiryAndRenewal(t *testing.T) {
	fails(t, 2, "site-validity", "vendor", "serve", "--data", t.TempDir(), "--site-validity", "10m")
	v := newVendorServing(t, "", "--site-validity", "2h")
	g := newGrantEnvWith(t, v, "", 3)
	var info siteInfo
	okJSON(t, &info, "site", "info", "--data", g.siteDir)
	if d := time.Until(info.CertificateExpires); d < 110*time.Minute || d > 2*time.Hour {
		t.Fatalf("site certificate expires in %s, want 2h (--site-validity)", d)
	}
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	var licA licenseOut
	okJSON(t, &licA, g.acquireArgs(a, hwA, site.URL)...)
	licPath := filepath.Join(a, "licenses", "app.pem")
	ok(t, "license", "verify", "--root", g.rootPE, licPath)
	site.stop(t)

	// Three hours later the certificate has expired.
	later := []string{"LICET_NOW=" + time.Now().Add(3*time.Hour).UTC().Format(time.RFC3339)}
	r := licet(t, later, "site", "report", "--data", g.siteDir)
	if r.code != 0 || !strings.Contains(r.stdout, "EXPIRED") || !strings.Contains(r.stdout, "licet site renew") {
		t.Fatalf("site report with an expired certificate: %s", r)
	}
	failsEnv(t, later, 3, "expired", "license", "verify", "--root", g.rootPE, licPath)
	expired := start(t, later, "site", "serve", "--data", g.siteDir)
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	failsEnv(t, later, 4, "expired.*licet site renew", g.acquireArgs(b, hwB, expired.URL)...)
	expired.stop(t)

	// The vendor, three hours later too, renews it online.
	v.srv.stop(t)
	v.srv = start(t, later, "vendor", "serve", "--data", v.dir, "--site-validity", "2h")
	failsEnv(t, later, 2, "--out and --install", "site", "renew", "--data", g.siteDir, "--out", "x", "--install", "y")
	r = licet(t, later, "site", "renew", "--data", g.siteDir, "--vendor", v.srv.URL)
	if r.code != 0 || !strings.Contains(r.stdout, "Renewed") {
		t.Fatalf("online renewal: %s", r)
	}
	okJSON(t, &info, "site", "info", "--data", g.siteDir)
	if d := info.CertificateExpires.Sub(time.Now().Add(3 * time.Hour)); d < 110*time.Minute || d > 2*time.Hour {
		t.Fatalf("renewed certificate ends %s after the renewal, want 2h", d)
	}
	renewed := start(t, later, "site", "serve", "--data", g.siteDir)
	licB, _, _ := g.clientLicense(t, later, "cccccccccccccccccccccccccccccccc", renewed.URL)
	if r := licet(t, later, "license", "verify", "--root", g.rootPE, licB); r.code != 0 {
		t.Fatalf("a license of the renewed site: %s", r)
	}
	// The client whose license ended with the old certificate gets its
	// license (the same ID, the same seat) signed again, valid anew.
	os.RemoveAll(filepath.Join(a, "licenses"))
	r = licet(t, later, append(g.acquireArgs(a, hwA, renewed.URL), "--json")...)
	var againA licenseOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &againA) != nil || againA.LicenseID != licA.LicenseID || !againA.Reissued {
		t.Fatalf("the earlier client after the renewal: %s (first license %d)", r, licA.LicenseID)
	}
	if r := licet(t, later, "license", "verify", "--root", g.rootPE, licPath); r.code != 0 {
		t.Fatalf("the earlier client's license signed again: %s", r)
	}
	renewed.stop(t)

	// By file: two renewal files, each renewed in turn. The older
	// certificate does not replace the newer one, and the older renewal
	// file, whose report is no longer the site's latest, is refused.
	tmp := t.TempDir()
	older, newer := filepath.Join(tmp, "older.json"), filepath.Join(tmp, "newer.json")
	certOlder, certNewer := filepath.Join(tmp, "cert-older.txt"), filepath.Join(tmp, "cert-newer.txt")
	for _, f := range []string{older, newer} {
		if r := licet(t, later, "site", "renew", "--data", g.siteDir, "--out", f); r.code != 0 {
			t.Fatalf("site renew --out: %s", r)
		}
	}
	var renewedSite struct {
		ID      string     `json:"id"`
		Expires *time.Time `json:"expires"`
	}
	if r := licet(t, later, g.v.admin("vendor", "site", "renew", "-o", certOlder, older)...); r.code != 0 {
		t.Fatalf("vendor site renew (older file): %s", r)
	}
	time.Sleep(1100 * time.Millisecond) // certificate times have whole seconds
	r = licet(t, later, g.v.admin("vendor", "site", "renew", "--json", "-o", certNewer, newer)...)
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &renewedSite) != nil || renewedSite.ID != info.SiteID || renewedSite.Expires == nil {
		t.Fatalf("vendor site renew: %s", r)
	}
	if r := licet(t, later, "site", "renew", "--data", g.siteDir, "--install", certNewer); r.code != 0 {
		t.Fatalf("site renew --install: %s", r)
	}
	failsEnv(t, later, 3, "older file", "site", "renew", "--data", g.siteDir, "--install", certOlder)
	failsEnv(t, later, 3, "not site .* latest", g.v.admin("vendor", "site", "renew", "-o", certOlder, older)...)
	var reports []struct {
		Sequence int64 `json:"sequence"`
		Flags    []any `json:"flags"`
	}
	okJSON(t, &reports, g.v.admin("vendor", "report", "list")...)
	if len(reports) != 3 || reports[2].Sequence != 3 || len(reports[1].Flags)+len(reports[2].Flags) != 0 {
		t.Errorf("usage reports after three renewals: %+v", reports)
	}

	// A renewal file lost on the way: the next renewal carries its report
	// too, so the chain has no gap and the renewal passes.
	if r := licet(t, later, "site", "renew", "--data", g.siteDir, "--out", filepath.Join(tmp, "lost.json")); r.code != 0 {
		t.Fatalf("site renew --out: %s", r)
	}
	if r := licet(t, later, "site", "renew", "--data", g.siteDir, "--vendor", v.srv.URL); r.code != 0 {
		t.Fatalf("online renewal after a lost renewal file: %s", r)
	}
	okJSON(t, &reports, g.v.admin("vendor", "report", "list")...)
	if len(reports) != 5 || reports[4].Sequence != 5 || len(reports[3].Flags)+len(reports[4].Flags) != 0 {
		t.Errorf("usage reports after the lost file and the next renewal: %+v", reports)
	}
	// The vendor acknowledged them online: the next renewal file carries no earlier report.
	next := filepath.Join(tmp, "next.json")
	if r := licet(t, later, "site", "renew", "--data", g.siteDir, "--out", next); r.code != 0 {
		t.Fatalf("site renew --out: %s", r)
	}
	var nf struct {
		Earlier []string `json:"earlier_reports"`
	}
	if err := json.Unmarshal(mustRead(t, next), &nf); err != nil || len(nf.Earlier) != 0 {
		t.Errorf("renewal file after an acknowledged renewal carries %d earlier reports (%v), want 0", len(nf.Earlier), err)
	}

	// A second, fresh database starts a new chain: no renewal.
	fresh := filepath.Join(tmp, "fresh.db")
	failsEnv(t, later, 4, "flagged.*chain_break", "site", "renew", "--data", g.siteDir, "--db", fresh, "--vendor", v.srv.URL)
}

// TestSignedRequestToAnotherGateway: a request signed for one gateway and
// sent to another (in front of the same site and application) is refused
// there, as its signed authority is not one of that gateway's public
// names; rewriting the Host header breaks the signature instead.
func TestSignedRequestToAnotherGateway(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	app := newEchoApp(t)
	gwA := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE)
	gwB := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE)
	_, licPEM, key := g.clientLicense(t, nil, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", site.URL)
	hostA, hostB := strings.TrimPrefix(gwA.URL, "http://"), strings.TrimPrefix(gwB.URL, "http://")

	send := func(signedFor, sendTo, host string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+signedFor+"/v1/render", strings.NewReader(`{"scene":1}`))
		if err := gateway.SignRequest(req, []byte(`{"scene":1}`), licPEM, key, time.Now()); err != nil {
			t.Fatal(err)
		}
		req.URL.Host, req.Host = sendTo, host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	if code, ch := send(hostA, hostA, hostA); code != http.StatusOK {
		t.Fatalf("signed for A, sent to A: %d %s", code, ch)
	}
	if code, ch := send(hostA, hostB, hostA); code != http.StatusUnauthorized || !strings.Contains(ch, `error="wrong_gateway"`) {
		t.Errorf("signed for A, sent to B: %d %s, want 401 wrong_gateway", code, ch)
	}
	if code, ch := send(hostA, hostB, hostB); code != http.StatusUnauthorized || !strings.Contains(ch, `error="invalid_signature"`) {
		t.Errorf("signed for A, sent to B with B's Host: %d %s, want 401 invalid_signature", code, ch)
	}
	// Gateway B told that it is also known by A's name accepts it.
	gwAlso := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE, "--public-name", hostA)
	if code, ch := send(hostA, strings.TrimPrefix(gwAlso.URL, "http://"), hostA); code != http.StatusOK {
		t.Errorf("signed for a public name of the gateway: %d %s", code, ch)
	}
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMetricsListen: with --metrics-listen, /metrics is served without a
// token on its own address, for the gateway, the site and the vendor; on the
// main address the gateway refuses it and the servers with tokens ask for one.
func TestMetricsListen(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	app := newEchoApp(t)
	siteMetrics, gwMetrics, vendorMetrics := freeAddr(t), freeAddr(t), freeAddr(t)
	site := start(t, nil, "site", "serve", "--data", g.siteDir, "--metrics-listen", siteMetrics)
	gw := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE, "--metrics-listen", gwMetrics)
	g.v.srv.stop(t)
	vendor := start(t, nil, "vendor", "serve", "--data", g.v.dir, "--metrics-listen", vendorMetrics)
	get := func(url string) (int, string) {
		t.Helper()
		// The metrics listener opens just after the main one announces itself.
		resp, err := http.Get(url)
		for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			resp, err = http.Get(url)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body) // to the end: one Read may stop short of the marker
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	for role, c := range map[string]struct{ main, metrics string }{
		"gateway": {gw.URL, gwMetrics}, "site": {site.URL, siteMetrics}, "vendor": {vendor.URL, vendorMetrics},
	} {
		code, body := get("http://" + c.metrics + "/metrics")
		if code != http.StatusOK || !strings.Contains(body, "licet_http_requests_total") && !strings.Contains(body, "go_goroutines") {
			t.Errorf("%s --metrics-listen /metrics: %d %.200s", role, code, body)
		}
		if code, _ := get("http://" + c.metrics + "/v1/root"); code != http.StatusNotFound {
			t.Errorf("%s metrics address serves /v1/root: %d, want 404 (metrics only)", role, code)
		}
		want := http.StatusUnauthorized
		if role == "gateway" {
			want = http.StatusForbidden
		}
		if code, _ := get(c.main + "/metrics"); code != want {
			t.Errorf("%s /metrics on the main address without a token: %d, want %d", role, code, want)
		}
	}
}
