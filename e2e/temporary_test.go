package e2e

import (
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
	}) {
		dir, hw := newAgent(t, machine)
		okJSON(t, &out, "agent", "license", "acquire", "--data", dir, "--hw-root", hw, "--server", site.URL,
			"--product", "app", "--software-id", softwareID, "--image", g.image)
		return out
	}
	if first := acquire("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"); first.Temporary {
		t.Fatalf("the pack's one seat came as a temporary license: %+v", first)
	}
	temp := acquire("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	if left := time.Until(temp.NotAfter); !temp.Temporary || left < 6*24*time.Hour || left > 7*24*time.Hour+time.Minute {
		t.Fatalf("temporary license of app with app=7: temporary %v, %s left; want about 7 days", temp.Temporary, left)
	}
}
