package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store/postgres"
)

// vendorEnv is a running vendor with a product and two customers.
type vendorEnv struct {
	dir, token string
	srv        *server
}

func (v *vendorEnv) admin(args ...string) []string {
	return append(args, "--server", v.srv.URL, "--token", v.token)
}

func newVendor(t *testing.T, db string) *vendorEnv {
	t.Helper()
	return newVendorServing(t, db)
}

// newVendorServing is newVendor with extra flags for 'licet vendor serve'.
func newVendorServing(t *testing.T, db string, serveArgs ...string) *vendorEnv {
	t.Helper()
	v := &vendorEnv{dir: filepath.Join(t.TempDir(), "vendor")}
	args := []string{"vendor", "init", "--data", v.dir, "--name", "Test Vendor"}
	if db != "" {
		args = append(args, "--db", db)
	}
	var initOut struct {
		AdminToken      string `json:"admin_token"`
		RootFingerprint string `json:"root_fingerprint"`
	}
	okJSON(t, &initOut, args...)
	v.token = initOut.AdminToken
	if fi, err := os.Stat(filepath.Join(v.dir, "root.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key must exist with mode 0600: %v %v", fi, err)
	}
	v.srv = start(t, nil, append([]string{"vendor", "serve", "--data", v.dir}, serveArgs...)...)
	ok(t, v.admin("vendor", "product", "add", "--id", "app", "--name", "App", "--version", "2.0",
		"--feature", "core", "--feature", "reports", "--description", "en=App seat", "--description", "de=App-Platz", "--data", "edition=pro")...)
	ok(t, v.admin("vendor", "customer", "add", "--id", "acme", "--name", "Acme Corp")...)
	ok(t, v.admin("vendor", "customer", "add", "--id", "other", "--name", "Other Inc")...)
	return v
}

func (v *vendorEnv) order(t *testing.T, customer string, extra ...string) string {
	t.Helper()
	var o struct{ ID string }
	okJSON(t, &o, v.admin(append([]string{"vendor", "order", "add", "--customer", customer, "--product", "app", "--platform", "windows", "--quantity", "25"}, extra...)...)...)
	if o.ID == "" {
		t.Fatal("order add printed no order ID")
	}
	return o.ID
}

func (v *vendorEnv) enrollCode(t *testing.T, customer string) string {
	t.Helper()
	var e struct{ Code string }
	okJSON(t, &e, v.admin("vendor", "enroll", "create", "--customer", customer)...)
	return e.Code
}

type packRow struct {
	PackID    string `json:"pack_id"`
	OrderID   string `json:"order_id"`
	Quantity  int    `json:"quantity"`
	Assigned  int    `json:"assigned"`
	ProductID string `json:"product_id"`
}

func listPacks(t *testing.T, siteDir string) []packRow {
	t.Helper()
	var rows []packRow
	okJSON(t, &rows, "site", "pack", "list", "--data", siteDir, "--all")
	return rows
}

func TestPacksOnlineSQLite(t *testing.T) { testPacksOnline(t, "") }

func TestPacksOnlinePostgres(t *testing.T) { testPacksOnline(t, postgres.TestDSN(t)) }

// testPacksOnline walks the online path: enrollment with a one-time code, an
// order, a purchase authenticated by the site's certified key, and the bad
// inputs of that path.
func testPacksOnline(t *testing.T, db string) {
	v := newVendor(t, db)
	code := v.enrollCode(t, "acme")
	site := filepath.Join(t.TempDir(), "site")
	var info struct {
		SiteID     string `json:"site_id"`
		Certified  bool   `json:"certified"`
		CustomerID string `json:"customer_id"`
		Token      string `json:"admin_token"`
	}
	okJSON(t, &info, "site", "init", "--data", site, "--vendor", v.srv.URL, "--enroll", code)
	if !info.Certified || info.CustomerID != "acme" {
		t.Fatalf("site not enrolled for acme: %+v", info)
	}

	// A vendor command without a token says where the token comes from.
	r := failsEnv(t, []string{"LICET_TOKEN="}, 4, "vendor init", "vendor", "customer", "add", "--id", "x", "--name", "X", "--server", v.srv.URL)
	if !strings.Contains(r.stderr, "--token or $LICET_TOKEN") || strings.Contains(r.stderr, "site token create") {
		t.Fatalf("vendor command without a token: %s", r)
	}

	// A reused enrollment code is refused and nothing is written.
	site2 := filepath.Join(t.TempDir(), "site2")
	fails(t, 3, "already used", "site", "init", "--data", site2, "--vendor", v.srv.URL, "--enroll", code)
	if _, err := os.Stat(site2); !os.IsNotExist(err) {
		t.Fatalf("a failed enrollment left %s behind", site2)
	}
	fails(t, 4, "not valid", "site", "init", "--data", site2, "--vendor", v.srv.URL, "--enroll", "AAAA-BBBB-CCCC-DDDD")

	order := v.order(t, "acme", "--expires", time.Now().AddDate(1, 0, 0).Format(time.DateOnly))
	out := ok(t, "site", "pack", "buy", "--data", site, "--order", order)
	if !strings.Contains(out, "Installed pack") {
		t.Fatalf("unexpected buy output: %s", out)
	}
	packs := listPacks(t, site)
	if len(packs) != 1 || packs[0].OrderID != order || packs[0].Quantity != 25 || packs[0].Assigned != 0 || packs[0].ProductID != "app" {
		t.Fatalf("installed packs: %+v", packs)
	}
	// Buying the same order again returns the same pack, which is refused as installed.
	fails(t, 3, "already installed", "site", "pack", "buy", "--data", site, "--order", order)
	if got := listPacks(t, site); len(got) != 1 {
		t.Fatalf("a second buy changed the store: %+v", got)
	}
	// An order of another customer.
	otherOrder := v.order(t, "other")
	fails(t, 4, "another customer", "site", "pack", "buy", "--data", site, "--order", otherOrder)
	fails(t, 3, "does not exist", "site", "pack", "buy", "--data", site, "--order", "ord-0000000000000000")

	// A wrong admin token, and none.
	fails(t, 4, "not valid", "vendor", "product", "list", "--server", v.srv.URL, "--token", "licet_wrongtoken")
	fails(t, 4, "admin token", "vendor", "product", "list", "--server", v.srv.URL, "--token", "")

	// A 100 MB request body is refused with 413 before it is read, and the server stays up.
	resp, err := http.Post(v.srv.URL+"/v1/packs", "text/plain", io.LimitReader(zeroReader{}, 100<<20))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error.Code != "too_large" {
		t.Fatalf("100 MB body: status %d, error %+v", resp.StatusCode, e)
	}
	// The same without a Content-Length (chunked): cut off at the limit.
	req, _ := http.NewRequest("POST", v.srv.URL+"/v1/packs", struct{ io.Reader }{io.LimitReader(zeroReader{}, 100<<20)})
	resp, err = http.DefaultClient.Do(req)
	if err == nil {
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked 100 MB body: status %d", resp.StatusCode)
		}
		resp.Body.Close()
	}
	checkHealthAndMetrics(t, v.srv.URL, "vendor", v.token)

	// The site API serves the same packs behind its own token.
	s := start(t, nil, "site", "serve", "--data", site)
	checkHealthAndMetrics(t, s.URL, "site", info.Token)
	req, _ = http.NewRequest("GET", s.URL+"/v1/packs", nil)
	req.Header.Set("Authorization", "Bearer "+info.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var apiPacks []packRow
	json.NewDecoder(resp.Body).Decode(&apiPacks)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(apiPacks) != 1 || apiPacks[0].OrderID != order {
		t.Fatalf("site API packs: %d %+v", resp.StatusCode, apiPacks)
	}
	resp, err = http.Get(s.URL + "/v1/packs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("site API without token: status %d", resp.StatusCode)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// checkHealthAndMetrics checks /healthz, and /metrics: refused without a
// token, served with token; a server without tokens (token "", the gateway)
// refuses it on its main address.
func checkHealthAndMetrics(t *testing.T, url, role, token string) {
	t.Helper()
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("%s /healthz: %d %s", role, resp.StatusCode, body)
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if token == "" {
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s /metrics on the main address: %d, want 403 (served on --metrics-listen)", role, resp.StatusCode)
		}
		return
	}
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s /metrics without a token: %d, want 401", role, resp.StatusCode)
	}
	resp, err = getWithToken(url+"/metrics", token)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `licet_http_requests_total{code="200",role="`+role+`"`) {
		t.Fatalf("%s /metrics lacks request counters:\n%.2000s", role, body)
	}
}

// TestPacksOffline walks the air-gapped path by files: certification request,
// certificate, purchase request and pack, and every bad pack file.
func TestPacksOffline(t *testing.T) {
	v := newVendor(t, "")
	tmp := t.TempDir()
	site := filepath.Join(tmp, "site")
	out := ok(t, "site", "init", "--data", site)
	if !strings.Contains(out, "Not certified yet") {
		t.Fatalf("site init output: %s", out)
	}
	// Buying before certification says what to do.
	fails(t, 3, "not certified", "site", "pack", "request", "--data", site, "--order", "ord-1")

	cert := filepath.Join(tmp, "cert.txt")
	ok(t, v.admin("vendor", "site", "certify", "--customer", "acme", "-o", cert, filepath.Join(site, "site-request.txt"))...)
	var rootFP struct {
		RootFingerprint string `json:"root_fingerprint"`
	}
	fails(t, 3, "not the", "site", "cert", "install", "--data", site, "--root-fingerprint", strings.Repeat("ab", 32), cert)
	okJSON(t, &rootFP, "site", "cert", "install", "--data", site, cert)
	if len(rootFP.RootFingerprint) != 64 {
		t.Fatalf("no root fingerprint: %+v", rootFP)
	}

	order := v.order(t, "acme")
	req := filepath.Join(tmp, "purchase.txt")
	ok(t, "site", "pack", "request", "--data", site, "--order", order, "-o", req)
	packFile := filepath.Join(tmp, "pack.txt")
	ok(t, v.admin("vendor", "pack", "issue", "-o", packFile, req)...)
	raw, err := os.ReadFile(packFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("-----BEGIN LICET LICENSE PACK-----\nVersion: 1\n")) {
		t.Fatalf("pack file is not armored text:\n%.200s", raw)
	}

	// Bad files first: each is refused with a clear message and installs nothing.
	bad := func(name string, data []byte, pattern string) {
		t.Helper()
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fails(t, 3, pattern, "site", "pack", "install", "--data", site, p)
	}
	bad("truncated.txt", raw[:len(raw)/2], "truncated")
	bad("garbled.txt", bytes.Replace(raw, []byte("\n"), []byte("\n!"), 3), "garbled|damaged")
	bad("empty.txt", nil, "not a licet file")
	bad("request-as-pack.txt", mustRead(t, req), "purchase request, not a license pack")
	// One byte changed anywhere inside the armored block.
	end := bytes.LastIndex(raw, []byte("-----END"))
	for i := 0; i < end+8; i += 61 {
		mod := bytes.Clone(raw)
		mod[i] ^= 0x01
		bad("flipped.txt", mod, "rejected|damaged|garbled|changed|not")
	}
	if n := len(listPacks(t, site)); n != 0 {
		t.Fatalf("bad files installed %d packs", n)
	}
	// A renamed field in the pack's envelope (armored again, so that its
	// checksum holds) is a damaged file, not a pack for another server.
	blk, err := armor.Decode(raw, armor.TypeLicensePack)
	if err != nil {
		t.Fatal(err)
	}
	blk.Body = bytes.Replace(blk.Body, []byte(`"recipient":`), []byte(`"recipient_id":`), 1)
	bad("renamed-field.txt", armor.Encode(blk), `damaged: its encrypted envelope has no "recipient".*"recipient_id"`)
	// A pack signed by a key that is not the vendor's clearinghouse.
	bad("forged.txt", forgePack(t, site, order), "not signed by this vendor")
	// An expired pack: an order that expires, installed after that date.
	expOrder := v.order(t, "acme", "--expires", time.Now().AddDate(0, 0, 2).Format(time.DateOnly))
	expReq := filepath.Join(tmp, "exp-purchase.txt")
	ok(t, "site", "pack", "request", "--data", site, "--order", expOrder, "-o", expReq)
	expPack := filepath.Join(tmp, "exp-pack.txt")
	ok(t, v.admin("vendor", "pack", "issue", "-o", expPack, expReq)...)
	failsEnv(t, []string{"LICET_NOW=" + time.Now().AddDate(0, 0, 3).Format(time.RFC3339)}, 3, "expired", "site", "pack", "install", "--data", site, expPack)

	// A pack encrypted to another site.
	other := filepath.Join(tmp, "other-site")
	ok(t, "site", "init", "--data", other, "--vendor", v.srv.URL, "--enroll", v.enrollCode(t, "acme"))
	fails(t, 3, "another server|another site", "site", "pack", "install", "--data", other, packFile)

	// The good pack installs once; again is refused and changes nothing.
	var installed packRow
	okJSON(t, &installed, "site", "pack", "install", "--data", site, packFile)
	if installed.OrderID != order || installed.Quantity != 25 {
		t.Fatalf("installed: %+v", installed)
	}
	fails(t, 3, "already installed", "site", "pack", "install", "--data", site, packFile)
	// Issuing again for the same order gives the same pack, never a second one.
	again := filepath.Join(tmp, "pack-again.txt")
	ok(t, v.admin("vendor", "pack", "issue", "-o", again, req)...)
	if !bytes.Equal(mustRead(t, again), raw) {
		t.Fatal("a second purchase request for one order produced a different pack")
	}
	if rows := listPacks(t, site); len(rows) != 1 {
		t.Fatalf("packs after reinstall attempts: %+v", rows)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forgePack makes a pack for the site signed by a clearinghouse of a root
// that is not the vendor's, encrypted to the site's real key.
func forgePack(t *testing.T, siteDir, order string) []byte {
	t.Helper()
	id, err := licenseserver.LoadIdentity(siteDir)
	if err != nil {
		t.Fatal(err)
	}
	rootKey, _ := keys.GenerateSigner()
	root, err := pki.NewRoot(rootKey, "Test Vendor", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	chKey, _ := keys.GenerateSigner()
	chDER, err := root.IssueClearinghouse(chKey.Public(), "Test Vendor", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	file, err := pack.Seal(&pack.Pack{
		PackID: "pk-forged", OrderID: order, SiteID: id.SiteID, CustomerID: "acme", Issued: time.Now().UTC(),
		BeginSerial: 1, Quantity: 1000, Platform: "windows", Product: pack.Product{ID: "app", Name: "App", Version: "2.0"},
	}, chKey, [][]byte{chDER}, id.Decrypter.PublicBytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := armor.Decode(file, armor.TypeLicensePack); err != nil {
		t.Fatal(err)
	}
	return file
}
