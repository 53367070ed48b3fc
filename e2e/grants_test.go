package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"github.com/licet/licet/internal/testpki"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/loadgen"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/verify"
)

const softwareID = "non-windows/7/312"

// grantEnv is a vendor, an enrolled site with an installed pack and a
// registered client image.
type grantEnv struct {
	v             *vendorEnv
	siteDir, db   string
	image, rootPE string
	tmp           string
	order         string // the ID of the order whose pack the site bought
}

// newGrantEnv sets up a site with one pack of seats for product app on the
// non-windows platform and the signed client image.
func newGrantEnv(t *testing.T, db string, seats int) *grantEnv {
	t.Helper()
	return newGrantEnvWith(t, newVendor(t, ""), db, seats)
}

// newGrantEnvWith is newGrantEnv with a vendor of the caller's.
func newGrantEnvWith(t *testing.T, v *vendorEnv, db string, seats int) *grantEnv {
	t.Helper()
	return newGrantEnvOrder(t, v, db, "--quantity", itoa(seats))
}

// newGrantEnvOrder is newGrantEnvWith with the order's quantity and other
// 'vendor order add' flags of the caller's (orderArgs).
func newGrantEnvOrder(t *testing.T, v *vendorEnv, db string, orderArgs ...string) *grantEnv {
	t.Helper()
	g := &grantEnv{v: v, tmp: t.TempDir(), db: db}
	g.siteDir = filepath.Join(g.tmp, "site")
	args := []string{"site", "init", "--data", g.siteDir, "--vendor", g.v.srv.URL, "--enroll", g.v.enrollCode(t, "acme")}
	if db != "" {
		args = append(args, "--db", db)
	}
	ok(t, args...)
	g.order = g.buyPack(t, orderArgs...)
	g.image = filepath.Join(g.tmp, "client-app")
	img := make([]byte, 64<<10)
	rand.Read(img)
	if err := os.WriteFile(g.image, img, 0o755); err != nil {
		t.Fatal(err)
	}
	sig := filepath.Join(g.tmp, "client-app.sig")
	ok(t, g.v.admin("vendor", "image", "sign", "--software-id", softwareID, "-o", sig, g.image)...)
	ok(t, "site", "image", "add", "--data", g.siteDir, "--signature", sig, g.image)
	g.rootPE = filepath.Join(g.v.dir, "root.crt")
	return g
}

// buySeats has the vendor sell acme a pack of n seats of app, which the
// site buys online.
func (g *grantEnv) buySeats(t *testing.T, n int) {
	t.Helper()
	g.buyPack(t, "--quantity", itoa(n))
}

// buyPack has the vendor record an order of acme for app on non-windows
// with orderArgs (its quantity and other 'vendor order add' flags), which
// the site buys online; it returns the order's ID.
func (g *grantEnv) buyPack(t *testing.T, orderArgs ...string) string {
	t.Helper()
	var o struct{ ID string }
	okJSON(t, &o, g.v.admin(append([]string{"vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows"}, orderArgs...)...)...)
	ok(t, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID)
	return o.ID
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// fakeHardware lays out a machine's identity files under a directory.
func fakeHardware(t *testing.T, machineID string) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "machine-id"), []byte(machineID+"\n"), 0o644)
	dmi := filepath.Join(root, "sys", "class", "dmi", "id")
	os.MkdirAll(dmi, 0o755)
	os.WriteFile(filepath.Join(dmi, "product_uuid"), []byte("4c4c4544-0000-1000-8000-"+machineID[:12]+"\n"), 0o644)
	return root
}

func newAgent(t *testing.T, machineID string) (dir, hw string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "agent")
	hw = fakeHardware(t, machineID)
	ok(t, "agent", "init", "--data", dir, "--platform", "non-windows", "--hw-root", hw)
	return dir, hw
}

type licenseOut struct {
	LicenseID int64  `json:"license_id"`
	ClientID  string `json:"client_id"`
	ProductID string `json:"product_id"`
	Reissued  bool   `json:"reissued"`
}

func TestGrantFlowAndAttacks(t *testing.T) {
	g := newGrantEnv(t, "", 3)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	acquire := func(dir, hw string, extra ...string) []string {
		return append([]string{"agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", site.URL,
			"--product", "app", "--software-id", softwareID, "--image", g.image}, extra...)
	}
	var first licenseOut
	okJSON(t, &first, acquire(a, hwA)...)
	if first.LicenseID == 0 || first.ProductID != "app" || first.Reissued {
		t.Fatalf("first grant: %+v", first)
	}
	var shown licenseOut
	okJSON(t, &shown, "agent", "license", "show", "--data", a, "--hw-root", hwA, "--product", "app")
	if shown.LicenseID != first.LicenseID {
		t.Fatalf("cached license %d, granted %d", shown.LicenseID, first.LicenseID)
	}
	licPath := filepath.Join(a, "licenses", "app.pem")
	ok(t, "license", "verify", "--root", g.rootPE, "--product", "app", licPath)

	// Lost cache: the same client gets the same license back.
	os.RemoveAll(filepath.Join(a, "licenses"))
	var again licenseOut
	okJSON(t, &again, acquire(a, hwA)...)
	if !again.Reissued || again.LicenseID != first.LicenseID {
		t.Fatalf("reissue: %+v, first %+v", again, first)
	}
	var rows []struct {
		LicenseID int64  `json:"license_id"`
		ClientID  string `json:"client_id"`
	}
	okJSON(t, &rows, "site", "license", "list", "--data", g.siteDir)
	if len(rows) != 1 || rows[0].LicenseID != first.LicenseID || rows[0].ClientID != first.ClientID {
		t.Fatalf("assignment table after reissue: %+v", rows)
	}

	// A license changed by one byte.
	pem := mustRead(t, licPath)
	for _, i := range []int{40, len(pem) / 3, len(pem) / 2, len(pem) - 80} {
		mod := []byte(string(pem))
		mod[i] ^= 0x04
		p := filepath.Join(g.tmp, "tampered.pem")
		os.WriteFile(p, mod, 0o644)
		fails(t, 3, "not valid", "license", "verify", "--root", g.rootPE, p)
	}
	// A license copied into another client's cache.
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	os.MkdirAll(filepath.Join(b, "licenses"), 0o700)
	os.WriteFile(filepath.Join(b, "licenses", "app.pem"), pem, 0o600)
	os.WriteFile(filepath.Join(b, "root.crt"), mustRead(t, g.rootPE), 0o644)
	fails(t, 3, "another client|client", "agent", "license", "show", "--data", b, "--hw-root", hwB, "--product", "app")
	// The agent directory copied to another machine.
	fails(t, 3, "copied from another machine", "agent", "license", "show", "--data", a, "--hw-root", hwB, "--product", "app")
	// An answer computed over a patched image.
	patched := filepath.Join(g.tmp, "patched-app")
	img := mustRead(t, g.image)
	img[1000] ^= 0xff
	os.WriteFile(patched, img, 0o755)
	fails(t, 3, "modified", acquire(b, hwB, "--image", patched)...)
	// A product no pack holds, and a software ID without a reference image.
	fails(t, 3, "no free seat", "agent", "license", "acquire", "--data", b, "--hw-root", hwB, "--server", site.URL,
		"--product", "other-product", "--software-id", softwareID, "--image", g.image)
	fails(t, 3, "knows no client image", "agent", "license", "acquire", "--data", b, "--hw-root", hwB, "--server", site.URL,
		"--product", "app", "--software-id", "non-windows/7/313", "--image", g.image)
	// A license presented after its expiry.
	failsEnv(t, []string{"LICET_NOW=" + time.Now().AddDate(30, 0, 0).Format(time.RFC3339)}, 3, "expired", "license", "verify", "--root", g.rootPE, licPath)
	// A license issued by a site the vendor never certified.
	rogue := filepath.Join(g.tmp, "rogue.pem")
	os.WriteFile(rogue, rogueLicense(t), 0o644)
	fails(t, 3, "not valid", "license", "verify", "--root", g.rootPE, rogue)

	// A replayed challenge answer is refused: the challenge is single use.
	replayChallenge(t, site.URL, g.image)

	// The pool: 3 seats, held by A and the honest replay client; B takes the
	// last one and C finds the pool empty: it gets its machine's one
	// temporary license, the same one again on a second request, and a new key
	// on the same hardware gets none.
	okJSON(t, &licenseOut{}, acquire(b, hwB)...)
	c, hwC := newAgent(t, "cccccccccccccccccccccccccccccccc")
	var temp, tempAgain struct {
		licenseOut
		Temporary bool      `json:"temporary"`
		NotAfter  time.Time `json:"not_after"`
	}
	okJSON(t, &temp, acquire(c, hwC)...)
	if !temp.Temporary || time.Until(temp.NotAfter) < 59*24*time.Hour || time.Until(temp.NotAfter) > 61*24*time.Hour {
		t.Fatalf("temporary license: %+v", temp)
	}
	okJSON(t, &tempAgain, acquire(c, hwC)...)
	if tempAgain.LicenseID != temp.LicenseID || !tempAgain.Temporary {
		t.Fatalf("second temporary request: %+v, first %+v", tempAgain, temp)
	}
	c2 := filepath.Join(t.TempDir(), "agent-c2")
	ok(t, "agent", "init", "--data", c2, "--platform", "non-windows", "--hw-root", hwC)
	fails(t, 3, "already received its one temporary license", acquire(c2, hwC)...)
	// The temporary license is refused once it has expired.
	tempPath := filepath.Join(c, "licenses", "app.pem")
	afterTemp := []string{"LICET_NOW=" + time.Now().AddDate(0, 0, 61).Format(time.RFC3339)}
	failsEnv(t, afterTemp, 3, "temporary license .* expired at .*temporary licenses are not renewed.*free a seat", "license", "verify", "--root", g.rootPE, tempPath)
	// Asking again gets the same temporary license (one per machine): the
	// agent says it is not renewed and what the administrator does, not to ask again.
	r := failsEnv(t, afterTemp, 3, "temporary licenses are not renewed", acquire(c, hwC)...)
	if strings.Contains(r.stderr, "ask the license server for a new license") {
		t.Fatalf("an expired temporary license tells the agent to ask again: %s", r)
	}
	var packs []packRow
	okJSON(t, &packs, "site", "pack", "list", "--data", g.siteDir, "--all")
	if len(packs) != 1 || packs[0].Assigned != 3 {
		t.Fatalf("pack after 3 grants: %+v", packs)
	}

	// The report: seats per pack and product, and licenses ending soon (the
	// pack never expires, so licenses run to the end of the site certificate).
	var soon, mid, later licenseserver.Report
	okJSON(t, &soon, "site", "report", "--data", g.siteDir, "--expiring-within", "30")
	okJSON(t, &mid, "site", "report", "--data", g.siteDir, "--expiring-within", "90")
	okJSON(t, &later, "site", "report", "--data", g.siteDir, "--expiring-within", "3660")
	if len(soon.Packs) != 1 || soon.Packs[0].Free != 0 || len(soon.Products) != 1 ||
		soon.Products[0].ProductID != "app" || soon.Products[0].Seats != 3 || soon.Products[0].Permanent != 3 ||
		soon.Products[0].Temporary != 1 || len(soon.Expiring) != 0 {
		t.Fatalf("report: %+v", soon)
	}
	if len(mid.Expiring) != 1 || mid.Expiring[0].LicenseID != temp.LicenseID {
		t.Fatalf("licenses ending within 90 days (the temporary one): %+v", mid.Expiring)
	}
	if len(later.Expiring) != 4 {
		t.Fatalf("licenses ending within 10 years: %+v", later.Expiring)
	}

	// Seats appear: C's next request replaces its temporary license with a permanent one.
	g.buySeats(t, 2)
	acquirePermanent(t, temp.LicenseID, acquire(c, hwC)...)
}

// acquirePermanent runs the acquire command of a client holding temporary
// license tempID and checks that it gets a permanent license instead.
func acquirePermanent(t *testing.T, tempID int64, acquire ...string) licenseOut {
	t.Helper()
	var perm struct {
		licenseOut
		Temporary bool `json:"temporary"`
	}
	okJSON(t, &perm, acquire...)
	if perm.Temporary || perm.LicenseID == tempID {
		t.Fatalf("after seats were added: %+v (temporary license was %d)", perm, tempID)
	}
	return perm.licenseOut
}

// replayChallenge answers a challenge correctly, then sends the same grant
// request again.
func replayChallenge(t *testing.T, siteURL, image string) {
	t.Helper()
	ctx := context.Background()
	sig, _ := keys.GenerateSigner()
	dec, _ := keys.GenerateDecrypter()
	sid, _ := softid.Parse(softwareID)
	c := &api.Client{BaseURL: siteURL}
	ch, err := c.Challenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: sig.Public()})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := challenge.AnswerFile(ch.Nonce, image)
	if err != nil {
		t.Fatal(err)
	}
	req := &licenseserver.GrantRequest{ChallengeID: ch.ChallengeID, Answer: answer, ClientKey: sig.Public(),
		ClientHPKEKey: dec.PublicBytes(), SystemID: "sys-replay", ProductID: "app"}
	req.Signature = sig.Sign(licenseserver.GrantMessage(req))
	if _, err := c.Grant(ctx, req); err != nil {
		t.Fatalf("honest grant: %v", err)
	}
	if _, err := c.Grant(ctx, req); err == nil || !strings.Contains(err.Error(), "already answered") {
		t.Fatalf("replayed grant: %v", err)
	}
	// A grant request signed by another key than the challenged one.
	ch, _ = c.Challenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: sig.Public()})
	answer, _ = challenge.AnswerFile(ch.Nonce, image)
	other, _ := keys.GenerateSigner()
	req = &licenseserver.GrantRequest{ChallengeID: ch.ChallengeID, Answer: answer, ClientKey: other.Public(),
		ClientHPKEKey: dec.PublicBytes(), SystemID: "sys-replay", ProductID: "app"}
	req.Signature = other.Sign(licenseserver.GrantMessage(req))
	if _, err := c.Grant(ctx, req); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("grant with a swapped key: %v", err)
	}
}

// rogueLicense is a well-formed license from a site certified by another root.
func rogueLicense(t *testing.T) []byte {
	t.Helper()
	now := time.Now()
	site := testpki.Site(t, testpki.Root(t, "Test Vendor", now), "rogue", "acme", now)
	client, _ := keys.GenerateSigner()
	der, err := license.Issue(site, client.Public(),
		verify.Attributes{LicenseID: 7, ProductID: "app", ProductVersion: "2.0", Platform: "non-windows"}, now, now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return license.EncodePEM([][]byte{der, site.Cert.Raw})
}

// testSeatsExact runs 1,000 concurrent clients against 100 seats through the
// given site processes (temporary licenses off) and checks that exactly 100
// distinct clients got one.
func testSeatsExact(t *testing.T, g *grantEnv, sites []string) {
	sid, _ := softid.Parse(softwareID)
	res, err := loadgen.Grants(context.Background(), loadgen.GrantOptions{Servers: sites, ProductID: "app", SoftwareID: sid,
		Image: g.image, Clients: 1000, Concurrency: 1000, RootPEM: mustRead(t, g.rootPE)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", res)
	if res.OK != 100 || res.Rejected != 900 || res.Failed != 0 {
		t.Fatalf("1000 clients, 100 seats: %s %v", res, res.FirstErrors)
	}
	checkAssignments(t, g, res.Granted, 100)
}

// checkAssignments checks that every license the clients hold is recorded,
// once, as a seat's (no temporary license was given), and that the pack's
// assigned count equals the seats' rows.
func checkAssignments(t *testing.T, g *grantEnv, held map[string]int64, wantAtLeast int) {
	t.Helper()
	args := []string{"site", "license", "list", "--data", g.siteDir}
	if g.db != "" {
		args = append(args, "--db", g.db)
	}
	var temps, rows []siteLicenseRow
	okJSON(t, &temps, append(args, "--kind", "temporary")...)
	if len(temps) != 0 {
		t.Fatalf("temporary licenses were given: %+v", temps)
	}
	okJSON(t, &rows, append(args, "--kind", "permanent")...)
	byClient := map[string]int64{}
	ids := map[int64]bool{}
	for _, r := range rows {
		if r.Kind != "permanent" || r.Temporary {
			t.Fatalf("site license list --kind permanent lists license %d of kind %q (temporary %v)", r.LicenseID, r.Kind, r.Temporary)
		}
		if _, dup := byClient[r.ClientID]; dup {
			t.Fatalf("client %s has two assignments", r.ClientID)
		}
		if ids[r.LicenseID] {
			t.Fatalf("license ID %d assigned twice", r.LicenseID)
		}
		byClient[r.ClientID], ids[r.LicenseID] = r.LicenseID, true
	}
	for client, id := range held {
		if byClient[client] != id {
			t.Fatalf("client %s holds license %d, the table says %d", client, id, byClient[client])
		}
	}
	if len(rows) < wantAtLeast || len(rows) < len(held) {
		t.Fatalf("%d assignments, %d held, want at least %d", len(rows), len(held), wantAtLeast)
	}
	var packs []packRow
	pargs := []string{"site", "pack", "list", "--data", g.siteDir, "--all"}
	if g.db != "" {
		pargs = append(pargs, "--db", g.db)
	}
	okJSON(t, &packs, pargs...)
	if len(packs) != 1 || packs[0].Assigned != len(rows) {
		t.Fatalf("pack counts %+v, %d assignment rows", packs, len(rows))
	}
}

func TestSeatsExactSQLite(t *testing.T) {
	g := newGrantEnv(t, "", 100)
	site := start(t, nil, "site", "serve", "--data", g.siteDir, "--temporary-days", "0")
	testSeatsExact(t, g, []string{site.URL})
}

func TestSeatsExactPostgresTwoProcesses(t *testing.T) {
	db := postgres.TestDSN(t)
	g := newGrantEnv(t, db, 100)
	s1 := start(t, nil, "site", "serve", "--data", g.siteDir, "--db", db, "--temporary-days", "0")
	s2 := start(t, nil, "site", "serve", "--data", g.siteDir, "--db", db, "--temporary-days", "0")
	testSeatsExact(t, g, []string{s1.URL, s2.URL})
}

// TestSeatsExactPostgresFourProcesses is the same with four site processes,
// which lease seats in blocks and, at the end, take each other's.
func TestSeatsExactPostgresFourProcesses(t *testing.T) {
	db := postgres.TestDSN(t)
	g := newGrantEnv(t, db, 100)
	var urls []string
	for range 4 {
		urls = append(urls, start(t, nil, "site", "serve", "--data", g.siteDir, "--db", db, "--temporary-days", "0").URL)
	}
	testSeatsExact(t, g, urls)
}

// TestGrantStormSurvivesSIGKILL kills the site with SIGKILL in the middle of
// a grant storm, restarts it, and checks the assignment table against what
// the clients hold.
func TestGrantStormSurvivesSIGKILL(t *testing.T) {
	g := newGrantEnv(t, "", 2500)
	cmd := exec.Command(licetBin, "site", "serve", "--data", g.siteDir, "--listen", "127.0.0.1:0", "--temporary-days", "0")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read line by line: one Read may return part of the line.
	var m []string
	var seen strings.Builder
	for lines := bufio.NewReader(out); m == nil; {
		line, err := lines.ReadString('\n')
		seen.WriteString(line)
		m = listenRE.FindStringSubmatch(line)
		if err != nil && m == nil {
			cmd.Process.Kill()
			t.Fatalf("site did not announce its address: %q", seen.String())
		}
	}
	sid, _ := softid.Parse(softwareID)
	var res *loadgen.Result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, _ = loadgen.Grants(context.Background(), loadgen.GrantOptions{Servers: []string{m[1]}, ProductID: "app", SoftwareID: sid,
			Image: g.image, Clients: 2000, Concurrency: 32})
	}()
	metricsToken := siteToken(t, g.siteDir, "metrics")
	// Kill once some grants have landed.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := getWithToken(m[1]+"/metrics", metricsToken)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			resp.Body.Close()
			if strings.Contains(string(body), `route="POST /v1/licenses"`) {
				time.Sleep(300 * time.Millisecond)
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	wg.Wait()
	if res.OK == 0 || res.Failed == 0 {
		t.Fatalf("the kill did not land mid-storm: %s", res)
	}
	t.Logf("before the kill: %s", res)
	// Restart: the store opens cleanly and agrees with what clients hold.
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	checkAssignments(t, g, res.Granted, res.OK)
	// And it keeps granting.
	res2, err := loadgen.Grants(context.Background(), loadgen.GrantOptions{Servers: []string{site.URL}, ProductID: "app", SoftwareID: sid,
		Image: g.image, Clients: 10, Concurrency: 4})
	if err != nil || res2.OK != 10 {
		t.Fatalf("after restart: %v %v", res2, err)
	}
}
