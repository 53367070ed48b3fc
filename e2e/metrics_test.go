package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/gateway"
)

// scrape reads a Prometheus text page (with token, if any) into series
// (name{labels} as written) and values.
func scrape(t *testing.T, url, token string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s/metrics: %s %s", url, resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantMetrics checks the values of series in a scrape.
func wantMetrics(t *testing.T, what string, got map[string]float64, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		if g, ok := got[series]; !ok || g != v {
			var near []string
			name := series[:strings.IndexByte(series+"{", '{')]
			for s, v := range got {
				if strings.HasPrefix(s, name) {
					near = append(near, s+" "+strconv.FormatFloat(v, 'g', -1, 64))
				}
			}
			t.Errorf("%s: %s = %v (present %v), want %v; the page has:\n%s", what, series, g, ok, v, strings.Join(near, "\n"))
		}
	}
}

// TestLicensingMetrics scrapes a site's and a gateway's /metrics after
// grants of every outcome, a temporary license and upgrade exchanges: the
// seat gauges come from the store, so a process reports the grants another
// process of the site made; the counters are each process's own.
func TestLicensingMetrics(t *testing.T) {
	g := newGrantEnv(t, "", 2) // 2 non-windows seats of app 2.0
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	site2 := start(t, nil, "site", "serve", "--data", g.siteDir) // a second process on the same database
	metricsToken := siteToken(t, g.siteDir, "metrics")
	var packs []packRow
	okJSON(t, &packs, "site", "pack", "list", "--data", g.siteDir, "--all")
	seatPack := packs[0].PackID

	acquire := func(dir, hw, server string, extra ...string) []string {
		return append([]string{"agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", server,
			"--product", "app", "--software-id", softwareID, "--image", g.image}, extra...)
	}
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	c, hwC := newAgent(t, "cccccccccccccccccccccccccccccccc")
	okJSON(t, &licenseOut{}, acquire(a, hwA, site.URL)...)
	okJSON(t, &licenseOut{}, acquire(b, hwB, site.URL)...)
	os.RemoveAll(filepath.Join(a, "licenses"))
	okJSON(t, &licenseOut{}, acquire(a, hwA, site.URL)...) // reissued
	patched := filepath.Join(g.tmp, "patched-app")
	img := mustRead(t, g.image)
	img[100] ^= 1
	os.WriteFile(patched, img, 0o755)
	fails(t, 3, "modified", acquire(c, hwC, site.URL, "--image", patched)...)
	okJSON(t, &licenseOut{}, acquire(c, hwC, site2.URL)...) // no seat left: a temporary license, from the other process

	m := scrape(t, site.URL, metricsToken)
	seat := `{kind="seats",pack_id="` + seatPack + `",platform="non-windows",product="app"}`
	tmp := `{pack_id="` + seatPack + `",platform="non-windows",product="app"}`
	wantMetrics(t, "site after grants", m, map[string]float64{
		"licet_seats_assigned" + seat:                                               2,
		"licet_seats_free" + seat:                                                   0,
		"licet_temporary_licenses_issued" + tmp:                                     1, // by the other process: read from the store
		"licet_seat_metrics_up":                                                     1,
		`licet_grants_total{outcome="granted",product="app",reason=""}`:             2,
		`licet_grants_total{outcome="reissued",product="app",reason=""}`:            1,
		`licet_grants_total{outcome="refused",product="app",reason="wrong_answer"}`: 1,
		`licet_challenges_total{outcome="handed",product="app",reason=""}`:          4,
		`licet_challenge_pool_handed_total{software_id="` + softwareID + `"}`:       4,
	})
	if _, ok := m[`licet_grants_total{outcome="temporary",product="app",reason=""}`]; ok {
		t.Errorf("process 1 counts the temporary license process 2 granted")
	}
	wantMetrics(t, "the other process", scrape(t, site2.URL, metricsToken), map[string]float64{
		`licet_grants_total{outcome="temporary",product="app",reason=""}`: 1,
		"licet_seats_assigned" + seat:                                     2,
	})
	// A product nobody sells is not a label of its own: clients name it.
	fails(t, 3, "no free seat", "agent", "license", "acquire", "--data", b, "--hw-root", hwB, "--server", site.URL,
		"--product", "made-up-product-1", "--software-id", softwareID, "--image", g.image)
	time.Sleep(1100 * time.Millisecond) // SeatMetricsMaxAge: the next scrape reads the store again
	m = scrape(t, site.URL, metricsToken)
	wantMetrics(t, "a product without packs", m, map[string]float64{
		`licet_grants_total{outcome="refused",product="_other",reason="no_seat"}`: 1,
	})
	for s := range m {
		if strings.Contains(s, "made-up-product") {
			t.Errorf("a product a client named became a label: %s", s)
		}
	}

	// Upgrades through a gateway: one upgrade seat, two clients.
	ok(t, g.v.admin("vendor", "product", "release", "--id", "app", "--version", "3.0")...)
	var o struct{ ID string }
	okJSON(t, &o, g.v.admin("vendor", "order", "add", "--customer", "acme", "--product", "app", "--platform", "non-windows",
		"--quantity", "1", "--upgrade-from", "2.0..2.9")...)
	var up packRow
	okJSON(t, &up, "site", "pack", "buy", "--data", g.siteDir, "--order", o.ID, "--json")
	app := newEchoApp(t)
	gw := start(t, nil, "gateway", "--upstream", app.URL, "--site", site.URL, "--product", "app", "--root", g.rootPE,
		"--min-version", "3.0", "--site-token-file", siteTokenFile(t, g.siteDir), "--metrics-listen", "127.0.0.1:0")
	call := func(dir string) int {
		t.Helper()
		signer, err := keys.LoadSigner(filepath.Join(dir, "client.key"))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/v1/render", nil)
		if err := gateway.SignRequest(req, nil, mustRead(t, filepath.Join(dir, "licenses", "app.pem")), signer, time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := call(a); st != http.StatusOK {
		t.Fatalf("upgrade of A: %d", st)
	}
	if st := call(b); st != http.StatusUnauthorized {
		t.Fatalf("B with no upgrade seat left: %d", st)
	}
	time.Sleep(1100 * time.Millisecond)
	upSeat := `{kind="upgrade",pack_id="` + up.PackID + `",platform="non-windows",product="app"}`
	wantMetrics(t, "site after upgrades", scrape(t, site.URL, metricsToken), map[string]float64{
		"licet_seats_assigned" + upSeat:                                          1,
		"licet_seats_free" + upSeat:                                              0,
		`licet_upgrades_total{outcome="upgraded",product="app",reason=""}`:       1,
		`licet_upgrades_total{outcome="refused",product="app",reason="no_seat"}`: 1,
	})
	wantMetrics(t, "gateway", scrape(t, gw.metricsURL(t), ""), map[string]float64{
		`licet_gateway_checks_total{outcome="passed",product="app",reason=""}`:             1,
		`licet_gateway_checks_total{outcome="refused",product="app",reason="old_version"}`: 1,
		`licet_gateway_upgrades_total{outcome="upgraded",product="app",reason=""}`:         1,
		`licet_gateway_upgrades_total{outcome="refused",product="app",reason="exhausted"}`: 1,
	})
}

// TestBenchGrantsMetricsToken runs the load generator against a site whose
// /metrics needs a token: with --token it reports the site's CPU per
// grant, without one it cannot.
func TestBenchGrantsMetricsToken(t *testing.T) {
	g := newGrantEnv(t, "", 40)
	site := start(t, nil, "site", "serve", "--data", g.siteDir)
	type benchOut struct {
		OK      int   `json:"ok"`
		SiteCPU int64 `json:"site_cpu_per_grant_ns"`
	}
	bench := func(env []string, extra ...string) benchOut {
		t.Helper()
		args := append([]string{"bench", "grants", "--server", site.URL, "--product", "app", "--software-id", softwareID,
			"--image", g.image, "--clients", "10", "--concurrency", "2", "--json"}, extra...)
		r := licet(t, append([]string{"LICET_TOKEN="}, env...), args...)
		var res benchOut
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.OK != 10 {
			t.Fatalf("licet %s: %s", strings.Join(args, " "), r)
		}
		return res
	}
	if res := bench(nil); res.SiteCPU != 0 {
		t.Fatalf("without a token the site's CPU cannot be read, yet: %+v", res)
	}
	token := siteToken(t, g.siteDir, "metrics")
	if res := bench(nil, "--token", token); res.SiteCPU <= 0 {
		t.Fatalf("with --token: no site CPU per grant: %+v", res)
	}
	if res := bench([]string{"LICET_TOKEN=" + token}); res.SiteCPU <= 0 {
		t.Fatalf("with $LICET_TOKEN: no site CPU per grant: %+v", res)
	}
}
