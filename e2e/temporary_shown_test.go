package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// siteLicenseRow is a row of 'licet site license list --json'.
type siteLicenseRow struct {
	LicenseID    int64      `json:"license_id"`
	ClientID     string     `json:"client_id"`
	PackID       string     `json:"pack_id"`
	Kind         string     `json:"kind"`
	Temporary    bool       `json:"temporary"`
	NotAfter     *time.Time `json:"not_after"`
	SupersededBy int64      `json:"superseded_by"`
}

// TestTemporaryLicenseShown: a client that gets a temporary license because
// the pool is empty is told so, with the license's end, by 'agent license
// show', 'agent license acquire' and 'license verify'; 'site license list'
// lists it (KIND temporary, its end; --json: temporary, not_after; --kind
// filters) beside the seats; 'site report' lists it as ending soon. Once a
// seat is added and the client gets a permanent license, the temporary one
// is superseded: the list says by which license, and the report no longer
// lists it as ending soon.
func TestTemporaryLicenseShown(t *testing.T) {
	g := newGrantEnv(t, "", 1)
	site := start(t, nil, "site", "serve", "--data", g.siteDir, "--temporary-days", "20")
	acquire := func(dir, hw string) []string {
		return []string{"agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", site.URL,
			"--product", "app", "--software-id", softwareID, "--image", g.image}
	}
	a, hwA := newAgent(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	var seat struct {
		licenseOut
		Temporary bool `json:"temporary"`
	}
	okJSON(t, &seat, acquire(a, hwA)...)
	if seat.Temporary {
		t.Fatalf("the pack's one seat came as a temporary license: %+v", seat)
	}
	aOut := ok(t, "agent", "license", "show", "--data", a, "--hw-root", hwA, "--product", "app")
	if !strings.HasPrefix(aOut, "License ") || strings.Contains(strings.ToLower(aOut), "temporary") {
		t.Fatalf("agent license show of a permanent license:\n%s", aOut)
	}

	// The pool is empty: B gets its machine's temporary license.
	b, hwB := newAgent(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	bAcquired := ok(t, acquire(b, hwB)...)
	var temp struct {
		licenseOut
		Temporary bool      `json:"temporary"`
		NotAfter  time.Time `json:"not_after"`
	}
	okJSON(t, &temp, "agent", "license", "show", "--data", b, "--hw-root", hwB, "--product", "app")
	if !temp.Temporary || time.Until(temp.NotAfter) > 20*24*time.Hour+time.Minute || time.Until(temp.NotAfter) < 19*24*time.Hour {
		t.Fatalf("B's license: %+v, want a temporary license of 20 days", temp)
	}
	end := temp.NotAfter.UTC().Format(time.DateOnly)
	said := regexp.MustCompile(`(?m)^Temporary license \d+ .*\n  temporary until ` + end + ` \(20 days left\) and not renewed: the license server had no free seat`)
	bPath := filepath.Join(b, "licenses", "app.pem")
	for what, out := range map[string]string{
		"agent license acquire": bAcquired,
		"agent license show":    ok(t, "agent", "license", "show", "--data", b, "--hw-root", hwB, "--product", "app"),
		"license verify":        ok(t, "license", "verify", "--root", g.rootPE, bPath),
	} {
		if !said.MatchString(out) || !strings.Contains(out, "permanent license") {
			t.Errorf("%s does not say the license is temporary, until %s, and what then:\n%s", what, end, out)
		}
	}

	// The site lists both licenses, the temporary one with its kind and end.
	list := func(extra ...string) []siteLicenseRow {
		t.Helper()
		var rows []siteLicenseRow
		okJSON(t, &rows, append([]string{"site", "license", "list", "--data", g.siteDir}, extra...)...)
		return rows
	}
	rows := list()
	if len(rows) != 2 || rows[0].LicenseID != seat.LicenseID || rows[0].Kind != "permanent" || rows[0].Temporary ||
		rows[1].LicenseID != temp.LicenseID || rows[1].Kind != "temporary" || !rows[1].Temporary || rows[1].ClientID != temp.ClientID ||
		rows[1].NotAfter == nil || !rows[1].NotAfter.Equal(temp.NotAfter) || rows[1].SupersededBy != 0 {
		t.Fatalf("site license list --json: %+v; want A's seat %d and B's temporary license %d until %s", rows, seat.LicenseID, temp.LicenseID, temp.NotAfter)
	}
	if rows := list("--kind", "temporary"); len(rows) != 1 || rows[0].LicenseID != temp.LicenseID {
		t.Fatalf("--kind temporary: %+v", rows)
	}
	// The site's API (GET /v1/licenses, admin token) lists the same.
	admin := siteToken(t, g.siteDir, "admin")
	for query, want := range map[string][]int64{"": {seat.LicenseID, temp.LicenseID}, "?kind=temporary": {temp.LicenseID}, "?client=" + temp.ClientID: {temp.LicenseID}} {
		st, body := status(t, site.URL+"/v1/licenses"+query, admin)
		var got []siteLicenseRow
		if st != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || len(got) != len(want) {
			t.Fatalf("GET /v1/licenses%s: %d %s; want licenses %v", query, st, body, want)
		}
		for i, r := range got {
			if r.LicenseID != want[i] || (r.LicenseID == temp.LicenseID) != (r.Kind == "temporary" && r.Temporary) {
				t.Fatalf("GET /v1/licenses%s: %+v; want licenses %v, %d temporary", query, got, want, temp.LicenseID)
			}
		}
	}
	if st, body := status(t, site.URL+"/v1/licenses?kind=seat", admin); st != http.StatusBadRequest || !strings.Contains(body, "permanent, temporary, upgraded") {
		t.Fatalf("GET /v1/licenses?kind=seat: %d %s; want 400 naming the kinds", st, body)
	}
	if rows := list("--kind", "permanent"); len(rows) != 1 || rows[0].LicenseID != seat.LicenseID {
		t.Fatalf("--kind permanent: %+v", rows)
	}
	if rows := list("--client", temp.ClientID); len(rows) != 1 || rows[0].LicenseID != temp.LicenseID {
		t.Fatalf("--client of the temporary license's holder: %+v", rows)
	}
	seatPack := rows[0].PackID
	if rows := list("--pack", seatPack); len(rows) != 2 {
		t.Fatalf("--pack of the seat and of the temporary license's allowance: %+v", rows)
	}
	fails(t, 2, "--kind.*permanent, temporary or upgraded", "site", "license", "list", "--data", g.siteDir, "--kind", "seat")
	text := ok(t, "site", "license", "list", "--data", g.siteDir)
	tempLine := regexp.MustCompile(`(?m)^` + itoa(int(temp.LicenseID)) + ` +temporary +` + temp.ClientID + ` .* ` + end + ` +not renewed$`)
	if !strings.Contains(text, "KIND") || !strings.Contains(text, "ENDS") || !tempLine.MatchString(text) ||
		!regexp.MustCompile(`(?m)^`+itoa(int(seat.LicenseID))+` +permanent `).MatchString(text) {
		t.Fatalf("site license list does not show the temporary license, its kind and end (%s):\n%s", end, text)
	}

	// The report: the temporary license ends soon.
	type report struct {
		Products []struct {
			Temporary  int `json:"temporary_licenses"`
			Superseded int `json:"temporary_superseded"`
		} `json:"products"`
		Expiring []struct {
			LicenseID int64 `json:"license_id"`
			Temporary bool  `json:"temporary"`
		} `json:"expiring"`
	}
	var rep report
	okJSON(t, &rep, "site", "report", "--data", g.siteDir)
	if len(rep.Products) != 1 || rep.Products[0].Temporary != 1 || rep.Products[0].Superseded != 0 ||
		len(rep.Expiring) != 1 || rep.Expiring[0].LicenseID != temp.LicenseID || !rep.Expiring[0].Temporary {
		t.Fatalf("report with a live temporary license: %+v", rep)
	}
	if out := ok(t, "site", "report", "--data", g.siteDir); !strings.Contains(out, "Licenses ending within 30 days: 1\n") ||
		!regexp.MustCompile(`  `+itoa(int(temp.LicenseID))+`  `+temp.ClientID+`  app  `+end+`  \(temporary, not renewed\)`).MatchString(out) {
		t.Fatalf("site report text does not list the temporary license as ending soon:\n%s", out)
	}

	// A seat is added: B's next request gets a permanent license, and its
	// temporary one is superseded.
	g.buySeats(t, 1)
	perm := acquirePermanent(t, temp.LicenseID, acquire(b, hwB)...)
	if out := ok(t, "agent", "license", "show", "--data", b, "--hw-root", hwB, "--product", "app"); strings.Contains(strings.ToLower(out), "temporary") {
		t.Fatalf("agent license show of B's permanent license:\n%s", out)
	}
	rows = list("--client", temp.ClientID)
	if len(rows) != 2 || rows[0].LicenseID != temp.LicenseID || rows[0].SupersededBy != perm.LicenseID ||
		rows[1].LicenseID != perm.LicenseID || rows[1].Kind != "permanent" {
		t.Fatalf("B's licenses after the seat: %+v; want temporary %d superseded by %d", rows, temp.LicenseID, perm.LicenseID)
	}
	if rows := list("--kind", "permanent"); len(rows) != 2 {
		t.Fatalf("--kind permanent after the seat: %+v", rows)
	}
	text = ok(t, "site", "license", "list", "--data", g.siteDir, "--kind", "temporary")
	if !regexp.MustCompile(`(?m)^` + itoa(int(temp.LicenseID)) + ` +temporary .* superseded by ` + itoa(int(perm.LicenseID)) + `$`).MatchString(text) {
		t.Fatalf("site license list does not say the temporary license is superseded:\n%s", text)
	}
	rep = report{}
	okJSON(t, &rep, "site", "report", "--data", g.siteDir)
	if len(rep.Products) != 1 || rep.Products[0].Temporary != 1 || rep.Products[0].Superseded != 1 || len(rep.Expiring) != 0 {
		t.Fatalf("report after B got a permanent license: %+v; want its temporary license superseded, none ending soon", rep)
	}
	if out := ok(t, "site", "report", "--data", g.siteDir); !strings.Contains(out, "Licenses ending within 30 days: 0 (not counting 1 superseded") ||
		!strings.Contains(out, "1 (1 superseded)") || strings.Contains(out, "  "+itoa(int(temp.LicenseID))+"  "+temp.ClientID) {
		t.Fatalf("site report text after B got a permanent license:\n%s", out)
	}
}
