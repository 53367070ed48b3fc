package licenseserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/licensing/licenseserver"
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
	buy := func(o *clearinghouse.Order) { buyPack(t, vs, srv, o) }
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
			lic.NotAfter, srv.ID.Site().Cert.NotAfter, lic.Statement, limit)
	}
}

// TestUsageReportFlags: the vendor flags a signed usage report that lists
// more seats than sold, a serial outside its pack, one serial twice, or a
// pack never sold to the site; the site's own report has no flag; a
// report signed by another key is refused.
func TestUsageReportFlags(t *testing.T) {
	ctx := context.Background()
	vs := newVendor(t)
	srv := enrolledSite(t, vs)
	issued := buyPack(t, vs, srv, &clearinghouse.Order{CustomerID: "acme", ProductID: "app", Platform: "non-windows", Quantity: 3})

	honest, _, err := srv.SignedUsageReport(ctx)
	must(t, err)
	rec, err := vs.ImportUsageReport(ctx, honest)
	must(t, err)
	if len(rec.Flags) != 0 || rec.Sequence != 1 {
		t.Fatalf("the site's own report: %+v", rec)
	}

	b := issued.BeginSerial
	lic := func(id int64, client, packID string) pack.UsageLicense {
		return pack.UsageLicense{LicenseID: id, PackID: packID, ClientID: client, SystemID: "sys-" + client}
	}
	forged := &pack.UsageReport{SiteID: srv.ID.SiteID, Created: time.Now().UTC().Truncate(time.Second), Sequence: 2, Previous: mustHex(t, rec.Hash),
		Packs: []pack.UsagePack{{PackID: issued.PackID, ProductID: "app", Quantity: 3, Assigned: 4}},
		Licenses: []pack.UsageLicense{lic(b, "c1", issued.PackID), lic(b+1, "c2", issued.PackID), lic(b+2, "c3", issued.PackID),
			lic(b+2, "c4", issued.PackID), lic(b+500, "c5", issued.PackID), lic(7, "c6", "pk-never-sold")}}
	data, _, err := pack.SignUsageReport(forged, srv.ID.Signer, srv.ID.SiteChain())
	must(t, err)
	rec, err = vs.ImportUsageReport(ctx, data)
	must(t, err)
	kinds := map[string]bool{}
	for _, f := range rec.Flags {
		kinds[f.Kind] = true
		t.Logf("%s: %s", f.Kind, f.Message)
	}
	for _, want := range []string{clearinghouse.FlagOverQuantity, clearinghouse.FlagOutsideRange, clearinghouse.FlagDuplicateSerial, clearinghouse.FlagUnknownPack} {
		if !kinds[want] {
			t.Errorf("forged report: no %s flag (flags %v)", want, kinds)
		}
	}
	if kinds[clearinghouse.FlagChainBreak] {
		t.Errorf("the forged report continues the chain, yet it is flagged %s", clearinghouse.FlagChainBreak)
	}

	other, err := keys.GenerateSigner()
	must(t, err)
	data, _, err = pack.SignUsageReport(forged, other, srv.ID.SiteChain())
	must(t, err)
	if _, err := vs.ImportUsageReport(ctx, data); err == nil {
		t.Error("a report signed by another key than the site's was accepted")
	}
}

// buyPack records order o at the vendor, has the site buy its pack and
// installs it.
func buyPack(t *testing.T, vs *clearinghouse.Service, srv *licenseserver.Server, o *clearinghouse.Order) *clearinghouse.IssuedPack {
	t.Helper()
	ctx := context.Background()
	must(t, vs.AddOrder(ctx, o))
	preq, err := srv.PurchaseRequest(o.ID)
	must(t, err)
	file, issued, err := vs.IssuePack(ctx, preq)
	must(t, err)
	_, err = srv.InstallPack(ctx, file)
	must(t, err)
	return issued
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	must(t, err)
	return b
}

// TestUsageReportAfterLateRenewal: a site whose certificate expired renews
// it against a report signed under the expired certificate; the report
// after the renewal is still compared with that one, so a serial moved to
// another client between them is flagged.
func TestUsageReportAfterLateRenewal(t *testing.T) {
	ctx := context.Background()
	vs := newVendor(t)
	vs.SiteValidity = 2 * time.Hour
	start := time.Now().UTC().Truncate(time.Second)
	vs.Now = func() time.Time { return start }
	srv := enrolledSite(t, vs)
	issued := buyPack(t, vs, srv, &clearinghouse.Order{CustomerID: "acme", ProductID: "app", Platform: "non-windows", Quantity: 3})
	b := issued.BeginSerial
	report := func(seq int64, prev []byte, client string, created time.Time) ([]byte, []byte) {
		r := &pack.UsageReport{SiteID: srv.ID.SiteID, Created: created, Sequence: seq, Previous: prev,
			Packs:    []pack.UsagePack{{PackID: issued.PackID, ProductID: "app", Quantity: 3, Assigned: 1}},
			Licenses: []pack.UsageLicense{{LicenseID: b, PackID: issued.PackID, ClientID: client, SystemID: "sys-" + client}}}
		data, hash, err := pack.SignUsageReport(r, srv.ID.Signer, srv.ID.SiteChain())
		must(t, err)
		return data, hash
	}
	first, h1 := report(1, nil, "c1", start)
	rec, err := vs.ImportUsageReport(ctx, first)
	must(t, err)
	if len(rec.Flags) != 0 {
		t.Fatalf("report 1: flags %+v", rec.Flags)
	}

	// Three hours later the site certificate has expired: the site renews
	// against report 2, signed under it.
	later := start.Add(3 * time.Hour)
	vs.Now = func() time.Time { return later }
	second, h2 := report(2, h1, "c1", later)
	file, err := pack.NewRenewalFile(srv.ID.Signer, srv.ID.SiteChain(), second, h2, nil, later)
	must(t, err)
	rn, err := vs.RenewSite(ctx, file)
	must(t, err)
	_, err = srv.ID.InstallCertificate(licenseserver.EncodeCertificate(rn.Chain), "", later)
	must(t, err)

	// Report 3, under the new certificate, gives serial b to another client.
	third, _ := report(3, h2, "c2", later.Add(time.Minute))
	rec, err = vs.ImportUsageReport(ctx, third)
	must(t, err)
	for _, f := range rec.Flags {
		if f.Kind == clearinghouse.FlagDuplicateSerial {
			return
		}
	}
	t.Fatalf("serial %d moved from client c1 (report 2) to c2 (report 3) without a %s flag: flags %+v", b, clearinghouse.FlagDuplicateSerial, rec.Flags)
}

// TestRenewalWithAnotherSitesReport: a renewal request that names another
// site's usage report, and brings it, is refused with a message that says
// so (not that the report differs from the one named: it is that one).
func TestRenewalWithAnotherSitesReport(t *testing.T) {
	ctx := context.Background()
	vs := newVendor(t)
	a, b := enrolledSite(t, vs), enrolledSite(t, vs)
	theirs, _, err := b.SignedUsageReport(ctx)
	must(t, err)
	_, _, hash, err := pack.ReadUsageReport(theirs, b.ID.Root(), time.Now())
	must(t, err)
	file, err := pack.NewRenewalFile(a.ID.Signer, a.ID.SiteChain(), theirs, hash, nil, time.Now())
	must(t, err)
	_, err = vs.RenewSite(ctx, file)
	if err == nil || !strings.Contains(err.Error(), "is site "+b.ID.SiteID+"'s, not the renewing site's") {
		t.Fatalf("renewal of site %s with site %s's report: %v", a.ID.SiteID, b.ID.SiteID, err)
	}
}
