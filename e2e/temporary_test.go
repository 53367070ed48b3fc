package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// TestTemporaryValidityPerProduct: `site serve --product-temporary-days`
// sets the validity of temporary licenses for one product, overriding
// --temporary-days; bad values are usage errors.
func TestTemporaryValidityPerProduct(t *testing.T) {
	g := newGrantEnv(t, "", 1)
	for _, bad := range []string{"app", "app=", "=7", "app=-1", "app=seven"} {
		fails(t, 2, "PRODUCT=DAYS", "site", "serve", "--data", g.siteDir, "--listen", "127.0.0.1:0", "--product-temporary-days", bad)
	}
	site := start(t, nil, "site", "serve", "--data", g.siteDir, "--temporary-days", "60", "--product-temporary-days", "app=7", "--product-temporary-days", "other=0")
	acquire := func(machine string) (out struct {
		licenseOut
		Temporary bool      `json:"temporary"`
		NotAfter  time.Time `json:"not_after"`
		path      string
	}) {
		dir, hw := newAgent(t, machine)
		okJSON(t, &out, "agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", site.URL,
			"--product", "app", "--software-id", softwareID, "--image", g.image)
		out.path = filepath.Join(dir, "licenses", "app.pem")
		return out
	}
	first := acquire("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	if first.Temporary {
		t.Fatalf("the pack's one seat came as a temporary license: %+v", first)
	}
	// A client whose clock is two minutes behind the site's accepts a fresh
	// license: its validity starts five minutes before the grant.
	var shown struct {
		NotBefore time.Time `json:"not_before"`
	}
	okJSON(t, &shown, "license", "verify", "--root", g.rootPE, "--json", first.path)
	if d := time.Since(shown.NotBefore); d < 4*time.Minute || d > 6*time.Minute {
		t.Errorf("a fresh license is valid from %s ago, want about 5 minutes", d)
	}
	behind := []string{"LICET_NOW=" + time.Now().Add(-2*time.Minute).Format(time.RFC3339)}
	if r := licet(t, behind, "license", "verify", "--root", g.rootPE, first.path); r.code != 0 {
		t.Errorf("a client 2 minutes behind refuses a fresh license: %s", r)
	}
	farBehind := []string{"LICET_NOW=" + time.Now().Add(-10*time.Minute).Format(time.RFC3339)}
	failsEnv(t, farBehind, 3, "valid from", "license", "verify", "--root", g.rootPE, first.path)
	temp := acquire("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	if left := time.Until(temp.NotAfter); !temp.Temporary || left < 6*24*time.Hour || left > 7*24*time.Hour+time.Minute {
		t.Fatalf("temporary license of app with app=7: temporary %v, %s left; want about 7 days", temp.Temporary, left)
	}
}
