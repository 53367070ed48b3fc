package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Issue 12: licenses bound to the sale, capped temporary licenses, a license
// that stays on its machine, gateways scoped to their own sites. Each test
// plays the hostile customer with the real binary.

// acquireArgs are the arguments of 'agent license acquire' against server.
func (g *grantEnv) acquireArgs(dir, hw, server string) []string {
	return []string{"agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", server,
		"--product", "app", "--software-id", softwareID, "--image", g.image}
}

// signedGet sends a GET signed with the license file licPEM and key to a
// gateway and returns the status and the WWW-Authenticate challenge.
func signedGet(t *testing.T, url string, licPEM []byte, key *keys.Signer) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if err := gateway.SignRequest(req, nil, licPEM, key, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// TestLicenseOutsideTheSale: a customer signs licenses with its own site.key
// for a product it never bought, with features "everything", with a serial
// outside its pack's range, or without the pack statement. The offline
// verifier (licet license verify) and the gateway refuse every one; the
// genuine license passes both. A license without a statement passes only
// with --allow-unbound.
func TestLicenseOutsideTheSale(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	app := newEchoApp(t)
	gw := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE)
	gwPro := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app-pro", "--root", g.rootPE)

	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	ok(t, g.acquireArgs(a, hwA, site.URL)...)
	genuinePath := filepath.Join(a, "licenses", "app.pem")
	licPEM, err := os.ReadFile(genuinePath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.LoadSigner(filepath.Join(a, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(g.rootPE)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verify.New(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	genuine, err := v.Verify(licPEM, verify.Options{})
	if err != nil {
		t.Fatalf("the genuine license: %v", err)
	}
	if genuine.Statement == nil || genuine.Statement.PackID != genuine.PackID || genuine.Statement.SiteID != genuine.SiteID {
		t.Fatalf("the genuine license carries no statement of its pack: %+v", genuine.Statement)
	}
	ok(t, "license", "verify", "--root", g.rootPE, genuinePath)
	if code, ch := signedGet(t, gw.URL+"/x", licPEM, key); code != http.StatusOK {
		t.Fatalf("the genuine license at the gateway: %d %s", code, ch)
	}

	// The customer's own key and certificate, as on its disk.
	id, err := licenseserver.LoadIdentity(g.siteDir)
	if err != nil {
		t.Fatal(err)
	}
	siteCA := &pki.Authority{Cert: id.Site().Cert, Signer: id.Signer}
	forge := func(name string, mod func(*verify.Attributes)) (string, []byte) {
		attrs := genuine.Attributes
		attrs.Features = slices.Clone(attrs.Features)
		mod(&attrs)
		der, err := license.Issue(siteCA, key.Public(), attrs, time.Now().Add(-time.Hour), genuine.NotAfter)
		if err != nil {
			t.Fatal(err)
		}
		pem := license.EncodePEM(id.LicenseChain(der))
		path := filepath.Join(t.TempDir(), name+".pem")
		if err := os.WriteFile(path, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		return path, pem
	}
	st := genuine.Statement
	for _, tc := range []struct {
		name    string
		mod     func(*verify.Attributes)
		product string
		gw      *server
	}{
		{"a product never sold", func(a *verify.Attributes) { a.ProductID = "app-pro" }, "app-pro", gwPro},
		{"features everything", func(a *verify.Attributes) { a.Features = []string{"everything"} }, "app", gw},
		{"a serial outside the pack", func(a *verify.Attributes) { a.LicenseID = st.BeginSerial + st.Quantity + 1000 }, "app", gw},
	} {
		path, pem := forge(strings.ReplaceAll(tc.name, " ", "-"), tc.mod)
		fails(t, 3, "not covered by a pack the vendor sold", "license", "verify", "--root", g.rootPE, "--product", tc.product, path)
		fails(t, 3, "not covered by a pack the vendor sold", "license", "verify", "--root", g.rootPE, "--allow-unbound", path)
		if code, ch := signedGet(t, tc.gw.URL+"/x", pem, key); code != http.StatusUnauthorized || !strings.Contains(ch, `error="not_sold"`) {
			t.Errorf("%s at the gateway: %d %s, want 401 not_sold", tc.name, code, ch)
		}
	}

	// Without the statement (as a site older than statements wrote them, or
	// with the site key alone): refused, unless the verifier is told to
	// accept unbound licenses for a transition.
	path, pem := forge("unbound", func(a *verify.Attributes) { a.PackStatement = nil; a.Features = []string{"everything"} })
	fails(t, 3, "carries no pack statement", "license", "verify", "--root", g.rootPE, path)
	ok(t, "license", "verify", "--root", g.rootPE, "--allow-unbound", path)
	if code, ch := signedGet(t, gw.URL+"/x", pem, key); code != http.StatusUnauthorized || !strings.Contains(ch, `error="not_sold"`) {
		t.Errorf("unbound license at the gateway: %d %s, want 401 not_sold", code, ch)
	}
	gwOld := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE, "--allow-unbound")
	if code, ch := signedGet(t, gwOld.URL+"/x", pem, key); code != http.StatusOK {
		t.Errorf("unbound license at a gateway with --allow-unbound: %d %s", code, ch)
	}
}

// TestTemporaryLicensesCapped: temporary licenses cannot be farmed. A 1-seat
// pack allows one temporary license (max(1, seats/10)) of at most 60 days,
// whatever --temporary-days says; further machines get none; an expired
// pack gives none.
func TestTemporaryLicensesCapped(t *testing.T) {
	g := newGrantEnv(t, "", 1)
	site := start(t, nil, "site", "serve", "--data", g.siteDir, "--temporary-days", "1825")
	machines := []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccccccccccc", "dddddddddddddddddddddddddddddddd"}
	type grant struct {
		LicenseID int64     `json:"license_id"`
		Temporary bool      `json:"temporary"`
		NotAfter  time.Time `json:"not_after"`
	}
	got := make([]grant, 2)
	for i, m := range machines[:2] {
		dir, hw := newAgent(t, m)
		okJSON(t, &got[i], g.acquireArgs(dir, hw, site.URL)...)
		ok(t, "license", "verify", "--root", g.rootPE, filepath.Join(dir, "licenses", "app.pem"))
	}
	if got[0].Temporary || !got[1].Temporary {
		t.Fatalf("grants: %+v; want a seat, then a temporary license", got)
	}
	if left := time.Until(got[1].NotAfter); left > 60*24*time.Hour+time.Minute {
		t.Errorf("temporary license valid for %s with --temporary-days 1825; the pack allows 60 days", left)
	}
	if got[1].LicenseID <= got[0].LicenseID || got[1].LicenseID >= 1<<40 {
		t.Errorf("temporary license ID %d: want one from the pack's own range, after its seats (%d)", got[1].LicenseID, got[0].LicenseID)
	}
	for _, m := range machines[2:] {
		dir, hw := newAgent(t, m)
		r := licet(t, nil, g.acquireArgs(dir, hw, site.URL)...)
		if r.code == 0 || !strings.Contains(r.stderr, "allows another temporary license") {
			t.Fatalf("farmed temporary license on machine %s: %s", m[:4], r)
		}
	}

	// An expired pack gives no temporary license.
	h := newGrantEnv(t, "", 1)
	var o struct{ ID string }
	okJSON(t, &o, h.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows",
		"--quantity", "20", "--expires", time.Now().Add(48*time.Hour).Format(time.DateOnly))...)
	ok(t, "site", "pack", "buy", "--data", h.siteDir, "--order", o.ID)
	later := []string{"LICET_NOW=" + time.Now().Add(5*24*time.Hour).Format(time.RFC3339)}
	hsite := start(t, later, "site", "serve", "--data", h.siteDir)
	// The 1-seat pack (no expiry) serves one seat and one temporary license.
	// (The agents, whose clock is 5 days behind the site's, then refuse
	// those licenses as not yet valid; the site granted them all the same.)
	for _, m := range machines[:2] {
		dir, hw := newAgent(t, m)
		if r := licet(t, nil, h.acquireArgs(dir, hw, hsite.URL)...); !strings.Contains(r.stderr, "not yet valid") {
			t.Fatalf("grant from the pack without expiry: %s", r)
		}
	}
	dir, hw := newAgent(t, machines[2])
	if r := licet(t, nil, h.acquireArgs(dir, hw, hsite.URL)...); r.code == 0 || !strings.Contains(r.stderr, "allows another temporary license") {
		t.Fatalf("temporary license from an expired 20-seat pack: %s", r)
	}
}

// TestTemporaryAllowancePerOrder: the vendor sets the temporary-license
// allowance per order. An order with --temporary-licenses 2
// --temporary-days 3 gives a pack whose site, once its seats are taken,
// issues exactly two temporary licenses of at most 3 days (whatever the
// site's --temporary-days) and refuses the third; an order with
// --temporary-licenses 0 gives none. Out-of-range values are refused.
func TestTemporaryAllowancePerOrder(t *testing.T) {
	v := newVendor(t, "")
	g := newGrantEnvOrder(t, v, "", "--quantity", "2", "--temporary-licenses", "2", "--temporary-days", "3")
	type order struct {
		ID                string `json:"id"`
		TemporaryLicenses *int   `json:"temporary_licenses"`
		TemporaryDays     *int   `json:"temporary_days"`
	}
	var shown order
	okJSON(t, &shown, v.admin("vendor", "order", "show", g.order)...)
	if shown.ID != g.order || shown.TemporaryLicenses == nil || *shown.TemporaryLicenses != 2 || shown.TemporaryDays == nil || *shown.TemporaryDays != 3 {
		t.Fatalf("vendor order show --json: %+v; want 2 temporary licenses of 3 days", shown)
	}
	if out := ok(t, v.admin("vendor", "order", "show", g.order)...); !strings.Contains(out, "Temporary: 2 temporary licenses of at most 3 days") {
		t.Errorf("vendor order show:\n%s", out)
	}
	if out := ok(t, v.admin("vendor", "order", "list")...); !strings.Contains(out, "temporary_licenses") || !regexp.MustCompile(g.order+`.* 2 +3 `).MatchString(out) {
		t.Errorf("vendor order list does not show the allowance 2 / 3 days:\n%s", out)
	}
	var packs []struct {
		TemporaryCount   int64 `json:"temporary_count"`
		TemporaryMaxDays int64 `json:"temporary_max_days"`
	}
	okJSON(t, &packs, "site", "pack", "list", "--data", g.siteDir, "--all")
	if len(packs) != 1 || packs[0].TemporaryCount != 2 || packs[0].TemporaryMaxDays != 3 {
		t.Fatalf("installed pack: %+v; want an allowance of 2 temporary licenses of 3 days", packs)
	}

	site := start(t, nil, "site", "serve", "--data", g.siteDir) // --temporary-days: the default, 60
	type grant struct {
		LicenseID int64     `json:"license_id"`
		Temporary bool      `json:"temporary"`
		NotAfter  time.Time `json:"not_after"`
	}
	machines := []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccccccccccccc",
		"dddddddddddddddddddddddddddddddd", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}
	seen := map[int64]bool{}
	for i, m := range machines[:4] {
		dir, hw := newAgent(t, m)
		var got grant
		okJSON(t, &got, g.acquireArgs(dir, hw, site.URL)...)
		ok(t, "license", "verify", "--root", g.rootPE, filepath.Join(dir, "licenses", "app.pem"))
		if want := i >= 2; got.Temporary != want {
			t.Fatalf("grant %d: temporary %v, want %v (two seats, then temporary licenses)", i, got.Temporary, want)
		}
		if got.Temporary && time.Until(got.NotAfter) > 3*24*time.Hour+time.Minute {
			t.Errorf("temporary license %d valid until %s: the order allows 3 days", got.LicenseID, got.NotAfter)
		}
		if seen[got.LicenseID] {
			t.Errorf("license ID %d granted twice", got.LicenseID)
		}
		seen[got.LicenseID] = true
	}
	dir, hw := newAgent(t, machines[4])
	if r := licet(t, nil, g.acquireArgs(dir, hw, site.URL)...); r.code == 0 || !strings.Contains(r.stderr, "allows another temporary license") {
		t.Fatalf("a third temporary license from a pack that allows two: %s", r)
	}
	// The vendor checks the site's usage report against the order's
	// allowance (two temporary licenses), not the default (one for 2 seats).
	var report struct {
		Licenses int `json:"licenses"`
		Flags    []struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"flags"`
	}
	okJSON(t, &report, "site", "report", "--data", g.siteDir, "--signed", "--upload")
	if report.Licenses != 4 || len(report.Flags) != 0 {
		t.Errorf("the honest usage report with 2 seats and 2 temporary licenses: %+v", report)
	}

	// --temporary-licenses 0: the pack allows none.
	h := newGrantEnvOrder(t, v, "", "--quantity", "1", "--temporary-licenses", "0")
	if out := ok(t, v.admin("vendor", "order", "show", h.order)...); !strings.Contains(out, "Temporary: no temporary licenses") {
		t.Errorf("vendor order show of an order without temporary licenses:\n%s", out)
	}
	hsite := start(t, nil, "site", "serve", "--data", h.siteDir)
	for i, m := range machines[:2] {
		dir, hw := newAgent(t, m)
		r := licet(t, nil, append(h.acquireArgs(dir, hw, hsite.URL), "--json")...)
		if i == 0 && r.code != 0 {
			t.Fatalf("the one seat: %s", r)
		}
		if i == 1 && (r.code == 0 || !strings.Contains(r.stderr, "allows another temporary license")) {
			t.Fatalf("a temporary license from a pack that allows none: %s", r)
		}
	}

	// Values out of range, each refused with the field and the range.
	add := func(extra ...string) []string {
		return v.admin(append([]string{"vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows", "--quantity", "5"}, extra...)...)
	}
	fails(t, 3, `temporary_licenses \(--temporary-licenses\) -1 is out of range: allow 0 \(none\) up to the order's quantity, 5`, add("--temporary-licenses", "-1")...)
	fails(t, 3, `temporary_licenses \(--temporary-licenses\) 6 is out of range`, add("--temporary-licenses", "6")...)
	fails(t, 3, `temporary_days \(--temporary-days\) 366 is out of range: a temporary license lasts 1 to 365 days`, add("--temporary-days", "366")...)
	fails(t, 3, `temporary_days \(--temporary-days\) -2 is out of range`, add("--temporary-days", "-2")...)
	fails(t, 3, `to allow none, set temporary_licenses \(--temporary-licenses\) to 0`, add("--temporary-days", "0")...)
	fails(t, 2, `--temporary-days "3d" is not a whole number`, add("--temporary-days", "3d")...)
	fails(t, 3, `an upgrade order allows no temporary licenses`, add("--upgrade-from", "1.0..1.9", "--temporary-licenses", "1")...)
	// Omitted: the defaults, stated in the order.
	var def order
	okJSON(t, &def, add("--quantity", "30")...)
	if def.TemporaryLicenses == nil || *def.TemporaryLicenses != 3 || def.TemporaryDays == nil || *def.TemporaryDays != 60 {
		t.Errorf("order without an allowance: %+v; want the default, 3 (30 seats / 10) of 60 days", def)
	}
}

// TestLicenseStaysOnItsMachine: an agent directory copied to machine B with
// hardware.json swapped for B's neither uses the cached license nor gets it
// reissued; after 'licet site license release' the moved client gets the
// seat on B.
func TestLicenseStaysOnItsMachine(t *testing.T) {
	g := newGrantEnv(t, "", 2)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	var first licenseOut
	okJSON(t, &first, g.acquireArgs(a, hwA, site.URL)...)

	// The copy, with B's hardware identity in place of A's.
	bInit, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	copyDir := filepath.Join(t.TempDir(), "copied")
	if err := os.CopyFS(copyDir, os.DirFS(a)); err != nil {
		t.Fatal(err)
	}
	hwJSON, err := os.ReadFile(filepath.Join(bInit, "hardware.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(copyDir, "hardware.json"), hwJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := licet(t, nil, "agent", "license", "show", "--data", copyDir, "--hw-root", hwB, "--product", "app"); r.code == 0 || !strings.Contains(r.stderr, "stays on its machine") {
		t.Fatalf("the copied agent on B shows A's cached license: %s", r)
	}
	if err := os.Remove(filepath.Join(copyDir, "licenses", "app.pem")); err != nil {
		t.Fatal(err)
	}
	// Refused by the site itself (not only by the agent's check afterwards).
	if r := licet(t, nil, g.acquireArgs(copyDir, hwB, site.URL)...); r.code == 0 || !strings.Contains(r.stderr, "this request comes from system") {
		t.Fatalf("the site reissued A's license to B: %s", r)
	}
	// A keeps working.
	ok(t, "agent", "license", "show", "--data", a, "--hw-root", hwA, "--product", "app")

	// The administrator releases the seat: the moved client gets it on B,
	// same license ID, naming B's system.
	fails(t, 2, "--license", "site", "license", "release", "--data", g.siteDir)
	ok(t, "site", "license", "release", "--data", g.siteDir, "--license", itoa(int(first.LicenseID)))
	var moved licenseOut
	okJSON(t, &moved, g.acquireArgs(copyDir, hwB, site.URL)...)
	if moved.LicenseID != first.LicenseID {
		t.Errorf("after release: license %d, want the released %d", moved.LicenseID, first.LicenseID)
	}
	ok(t, "agent", "license", "show", "--data", copyDir, "--hw-root", hwB, "--product", "app")
}

// TestGatewaySiteScope: a gateway with --site-id or --customer admits the
// licenses of its own sites only, and tells the application which site
// issued a license.
func TestGatewaySiteScope(t *testing.T) {
	g1 := newGrantEnv(t, "", 2)
	g2 := newGrantEnvWith(t, g1.v, "", 2) // a second site (another plant, or another customer's) of the same vendor
	s1 := start(t, nil, "site", "serve", "--data", g1.siteDir)
	s2 := start(t, nil, "site", "serve", "--data", g2.siteDir)
	type client struct {
		pem []byte
		key *keys.Signer
	}
	get := func(g *grantEnv, s *server, machine string) client {
		dir, hw := newAgent(t, machine)
		ok(t, g.acquireArgs(dir, hw, s.URL)...)
		pem, err := os.ReadFile(filepath.Join(dir, "licenses", "app.pem"))
		if err != nil {
			t.Fatal(err)
		}
		key, err := keys.LoadSigner(filepath.Join(dir, "client.key"))
		if err != nil {
			t.Fatal(err)
		}
		return client{pem, key}
	}
	own, foreign := get(g1, s1, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), get(g2, s2, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	id1, err := licenseserver.LoadIdentity(g1.siteDir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seenSite, seenCustomer string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenSite, seenCustomer = r.Header.Get(gateway.HeaderSite), r.Header.Get(gateway.HeaderCustomer)
		mu.Unlock()
	}))
	t.Cleanup(app.Close)

	gw := start(t, nil, "gateway", "--upstream", app.URL, "--site", s1.URL, "--product", "app", "--root", g1.rootPE, "--site-id", id1.SiteID)
	if code, ch := signedGet(t, gw.URL+"/x", own.pem, own.key); code != http.StatusOK {
		t.Fatalf("own site's license at a gateway scoped to it: %d %s", code, ch)
	}
	mu.Lock()
	if seenSite != id1.SiteID || seenCustomer != "acme" {
		t.Errorf("upstream saw site %q, customer %q; want %s, acme", seenSite, seenCustomer, id1.SiteID)
	}
	mu.Unlock()
	if code, ch := signedGet(t, gw.URL+"/x", foreign.pem, foreign.key); code != http.StatusUnauthorized || !strings.Contains(ch, `error="wrong_site"`) {
		t.Errorf("foreign site's license at a scoped gateway: %d %s, want 401 wrong_site", code, ch)
	}
	// Unscoped, the same gateway admits both: the scope is what refused it.
	open := start(t, nil, "gateway", "--upstream", app.URL, "--site", s1.URL, "--product", "app", "--root", g1.rootPE)
	if code, ch := signedGet(t, open.URL+"/x", foreign.pem, foreign.key); code != http.StatusOK {
		t.Errorf("foreign site's license at an unscoped gateway: %d %s", code, ch)
	}
	// By customer: acme's sites pass, another customer's gateway refuses them.
	byCustomer := start(t, nil, "gateway", "--upstream", app.URL, "--site", s1.URL, "--product", "app", "--root", g1.rootPE, "--customer", "globex")
	if code, ch := signedGet(t, byCustomer.URL+"/x", own.pem, own.key); code != http.StatusUnauthorized || !strings.Contains(ch, `error="wrong_site"`) {
		t.Errorf("acme's license at globex's gateway: %d %s, want 401 wrong_site", code, ch)
	}
}

// TestUsageReportDuplicateSerial: what a pack statement cannot stop, the
// usage reports show. The customer installs its one pack into a second,
// fresh database and grants its serials again to other clients; the signed
// report of that database is flagged by the vendor (duplicate serials, a
// chain that does not continue the site's last report), while the honest
// report passed. Uploading online does the same as importing the file.
func TestUsageReportDuplicateSerial(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	for _, m := range []string{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"} {
		dir, hw := newAgent(t, m)
		ok(t, g.acquireArgs(dir, hw, site.URL)...)
	}
	tmp := t.TempDir()
	r1 := filepath.Join(tmp, "report-1.txt")
	ok(t, "site", "report", "--data", g.siteDir, "--signed", "-o", r1)
	type record struct {
		Sequence int64 `json:"sequence"`
		Licenses int   `json:"licenses"`
		Flags    []struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		} `json:"flags"`
	}
	var first record
	okJSON(t, &first, g.v.admin("vendor", "report", "import", r1)...)
	if first.Sequence != 1 || first.Licenses != 2 || len(first.Flags) != 0 {
		t.Fatalf("the honest first report: %+v", first)
	}
	// Importing it again changes nothing.
	okJSON(t, &first, g.v.admin("vendor", "report", "import", r1)...)
	if len(first.Flags) != 0 {
		t.Fatalf("the honest report imported again: %+v", first)
	}

	// The second database: the same pack (the vendor sends the same file
	// for the same order), the same image, new clients.
	var orders []struct{ ID string }
	okJSON(t, &orders, g.v.admin("vendor", "order", "list")...)
	purchase, packFile := filepath.Join(tmp, "purchase.txt"), filepath.Join(tmp, "pack.txt")
	ok(t, "site", "pack", "request", "--data", g.siteDir, "--order", orders[0].ID, "-o", purchase)
	ok(t, g.v.admin("vendor", "pack", "issue", "-o", packFile, purchase)...)
	second := filepath.Join(tmp, "second.db")
	ok(t, "site", "pack", "install", "--data", g.siteDir, "--db", second, packFile)
	sig := filepath.Join(g.tmp, "client-app.sig")
	ok(t, "site", "image", "add", "--data", g.siteDir, "--db", second, "--signature", sig, g.image)
	site2 := start(t, nil, "site", "serve", "--data", g.siteDir, "--db", second)
	for _, m := range []string{"cccccccccccccccccccccccccccccccc", "dddddddddddddddddddddddddddddddd"} {
		dir, hw := newAgent(t, m)
		ok(t, g.acquireArgs(dir, hw, site2.URL)...)
	}
	r2 := filepath.Join(tmp, "report-2.txt")
	ok(t, "site", "report", "--data", g.siteDir, "--db", second, "--signed", "-o", r2)
	r := licet(t, nil, g.v.admin("vendor", "report", "import", "--json", r2)...)
	if r.code != 3 || !strings.Contains(r.stderr, "flagged") {
		t.Fatalf("the second database's report: %s", r)
	}
	var flagged record
	if err := json.NewDecoder(strings.NewReader(r.stdout)).Decode(&flagged); err != nil { // the record, then the error
		t.Fatalf("output: %v\n%s", err, r.stdout)
	}
	kinds := map[string]bool{}
	for _, f := range flagged.Flags {
		kinds[f.Kind] = true
		t.Logf("%s: %s", f.Kind, f.Message)
	}
	if !kinds["duplicate_serial"] || !kinds["chain_break"] {
		t.Errorf("flags %v; want duplicate_serial and chain_break", kinds)
	}

	// Online: the honest site's next report continues its chain.
	var next record
	okJSON(t, &next, "site", "report", "--data", g.siteDir, "--signed", "--upload")
	if next.Sequence != 2 || len(next.Flags) != 0 {
		t.Errorf("the honest site's second report, uploaded: %+v", next)
	}
	var all []record
	okJSON(t, &all, g.v.admin("vendor", "report", "list")...)
	if len(all) != 3 {
		t.Errorf("vendor lists %d reports, want 3", len(all))
	}
}
