package licenseserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/verify"
)

// TestRenewalBoundByStatement: a renewal order without an expiry (upgrade
// seats for expired licenses) no longer gives licenses that run to the end
// of the site certificate, years after the seat pack expired: the
// clearinghouse states a term in the pack, and the renewed license ends
// with it and verifies against the statement.
func TestRenewalBoundByStatement(t *testing.T) {
	ctx := context.Background()
	vs := newVendor(t)
	srv := enrolledSite(t, vs)
	buy := func(o *clearinghouse.Order) {
		t.Helper()
		must(t, vs.AddOrder(ctx, o))
		preq, err := srv.PurchaseRequest(o.ID)
		must(t, err)
		file, _, err := vs.IssuePack(ctx, preq)
		must(t, err)
		_, err = srv.InstallPack(ctx, file)
		must(t, err)
	}
	week := time.Now().Add(7 * 24 * time.Hour).Truncate(time.Second)
	buy(&clearinghouse.Order{CustomerID: "acme", ProductID: "app", Platform: "non-windows", Quantity: 1, Expires: &week})
	image := make([]byte, 4096)
	rand.Read(image)
	sid, _ := softid.Make("non-windows", 1, 1)
	sum, size, _ := clientimage.Hash(bytes.NewReader(image))
	isig, err := clientimage.Sign(&clientimage.Manifest{SoftwareID: uint32(sid), Name: "app", SHA256: sum, Size: size}, vs.Clearinghouse, vs.ClearinghouseChain)
	must(t, err)
	_, err = srv.AddImage(ctx, isig, bytes.NewReader(image))
	must(t, err)
	sig, dec := newClient(t)
	g, err := srv.Grant(ctx, grantRequest(t, srv, sid, image, nil, sig, dec))
	must(t, err)
	old := license.EncodePEM(srv.ID.LicenseChain(g.Assignment.Cert))

	// A week later the seat pack has expired; the customer buys a renewal.
	buy(&clearinghouse.Order{CustomerID: "acme", ProductID: "app", Platform: "non-windows", Quantity: 1, Upgrade: &pack.Upgrade{FromMin: "1.0", FromMax: "1.0"}})
	later := time.Now().Add(8 * 24 * time.Hour)
	srv.Now = func() time.Time { return later }
	up, err := srv.Upgrade(ctx, old)
	must(t, err)
	v, err := srv.Verifier()
	must(t, err)
	lic, err := v.Verify(up.License, verify.Options{Now: later, ClientKey: sig.Public()})
	if err != nil {
		t.Fatalf("the renewed license: %v", err)
	}
	if limit := time.Now().Add(pack.DefaultUpgradeTerm + time.Minute); lic.NotAfter.After(limit) || lic.Statement == nil || lic.Statement.Expires == nil {
		t.Errorf("renewed license valid until %s (site certificate until %s), statement %+v; want at most the renewal's term, %s",
			lic.NotAfter, srv.ID.Site.Cert.NotAfter, lic.Statement, limit)
	}
}
