package storetest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
)

// testTemporaryAllowance: temporary licenses cannot be farmed. A pack's
// statement allows Count of them, each at most MaxDays long, with license
// IDs from its temporary range; an expired pack and a pack without an
// allowance (from before statements) give none.
func testTemporaryAllowance(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	p := pack("pk_t", "prod_a", "linux-amd64", 100, 1, t0)
	p.TemporaryCount, p.TemporaryMaxDays, p.TemporaryBegin = 2, 14, 101
	old := pack("pk_old", "prod_b", "linux-amd64", 200, 1, t0) // no statement: no allowance
	expired := pack("pk_exp", "prod_c", "linux-amd64", 300, 1, t0)
	expired.TemporaryCount, expired.TemporaryMaxDays, expired.TemporaryBegin, expired.Expires = 5, 14, 301, ptr(at(time.Hour))
	install(t, st, p, old, expired)
	s := &seats{st: st}
	for _, prod := range []string{"prod_a", "prod_b", "prod_c"} {
		s.mustAssign(t, "cli_seat_"+prod, prod, "linux-amd64", t0, false)
	}
	temp := func(client, product string, now time.Time) (*licenseserver.Assignment, error) {
		r := s.req(client, product, "linux-amd64", now)
		r.TemporaryFor = 1825 * 24 * time.Hour // the site asks for five years
		a, _, err := st.AssignSeat(ctx, r, s.sign)
		return a, err
	}
	for i, client := range []string{"cli_1", "cli_2"} {
		a, err := temp(client, "prod_a", t0)
		ok(t, err, "temporary license "+client)
		if !a.Temporary || a.PackID != "pk_t" || a.LicenseID != 101+int64(i) || !a.Expires.Equal(t0.Add(14*24*time.Hour)) {
			t.Errorf("temporary license %d: %+v; want pk_t #%d until %s", i, a, 101+i, t0.Add(14*24*time.Hour))
		}
	}
	_, err := temp("cli_3", "prod_a", t0)
	wantKind(t, err, errs.Exhausted, "a third temporary license of a pack that allows two")
	_, err = temp("cli_4", "prod_b", t0)
	wantKind(t, err, errs.Exhausted, "a temporary license of a pack without an allowance")
	_, err = temp("cli_5", "prod_c", at(2*time.Hour))
	wantKind(t, err, errs.Exhausted, "a temporary license of an expired pack")
	got, err := st.Pack(ctx, "pk_t")
	ok(t, err, "Pack pk_t")
	if got.TemporaryAssigned != 2 || got.TemporaryCount != 2 || got.TemporaryMaxDays != 14 || got.TemporaryBegin != 101 {
		t.Errorf("pack pk_t temporary allowance %d/%d, %d days from #%d; want 2/2, 14 days from #101",
			got.TemporaryAssigned, got.TemporaryCount, got.TemporaryMaxDays, got.TemporaryBegin)
	}
}

// testLicenseStaysOnSystem: a live license is not reissued to another
// system ID (Forbidden); after ReleaseLicense the client takes it over on
// its new system, same license ID, newly signed.
func testLicenseStaysOnSystem(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 10, 2, t0))
	s := &seats{st: st}
	first := s.mustAssign(t, "cli_1", "prod_a", "linux-amd64", t0, false)
	moved := func() (*licenseserver.Assignment, bool, error) {
		r := s.req("cli_1", "prod_a", "linux-amd64", at(time.Minute))
		r.SystemID = "sys-other"
		return st.AssignSeat(ctx, r, s.sign)
	}
	_, _, err := moved()
	wantKind(t, err, errs.Forbidden, "reissue of a license to another system")
	r, isReleaser := st.(licenseserver.LicenseReleaser)
	if !isReleaser {
		t.Fatal("the store cannot release licenses (licenseserver.LicenseReleaser)")
	}
	_, err = r.ReleaseLicense(ctx, 999)
	wantKind(t, err, errs.NotFound, "release of an unknown license")
	rel, err := r.ReleaseLicense(ctx, first.LicenseID)
	ok(t, err, "ReleaseLicense")
	if rel.LicenseID != first.LicenseID || rel.SystemID != licenseserver.ReleasedSystemID {
		t.Errorf("released: %+v", rel)
	}
	signs := s.signs.Load()
	a, existing, err := moved()
	ok(t, err, "request from the new system after the release")
	if !existing || a.LicenseID != first.LicenseID || a.SystemID != "sys-other" || len(a.Cert) == 0 || s.signs.Load() != signs+1 {
		t.Errorf("after the release: %+v existing=%v, signed %d times; want license %d on sys-other, signed once", a, existing, s.signs.Load()-signs, first.LicenseID)
	}
	// The old system is now the other one.
	_, _, err = st.AssignSeat(ctx, s.req("cli_1", "prod_a", "linux-amd64", at(2*time.Minute)), s.sign)
	wantKind(t, err, errs.Forbidden, "reissue to the old system after the move")
	if p, err := st.Pack(ctx, "pk_1"); err != nil || p.Assigned != 1 {
		t.Errorf("pack after a move: %+v, %v; want one seat assigned", p, err)
	}
}

// testPackStatementStored: a pack's statement and temporary allowance
// survive installation.
func testPackStatementStored(t *testing.T, st licenseserver.Store) {
	p := pack("pk_s", "prod_a", "linux-amd64", 10, 3, t0)
	p.Statement = []byte(`{"type":"licet.pack-statement"}`)
	p.TemporaryCount, p.TemporaryMaxDays, p.TemporaryBegin = 1, 30, 13
	install(t, st, p)
	got, err := st.Pack(t.Context(), "pk_s")
	ok(t, err, "Pack")
	if !bytes.Equal(got.Statement, p.Statement) || got.TemporaryCount != 1 || got.TemporaryMaxDays != 30 || got.TemporaryBegin != 13 {
		t.Errorf("stored pack: statement %q, temporary %d/%d from %d", got.Statement, got.TemporaryCount, got.TemporaryMaxDays, got.TemporaryBegin)
	}
}

// testSiteUsageReports: the site's chain of usage reports: none at first,
// then the newest by sequence; a sequence is recorded once.
func testSiteUsageReports(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	rs, isStore := st.(licenseserver.UsageReportStore)
	if !isStore {
		t.Fatal("the site store keeps no usage reports (licenseserver.UsageReportStore)")
	}
	seq, hash, err := rs.LastUsageReport(ctx)
	ok(t, err, "LastUsageReport of an empty store")
	if seq != 0 || hash != nil {
		t.Errorf("LastUsageReport of an empty store: %d %x", seq, hash)
	}
	ok(t, rs.RecordUsageReport(ctx, 1, []byte("h1"), t0, []byte("file 1")), "RecordUsageReport 1")
	ok(t, rs.RecordUsageReport(ctx, 2, []byte("h2"), at(time.Hour), []byte("file 2")), "RecordUsageReport 2")
	wantKind(t, rs.RecordUsageReport(ctx, 2, []byte("h2b"), at(time.Hour), []byte("file 2b")), errs.Conflict, "a second report 2")
	seq, hash, err = rs.LastUsageReport(ctx)
	ok(t, err, "LastUsageReport")
	if seq != 2 || string(hash) != "h2" {
		t.Errorf("LastUsageReport: %d %q, want 2 h2", seq, hash)
	}
	ok(t, rs.RecordUsageReport(ctx, 3, []byte("h3"), at(2*time.Hour), []byte("file 3")), "RecordUsageReport 3")
	unsent := func(n int, want ...string) {
		t.Helper()
		files, err := rs.UnsentUsageReports(ctx, n)
		ok(t, err, "UnsentUsageReports")
		var got []string
		for _, f := range files {
			got = append(got, string(f))
		}
		same(t, fmt.Sprintf("UnsentUsageReports(%d)", n), got, want)
	}
	unsent(1, "file 3")
	unsent(2, "file 2", "file 3")
	unsent(5, "file 1", "file 2", "file 3")
	ok(t, rs.AcknowledgeUsageReports(ctx, 2, at(3*time.Hour)), "AcknowledgeUsageReports 2")
	unsent(5, "file 3")
	ok(t, rs.AcknowledgeUsageReports(ctx, 1, at(4*time.Hour)), "AcknowledgeUsageReports 1 again")
	unsent(5, "file 3")
	ok(t, rs.AcknowledgeUsageReports(ctx, 3, at(5*time.Hour)), "AcknowledgeUsageReports 3")
	unsent(5)
}

// testVendorUsageReports: the vendor's record of received reports and the
// packs issued to a site.
func testVendorUsageReports(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	us, isStore := st.(clearinghouse.UsageReportStore)
	if !isStore {
		t.Fatal("the vendor store keeps no usage reports (clearinghouse.UsageReportStore)")
	}
	seedPackParts(t, st)
	ok(t, st.RecordPack(ctx, &clearinghouse.IssuedPack{PackID: "pk_1", OrderID: "ord_1", SiteID: "site_a", BeginSerial: 7, Quantity: 5,
		Issued: at(time.Minute), File: []byte("pack")}), "RecordPack")
	packs, err := us.SitePacks(ctx, "site_a")
	ok(t, err, "SitePacks")
	if len(packs) != 1 || packs[0].PackID != "pk_1" || packs[0].BeginSerial != 7 || packs[0].Quantity != 5 {
		t.Errorf("SitePacks = %+v", packs)
	}
	if none, err := us.SitePacks(ctx, "site_none"); err != nil || len(none) != 0 {
		t.Errorf("SitePacks of a site without packs: %v, %v", none, err)
	}
	_, err = us.UsageReport(ctx, "site_a", "ab")
	wantKind(t, err, errs.NotFound, "UsageReport of a missing report")
	r := &clearinghouse.UsageRecord{SiteID: "site_a", Hash: "ab12", Sequence: 1, Previous: "", Received: t0, Licenses: 3,
		Flags: []clearinghouse.UsageFlag{{Kind: clearinghouse.FlagOverQuantity, Message: "too many"}}, File: []byte("report")}
	ok(t, us.RecordUsageReport(ctx, r), "RecordUsageReport")
	wantKind(t, us.RecordUsageReport(ctx, r), errs.Conflict, "the same report again")
	got, err := us.UsageReport(ctx, "site_a", "ab12")
	ok(t, err, "UsageReport")
	same(t, "usage report", got, r)
	r2 := &clearinghouse.UsageRecord{SiteID: "site_a", Hash: "cd34", Sequence: 2, Previous: "ab12", Received: at(time.Hour), Flags: []clearinghouse.UsageFlag{}, File: []byte("report 2")}
	ok(t, us.RecordUsageReport(ctx, r2), "RecordUsageReport 2")
	all, err := us.UsageReports(ctx, "site_a")
	ok(t, err, "UsageReports")
	if len(all) != 2 || all[0].Hash != "ab12" || all[1].Hash != "cd34" {
		t.Errorf("UsageReports = %+v", all)
	}
	if other, err := us.UsageReports(ctx, "site_b"); err != nil || len(other) != 0 {
		t.Errorf("UsageReports of another site: %v, %v", other, err)
	}
}

// TestOrderTemporaryMigration checks vendor migration 016 (the
// temporary-license allowance of orders) on the database dsn: open (which
// migrates) it, then exec undoes 016 (its columns and its record), orders
// are written as before it, and open again applies it. Orders from before
// it get the allowance their packs were issued with, max(1, quantity/10)
// temporary licenses of 60 days; an upgrade order gets none.
func TestOrderTemporaryMigration(t *testing.T, dsn string, open func(ctx context.Context, dsn string) (clearinghouse.StoreCloser, error), exec func(query string) error) {
	ctx := t.Context()
	st, err := open(ctx, dsn)
	ok(t, err, "open the vendor store")
	seedOrderParts(t, st)
	ok(t, st.Close(), "close")
	for _, q := range []string{
		`ALTER TABLE v_orders DROP COLUMN temporary_licenses`,
		`ALTER TABLE v_orders DROP COLUMN temporary_days`,
		`DELETE FROM licet_migrations WHERE role = 'vendor' AND version = 16`,
		`INSERT INTO v_orders (id, customer_id, product_id, platform, quantity, features, created, upgrade_from_min, upgrade_from_max) VALUES
			('ord_1', 'cus_a', 'prod_a', 'p', 1, '[]', 0, NULL, NULL),
			('ord_19', 'cus_a', 'prod_a', 'p', 19, '[]', 0, NULL, NULL),
			('ord_25', 'cus_a', 'prod_a', 'p', 25, '[]', 0, NULL, NULL),
			('ord_up', 'cus_a', 'prod_a', 'p', 30, '[]', 0, '1.0', '1.9')`,
	} {
		ok(t, exec(q), q)
	}
	st, err = open(ctx, dsn)
	ok(t, err, "open the vendor store again: migration 016 applied")
	defer st.Close()
	for id, want := range map[string]*int{"ord_1": ptr(1), "ord_19": ptr(1), "ord_25": ptr(2), "ord_up": nil} {
		o, err := st.Order(ctx, id)
		ok(t, err, "Order "+id)
		wantDays := ptr(60)
		if want == nil {
			wantDays = nil
		}
		same(t, "temporary licenses of "+id, o.TemporaryLicenses, want)
		same(t, "temporary days of "+id, o.TemporaryDays, wantDays)
	}
}
