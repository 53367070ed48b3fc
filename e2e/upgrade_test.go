package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
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
	"github.com/licet/licet/verify"
)

// TestUpgradeThroughGateway runs the upgrade flow (licensing seed Fig. 8)
// with real processes: a client holding a license for version 2.0 reaches an
// application that needs 3.0 through the gateway once the site holds an
// upgrade pack; the gateway exchanges the license without a new challenge,
// the client gets the new license in Licet-License-Update, the site's record
// is updated and one upgrade seat is used. Forged and foreign licenses are
// refused by the site's upgrade endpoint.
func TestUpgradeThroughGateway(t *testing.T) {
	g := newGrantEnv(t, "", 3) // product app 2.0, 3 non-windows seats
	site := start(t, nil, "site", "serve", "--data", g.siteDir)

	app := newEchoApp(t)
	tokenFile := siteTokenFile(t, g.siteDir) // the gateway upgrades with a site token of scope upgrade
	startGW := func() *server {
		return start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
			"--min-version", "3.0", "--site-token-file", tokenFile)
	}
	gw := startGW()

	// Two clients with 2.0 licenses, acquired through the gateway.
	type client struct {
		dir, hw string
		lic     licenseOut
		signer  *keys.Signer
	}
	newClient := func(machine string) *client {
		c := &client{}
		c.dir, c.hw = newAgent(t, machine)
		okJSON(t, &c.lic, "agent", "license", "acquire", "--data", c.dir, "--hw-root", c.hw, "--server", gw.URL,
			"--product", "app", "--software-id", softwareID, "--image", g.image)
		var err error
		if c.signer, err = keys.LoadSigner(filepath.Join(c.dir, "client.key")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := newClient("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	b := newClient("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	oldPEM := mustRead(t, filepath.Join(a.dir, "licenses", "app.pem"))

	call := func(c *client, licPEM []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/v1/render", nil)
		if err := gateway.SignRequest(req, nil, licPEM, c.signer, time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	// No upgrade pack yet: a 2.0 license is refused as too old, with the reason.
	resp := call(a, oldPEM)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="old_version"`) {
		t.Fatalf("2.0 license without upgrade seats: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	// The vendor releases 3.0 and sells one upgrade seat from 2.x; the site buys it.
	ok(t, g.v.admin("vendor", "product", "release", "--id", "app", "--version", "3.0")...)
	var o struct {
		ID      string
		Upgrade struct{ FromMin, FromMax string } `json:"upgrade"`
	}
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows",
		"--quantity", "1", "--upgrade-from", "2.0..2.9")...)
	if out := ok(t, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID); !strings.Contains(out, "1 non-windows upgrade seats of app, from versions 2.0..2.9 to 3.0") ||
		!strings.Contains(out, "never granted as new licenses") {
		t.Fatalf("buying an upgrade pack does not say it holds upgrade seats: %s", out)
	}
	// A gateway whose upgrade token the site does not know says so.
	bogus := filepath.Join(t.TempDir(), "bogus.token")
	os.WriteFile(bogus, []byte("licet_"+strings.Repeat("x", 43)+"\n"), 0o600)
	gwBad := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
		"--min-version", "3.0", "--site-token-file", bogus)
	badReq, _ := http.NewRequest(http.MethodGet, gwBad.URL+"/v1/render", nil)
	if err := gateway.SignRequest(badReq, nil, oldPEM, a.signer, time.Now()); err != nil {
		t.Fatal(err)
	}
	badResp, err := http.DefaultClient.Do(badReq)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(badResp.Body)
	badResp.Body.Close()
	if badResp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(msg), "refused the gateway's upgrade token") ||
		!strings.Contains(string(msg), "this server does not know it") || strings.Contains(string(msg), "admin token") {
		t.Fatalf("gateway with an unknown upgrade token: %s %s", badResp.Status, msg)
	}
	gwBad.stop(t)

	// The gateway remembered the failed exchange (30 s), but forgets it once
	// the site's upgrade seats change (it asks at most every 2 s): the same
	// old license gets through within seconds, upgraded on the way.
	resp = untilOK(t, func() *http.Response { return call(a, oldPEM) })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("upgrade through the gateway: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	last := app.lastSeen()
	if last.ClientID != a.lic.ClientID || last.Version != "3.0" || last.LicenseID == itoa(int(a.lic.LicenseID)) {
		t.Fatalf("upstream saw %+v; want client %s with a new 3.0 license (old license %d)", last, a.lic.ClientID, a.lic.LicenseID)
	}
	// The answer names the new license file, which the gateway serves.
	update := resp.Header.Get(gateway.HeaderLicenseUpdate)
	if !strings.HasPrefix(update, gateway.LicenseUpdatePath) {
		t.Fatalf("Licet-License-Update %q", update)
	}
	fresp, err := http.Get(gw.URL + update)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := io.ReadAll(fresp.Body)
	fresp.Body.Close()
	if fresp.StatusCode != http.StatusOK || len(file) == 0 {
		t.Fatalf("GET %s: %s, %d bytes", update, fresp.Status, len(file))
	}
	// Only the client can open it; it replaces the client's cache.
	id, err := agent.LoadWith(a.dir, agent.LoadOptions{HWRoot: a.hw})
	if err != nil {
		t.Fatal(err)
	}
	newLic, newPEM, err := id.InstallUpdate(file, "app", time.Time{})
	if err != nil {
		t.Fatalf("the client cannot install the upgraded license: %v", err)
	}
	if !newLic.Upgraded() || newLic.ProductVersion != "3.0" || newLic.ClientID != a.lic.ClientID || itoa(int(newLic.LicenseID)) != last.LicenseID {
		t.Fatalf("upgraded license: %+v", newLic.Attributes)
	}
	if cached := mustRead(t, filepath.Join(a.dir, "licenses", "app.pem")); !bytes.Equal(cached, newPEM) {
		t.Fatal("the client's cached license was not replaced")
	}
	// The new license works as it is, without another exchange.
	if resp := call(a, newPEM); resp.StatusCode != http.StatusOK || resp.Header.Get(gateway.HeaderLicenseUpdate) != "" {
		t.Fatalf("upgraded license: %s, update header %q", resp.Status, resp.Header.Get(gateway.HeaderLicenseUpdate))
	}

	// The site's record: the assignment now holds the new license, and one
	// upgrade seat is used.
	var rows []struct {
		LicenseID     int64  `json:"license_id"`
		ClientID      string `json:"client_id"`
		UpgradePackID string `json:"upgrade_pack_id"`
		UpgradedFrom  int64  `json:"upgraded_from"`
	}
	okJSON(t, &rows, "site", "license", "list", "--data", g.siteDir, "--client", a.lic.ClientID, "--json")
	if len(rows) != 1 || rows[0].LicenseID != newLic.LicenseID || rows[0].UpgradedFrom != a.lic.LicenseID || rows[0].UpgradePackID == "" {
		t.Fatalf("assignment after the upgrade: %+v", rows)
	}
	// The upgraded license is listed under its upgrade pack too.
	var byPack []struct {
		LicenseID int64 `json:"license_id"`
	}
	okJSON(t, &byPack, "site", "license", "list", "--data", g.siteDir, "--pack", rows[0].UpgradePackID, "--json")
	if len(byPack) != 1 || byPack[0].LicenseID != newLic.LicenseID {
		t.Fatalf("licenses of upgrade pack %s: %+v, want license %d", rows[0].UpgradePackID, byPack, newLic.LicenseID)
	}
	// Its kind is upgraded, and it counts among the seats' (permanent) licenses.
	var upgraded []siteLicenseRow
	okJSON(t, &upgraded, "site", "license", "list", "--data", g.siteDir, "--kind", "upgraded")
	if len(upgraded) != 1 || upgraded[0].LicenseID != newLic.LicenseID || upgraded[0].Kind != "upgraded" || upgraded[0].Temporary {
		t.Fatalf("site license list --kind upgraded: %+v, want license %d", upgraded, newLic.LicenseID)
	}
	if out := ok(t, "site", "license", "list", "--data", g.siteDir, "--kind", "permanent"); !regexp.MustCompile(
		`(?m)^` + itoa(int(newLic.LicenseID)) + ` +upgraded .* upgraded from ` + itoa(int(a.lic.LicenseID)) + ` \(` + rows[0].UpgradePackID + `\)$`).MatchString(out) {
		t.Fatalf("site license list --kind permanent does not show the upgraded license %d:\n%s", newLic.LicenseID, out)
	}
	var verified struct {
		DataVersion int `json:"data_version"`
	}
	newFile := filepath.Join(t.TempDir(), "app-3.0.pem")
	os.WriteFile(newFile, newPEM, 0o600)
	okJSON(t, &verified, "license", "verify", "--root", g.rootPE, "--product", "app", "--json", newFile)
	if verified.DataVersion != 1 {
		t.Fatalf("license verify --json: data_version %d, want 1", verified.DataVersion)
	}
	var rep struct {
		Products []struct {
			ProductID    string `json:"product_id"`
			UpgradeSeats int    `json:"upgrade_seats"`
			UpgradesUsed int    `json:"upgrades_used"`
			Upgraded     int    `json:"upgraded_licenses"`
			Permanent    int    `json:"permanent_licenses"`
			Temporary    int    `json:"temporary_licenses"`
		}
	}
	okJSON(t, &rep, "site", "report", "--data", g.siteDir, "--json")
	if len(rep.Products) != 1 || rep.Products[0].UpgradesUsed != 1 || rep.Products[0].UpgradeSeats != 1 || rep.Products[0].Upgraded != 1 || rep.Products[0].Permanent != 2 {
		t.Fatalf("report after one upgrade: %+v", rep.Products)
	}

	// The second client finds the upgrade pool empty: still refused, with why.
	resp = call(b, mustRead(t, filepath.Join(b.dir, "licenses", "app.pem")))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="old_version"`) {
		t.Fatalf("second upgrade with no seat left: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	// One more upgrade seat; client B, using licet agent request, is upgraded
	// on the way and its agent installs the new license from the answer.
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows",
		"--quantity", "1", "--upgrade-from", "2.0..2.9")...)
	ok(t, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID)
	// B's failed exchange is forgotten once the seats changed.
	untilOK(t, func() *http.Response {
		return call(b, mustRead(t, filepath.Join(b.dir, "licenses", "app.pem")))
	})
	var shownB seen
	if out := ok(t, "agent", "request", "--data", b.dir, "--hw-root", b.hw, "--server", gw.URL, "--product", "app", "/v1/render"); json.Unmarshal([]byte(out), &shownB) != nil || shownB.ClientID != b.lic.ClientID {
		t.Fatalf("agent request with an upgradable license printed %q", out)
	}
	var bShown struct {
		licenseOut
		ProductVersion string `json:"product_version"`
		Flags          uint32 `json:"flags"`
	}
	okJSON(t, &bShown, "agent", "license", "show", "--data", b.dir, "--hw-root", b.hw, "--product", "app")
	if bShown.ProductVersion != "3.0" || bShown.Flags&verify.FlagUpgraded == 0 || bShown.LicenseID == b.lic.LicenseID || shownB.LicenseID != itoa(int(bShown.LicenseID)) {
		t.Fatalf("B's cached license after agent request: %+v (old %d, upstream saw %s)", bShown, b.lic.LicenseID, shownB.LicenseID)
	}

	// At the site's upgrade endpoint: the old license again is a repeat (same
	// new license, no seat); forged and foreign licenses are refused.
	upgradeWith := func(token string, licPEM []byte) (int, map[string]any) {
		body, _ := json.Marshal(map[string]string{"license": string(licPEM)})
		req, _ := http.NewRequest(http.MethodPost, site.URL+"/v1/upgrades", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	token := strings.TrimSpace(string(mustRead(t, tokenFile)))
	upgrade := func(licPEM []byte) (int, map[string]any) { return upgradeWith(token, licPEM) }
	// Without a token, nobody may ask: only a gateway, after the client proved its key.
	if status, out := upgradeWith("", oldPEM); status != http.StatusUnauthorized {
		t.Fatalf("upgrade without a token: %d %v", status, out)
	}
	// The upgrade token opens nothing else.
	req, _ := http.NewRequest(http.MethodGet, site.URL+"/v1/licenses", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin route with an upgrade token: %v %v", resp.Status, err)
	}
	status, out := upgrade(oldPEM)
	if status != http.StatusOK || out["repeated"] != true || int64(out["license_id"].(float64)) != newLic.LicenseID {
		t.Fatalf("repeated upgrade: %d %v", status, out)
	}
	forged := forgeLicense(t, oldPEM)
	if status, out := upgrade(forged); status != http.StatusForbidden {
		t.Fatalf("upgrade of a forged license: %d %v", status, out)
	}
	if status, out := upgrade(rogueLicense(t)); status != http.StatusForbidden {
		t.Fatalf("upgrade of a license from another vendor root: %d %v", status, out)
	}
	// The forged license at the gateway: refused, and no seat moved.
	if resp := call(a, forged); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged license at the gateway: %s", resp.Status)
	}

	// A temporary license is not upgraded: the third client takes the last
	// seat, the fourth gets a temporary license, which the site refuses to
	// exchange although an upgrade seat is free.
	newClient("cccccccccccccccccccccccccccccccc")
	d := newClient("dddddddddddddddddddddddddddddddd")
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows",
		"--quantity", "1", "--upgrade-from", "2.0..2.9")...)
	ok(t, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID)
	status, out = upgrade(mustRead(t, filepath.Join(d.dir, "licenses", "app.pem")))
	errBody, _ := out["error"].(map[string]any)
	if msg, _ := errBody["message"].(string); status != http.StatusForbidden || !strings.Contains(msg, "temporary") {
		t.Fatalf("upgrade of a temporary license: %d %v", status, out)
	}

	okJSON(t, &rep, "site", "report", "--data", g.siteDir, "--json")
	if rep.Products[0].UpgradesUsed != 2 || rep.Products[0].Upgraded != 2 || rep.Products[0].Temporary != 1 {
		t.Fatalf("report after refused upgrades: %+v", rep.Products)
	}
}

// forgeLicense raises the product version inside a license certificate
// (2.0 -> 2.5) without re-signing it.
func forgeLicense(t *testing.T, licPEM []byte) []byte {
	t.Helper()
	blk, rest := pem.Decode(licPEM)
	if blk == nil {
		t.Fatal("license is not PEM")
	}
	old, forged := []byte(`"product_version":"2.0"`), []byte(`"product_version":"2.5"`)
	if !bytes.Contains(blk.Bytes, old) {
		t.Fatalf("license certificate does not carry %s", old)
	}
	blk.Bytes = bytes.Replace(blk.Bytes, old, forged, 1)
	return append(pem.EncodeToMemory(blk), rest...)
}

// untilOK sends a request again (as call makes it) until it is answered 200,
// for at most 10 s (well under the 30 s a gateway remembers a failed
// upgrade exchange), and returns the last answer.
func untilOK(t *testing.T, call func() *http.Response) *http.Response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := call()
		if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			return resp
		}
		time.Sleep(200 * time.Millisecond)
	}
}
