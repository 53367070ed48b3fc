// Package storetest is the conformance suite of licet's stores. Every
// backend runs TestVendor and TestSite against its own databases, so that
// SQLite and PostgreSQL are held to the same contract: the doc comments of
// clearinghouse.Store, licenseserver.Store and auth.TokenStore.
//
// Each subtest calls open for a fresh, empty store, and runs in parallel
// with the others (t.Parallel), so open must be safe for concurrent use.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
	packfmt "github.com/licet/licet/licensing/pack"
)

// t0 is the suite's reference time: nanoseconds set, UTC.
var t0 = time.Date(2031, time.May, 6, 7, 8, 9, 123456789, time.UTC)

// at returns t0 moved by d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// TestVendor runs the conformance suite of clearinghouse.Store.
func TestVendor(t *testing.T, open func(t *testing.T) clearinghouse.Store) {
	sub := parallel(t)
	sub("Tokens", func(t *testing.T) { testTokens(t, open(t)) })
	sub("Products", func(t *testing.T) { testProducts(t, open(t)) })
	sub("Customers", func(t *testing.T) { testCustomers(t, open(t)) })
	sub("Enrollments", func(t *testing.T) { testEnrollments(t, open(t)) })
	sub("EnrollSiteReuse", func(t *testing.T) { testEnrollSiteReuse(t, open(t)) })
	sub("EnrollSiteConcurrent", func(t *testing.T) { testEnrollSiteConcurrent(t, open(t)) })
	sub("Sites", func(t *testing.T) { testSites(t, open(t)) })
	sub("RevokeSite", func(t *testing.T) { testRevokeSite(t, open(t)) })
	sub("Orders", func(t *testing.T) { testOrders(t, open(t)) })
	sub("AllocateSerials", func(t *testing.T) { testAllocateSerials(t, open(t)) })
	sub("AllocateSerialsConcurrent", func(t *testing.T) { testAllocateSerialsConcurrent(t, open(t)) })
	sub("RecordPack", func(t *testing.T) { testRecordPack(t, open(t)) })
	sub("UsageReports", func(t *testing.T) { testVendorUsageReports(t, open(t)) })
	sub("RecordPackConcurrent", func(t *testing.T) { testRecordPackConcurrent(t, open(t)) })
	sub("MissingReferences", func(t *testing.T) { testVendorMissingReferences(t, open(t)) })
	sub("EnrollSiteAtomic", func(t *testing.T) { testEnrollSiteAtomic(t, open(t)) })
	sub("ZeroValues", func(t *testing.T) { testVendorZeroValues(t, open(t)) })
}

// TestSite runs the conformance suite of licenseserver.Store, GrantStore included.
func TestSite(t *testing.T, open func(t *testing.T) licenseserver.Store) {
	sub := parallel(t)
	sub("Tokens", func(t *testing.T) { testTokens(t, open(t)) })
	sub("Packs", func(t *testing.T) { testPacks(t, open(t)) })
	sub("InstallPackConcurrent", func(t *testing.T) { testInstallPackConcurrent(t, open(t)) })
	sub("Images", func(t *testing.T) { testImages(t, open(t)) })
	sub("ChallengeSingleUse", func(t *testing.T) { testChallengeSingleUse(t, open(t)) })
	sub("ChallengeConcurrent", func(t *testing.T) { testChallengeConcurrent(t, open(t)) })
	sub("ConsumeChallenge", func(t *testing.T) { testConsumeChallenge(t, open(t)) })
	sub("AssignSeat", func(t *testing.T) { testAssignSeat(t, open(t)) })
	sub("AssignSeatPackSelection", func(t *testing.T) { testAssignSeatPackSelection(t, open(t)) })
	sub("AssignSeatNextPack", func(t *testing.T) { testAssignSeatNextPack(t, open(t)) })
	sub("AssignSeatTemporary", func(t *testing.T) { testAssignSeatTemporary(t, open(t)) })
	sub("TemporaryAllowance", func(t *testing.T) { testTemporaryAllowance(t, open(t)) })
	sub("LicenseStaysOnSystem", func(t *testing.T) { testLicenseStaysOnSystem(t, open(t)) })
	sub("PackStatementStored", func(t *testing.T) { testPackStatementStored(t, open(t)) })
	sub("UsageReports", func(t *testing.T) { testSiteUsageReports(t, open(t)) })
	sub("AssignSeatExpiredAssignment", func(t *testing.T) { testAssignSeatExpiredAssignment(t, open(t)) })
	sub("AssignSeatCert", func(t *testing.T) { testAssignSeatCert(t, open(t)) })
	sub("AssignSeatSignError", func(t *testing.T) { testAssignSeatSignError(t, open(t)) })
	sub("AssignSeatConcurrent", func(t *testing.T) { testAssignSeatConcurrent(t, open(t)) })
	sub("AssignSeatSameClientConcurrent", func(t *testing.T) { testAssignSeatSameClientConcurrent(t, open(t)) })
	sub("Assignments", func(t *testing.T) { testAssignments(t, open(t)) })
	sub("ZeroValues", func(t *testing.T) { testSiteZeroValues(t, open(t)) })
	sub("UpgradeSeat", func(t *testing.T) { testUpgradeSeat(t, open(t)) })
	sub("UpgradeSeatExpired", func(t *testing.T) { testUpgradeSeatExpired(t, open(t)) })
	sub("UpgradeSeatConcurrent", func(t *testing.T) { testUpgradeSeatConcurrent(t, open(t)) })
	sub("AssignSeatCancelled", func(t *testing.T) { testAssignSeatCancelled(t, open(t)) })
	sub("SeatLeases", func(t *testing.T) { testSeatLeases(t, open(t)) })
}

// parallel returns a function that runs a named subtest of t in parallel
// with the others.
func parallel(t *testing.T) func(name string, f func(t *testing.T)) {
	return func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t)
		})
	}
}

// ---- comparison and error helpers ----

// Diff describes the first difference between got and want, or returns "".
// Times must be equal instants and in UTC; nil and empty slices and maps
// are the same; pointers are compared by what they point to, and a nil
// pointer equals only a nil pointer.
func Diff(got, want any) string {
	return diff("", reflect.ValueOf(got), reflect.ValueOf(want))
}

var timeType = reflect.TypeOf(time.Time{})

func diff(path string, g, w reflect.Value) string {
	if !g.IsValid() || !w.IsValid() {
		if g.IsValid() != w.IsValid() {
			return fmt.Sprintf("%s: got %v, want %v", path, g, w)
		}
		return ""
	}
	if g.Type() != w.Type() {
		return fmt.Sprintf("%s: got type %s, want %s", path, g.Type(), w.Type())
	}
	if g.Type() == timeType {
		gt, wt := g.Interface().(time.Time), w.Interface().(time.Time)
		if !gt.Equal(wt) {
			return fmt.Sprintf("%s: got time %s, want %s", path, gt.Format(time.RFC3339Nano), wt.Format(time.RFC3339Nano))
		}
		if gt.Location() != time.UTC {
			return fmt.Sprintf("%s: got time %s in %s, want UTC", path, gt.Format(time.RFC3339Nano), gt.Location())
		}
		return ""
	}
	switch g.Kind() {
	case reflect.Pointer, reflect.Interface:
		if g.IsNil() || w.IsNil() {
			if g.IsNil() != w.IsNil() {
				return fmt.Sprintf("%s: got %s, want %s", path, show(g), show(w))
			}
			return ""
		}
		return diff(path, g.Elem(), w.Elem())
	case reflect.Struct:
		for i := 0; i < g.NumField(); i++ {
			if !g.Type().Field(i).IsExported() {
				continue
			}
			if d := diff(path+"."+g.Type().Field(i).Name, g.Field(i), w.Field(i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice:
		if g.Type().Elem().Kind() == reflect.Uint8 {
			if !bytes.Equal(g.Bytes(), w.Bytes()) {
				return fmt.Sprintf("%s: got bytes %x, want %x", path, g.Bytes(), w.Bytes())
			}
			return ""
		}
		if g.Len() != w.Len() {
			return fmt.Sprintf("%s: got %d elements %s, want %d %s", path, g.Len(), show(g), w.Len(), show(w))
		}
		for i := 0; i < g.Len(); i++ {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), g.Index(i), w.Index(i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Map:
		if g.Len() != w.Len() {
			return fmt.Sprintf("%s: got %v, want %v", path, show(g), show(w))
		}
		for _, k := range w.MapKeys() {
			gv := g.MapIndex(k)
			if !gv.IsValid() {
				return fmt.Sprintf("%s: key %v missing (got %v, want %v)", path, k, show(g), show(w))
			}
			if d := diff(fmt.Sprintf("%s[%v]", path, k), gv, w.MapIndex(k)); d != "" {
				return d
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(g.Interface(), w.Interface()) {
			return fmt.Sprintf("%s: got %#v, want %#v", path, g.Interface(), w.Interface())
		}
		return ""
	}
}

func show(v reflect.Value) string {
	if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface || v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.IsNil() {
		return "nil"
	}
	if v.Kind() == reflect.Pointer {
		return fmt.Sprintf("&%+v", v.Elem().Interface())
	}
	return fmt.Sprintf("%+v", v.Interface())
}

// same fails the test if got and want differ.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := Diff(got, want); d != "" {
		t.Errorf("%s differs: %s", what, d)
	}
}

// ok fails the test now if err is not nil.
func ok(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantKind fails the test if err is not of kind k.
func wantKind(t *testing.T, err error, k errs.Kind, what string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %s", what, k)
		return
	}
	if got := errs.KindOf(err); got != k {
		t.Errorf("%s: error of kind %s, want %s: %v", what, got, k, err)
	}
}

// run starts n goroutines running f(i) and waits for all of them.
func run(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// ---- tokens ----

func testTokens(t *testing.T, st auth.TokenStore) {
	ctx := t.Context()
	_, err := st.TokenByHash(ctx, auth.HashToken("licet_none"))
	wantKind(t, err, errs.NotFound, "TokenByHash of a missing token")

	tok := &auth.Token{ID: "tok_1", Name: "deploy bot", Hash: auth.HashToken("licet_secret1"), Created: t0, Scope: auth.ScopeUpgrade}
	ok(t, st.AddToken(ctx, tok), "AddToken")
	got, err := st.TokenByHash(ctx, auth.HashToken("licet_secret1"))
	ok(t, err, "TokenByHash")
	same(t, "token", got, tok)

	// A second token with another zone: comes back in UTC.
	tok2 := &auth.Token{ID: "tok_2", Name: "", Hash: auth.HashToken("licet_secret2"), Created: at(time.Hour).In(time.FixedZone("X", 5*3600))}
	ok(t, st.AddToken(ctx, tok2), "AddToken 2")
	got, err = st.TokenByHash(ctx, tok2.Hash)
	ok(t, err, "TokenByHash 2")
	same(t, "token 2 (no scope given: admin)", got, &auth.Token{ID: "tok_2", Hash: tok2.Hash, Created: at(time.Hour), Scope: auth.ScopeAdmin})

	wantKind(t, st.AddToken(ctx, &auth.Token{ID: "tok_1", Name: "again", Hash: auth.HashToken("licet_secret3"), Created: t0}),
		errs.Conflict, "AddToken with a duplicate ID")
	wantKind(t, st.AddToken(ctx, &auth.Token{ID: "tok_3", Name: "same hash", Hash: tok.Hash, Created: t0}),
		errs.Conflict, "AddToken with a duplicate hash")
	got, err = st.TokenByHash(ctx, tok.Hash)
	ok(t, err, "TokenByHash after conflicts")
	same(t, "token after conflicts", got, tok)

	// Lifecycle: an expiry and a product come back; revocation is stored
	// (once: a second revocation keeps the first time); the list holds all.
	exp := at(90 * 24 * time.Hour)
	tok4 := &auth.Token{ID: "tok_4", Name: "gw", Hash: auth.HashToken("licet_secret4"), Created: at(2 * time.Hour), Scope: auth.ScopeUpgrade, Product: "cad", Expires: &exp}
	ok(t, st.AddToken(ctx, tok4), "AddToken with expiry and product")
	got, err = st.TokenByHash(ctx, tok4.Hash)
	ok(t, err, "TokenByHash 4")
	same(t, "token with expiry and product", got, tok4)
	rev, err := st.RevokeToken(ctx, "tok_4", at(3*time.Hour))
	ok(t, err, "RevokeToken")
	if rev.Revoked == nil || !rev.Revoked.Equal(at(3*time.Hour)) {
		t.Errorf("RevokeToken: revoked %v, want %v", rev.Revoked, at(3*time.Hour))
	}
	rev, err = st.RevokeToken(ctx, "tok_4", at(4*time.Hour))
	ok(t, err, "RevokeToken again")
	if rev.Revoked == nil || !rev.Revoked.Equal(at(3*time.Hour)) {
		t.Errorf("RevokeToken again: revoked %v, want the first time %v", rev.Revoked, at(3*time.Hour))
	}
	got, err = st.TokenByHash(ctx, tok4.Hash)
	ok(t, err, "TokenByHash of a revoked token")
	if got.Revoked == nil {
		t.Error("TokenByHash of a revoked token: not marked revoked")
	}
	_, err = st.RevokeToken(ctx, "tok_none", at(0))
	wantKind(t, err, errs.NotFound, "RevokeToken of a missing token")
	list, err := st.Tokens(ctx)
	ok(t, err, "Tokens")
	var listed []string
	for _, x := range list {
		listed = append(listed, x.ID)
	}
	same(t, "Tokens", listed, []string{"tok_1", "tok_2", "tok_4"})
}

// ---- vendor ----

func product(id string, created time.Time) *clearinghouse.Product {
	return &clearinghouse.Product{
		ID: id, Name: "Product " + id, Manufacturer: "Acme, Inc.", Version: "2.1.0",
		Features:     []string{"basic", "export", "ünïcode"},
		Descriptions: map[string]string{"en": "A product", "de": "Ein Produkt"},
		Data:         map[string]string{"edition": "pro", "quote": `"x";--`},
		Created:      created,
	}
}

func testProducts(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	ps, err := st.Products(ctx)
	ok(t, err, "Products of an empty store")
	if len(ps) != 0 {
		t.Errorf("Products of an empty store: %d, want 0", len(ps))
	}
	_, err = st.Product(ctx, "nope")
	wantKind(t, err, errs.NotFound, "Product of a missing ID")

	full := product("prod_a", t0)
	ok(t, st.CreateProduct(ctx, full), "CreateProduct")
	got, err := st.Product(ctx, "prod_a")
	ok(t, err, "Product")
	same(t, "product", got, full)

	// Empty lists and maps, set explicitly, and left nil.
	empty := &clearinghouse.Product{ID: "prod_b", Name: "B", Features: []string{}, Descriptions: map[string]string{}, Data: map[string]string{}, Created: at(time.Second)}
	ok(t, st.CreateProduct(ctx, empty), "CreateProduct with empty lists")
	got, err = st.Product(ctx, "prod_b")
	ok(t, err, "Product with empty lists")
	same(t, "product with empty lists", got, empty)
	bare := &clearinghouse.Product{ID: "prod_c", Created: at(2 * time.Second)}
	ok(t, st.CreateProduct(ctx, bare), "CreateProduct with nil lists")
	got, err = st.Product(ctx, "prod_c")
	ok(t, err, "Product with nil lists")
	same(t, "product with nil lists", got, bare)

	dup := product("prod_a", at(time.Hour))
	dup.Name = "Other"
	wantKind(t, st.CreateProduct(ctx, dup), errs.Conflict, "CreateProduct with a duplicate ID")
	got, err = st.Product(ctx, "prod_a")
	ok(t, err, "Product after conflict")
	same(t, "product after conflict", got, full)

	ok(t, st.SetProductVersion(ctx, "prod_c", "2.0.1"), "SetProductVersion")
	got, err = st.Product(ctx, "prod_c")
	ok(t, err, "Product after SetProductVersion")
	bare.Version = "2.0.1"
	same(t, "product after SetProductVersion", got, bare)
	wantKind(t, st.SetProductVersion(ctx, "nope", "2.0"), errs.NotFound, "SetProductVersion of a missing product")

	ps, err = st.Products(ctx)
	ok(t, err, "Products")
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	same(t, "products", ps, []*clearinghouse.Product{full, empty, bare})
}

func testCustomers(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	cs, err := st.Customers(ctx)
	ok(t, err, "Customers of an empty store")
	if len(cs) != 0 {
		t.Errorf("Customers of an empty store: %d, want 0", len(cs))
	}
	_, err = st.Customer(ctx, "nope")
	wantKind(t, err, errs.NotFound, "Customer of a missing ID")

	a := &clearinghouse.Customer{ID: "cus_a", Name: "Alpha GmbH", Created: t0}
	b := &clearinghouse.Customer{ID: "cus_b", Name: "Beta 'Ltd'", Created: at(time.Nanosecond).In(time.FixedZone("PST", -8*3600))}
	ok(t, st.CreateCustomer(ctx, a), "CreateCustomer a")
	ok(t, st.CreateCustomer(ctx, b), "CreateCustomer b")
	got, err := st.Customer(ctx, "cus_a")
	ok(t, err, "Customer a")
	same(t, "customer a", got, a)
	got, err = st.Customer(ctx, "cus_b")
	ok(t, err, "Customer b")
	same(t, "customer b (stored from another zone)", got, &clearinghouse.Customer{ID: "cus_b", Name: b.Name, Created: at(time.Nanosecond)})

	wantKind(t, st.CreateCustomer(ctx, &clearinghouse.Customer{ID: "cus_a", Name: "dup", Created: t0}), errs.Conflict, "CreateCustomer with a duplicate ID")
	cs, err = st.Customers(ctx)
	ok(t, err, "Customers")
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	same(t, "customers", cs, []*clearinghouse.Customer{a, {ID: "cus_b", Name: b.Name, Created: at(time.Nanosecond)}})
}

func seedCustomers(t *testing.T, st clearinghouse.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		ok(t, st.CreateCustomer(t.Context(), &clearinghouse.Customer{ID: id, Name: "Customer " + id, Created: t0}), "CreateCustomer "+id)
	}
}

func testEnrollments(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedCustomers(t, st, "cus_a")
	_, err := st.Enrollment(ctx, []byte("no such code"))
	wantKind(t, err, errs.NotFound, "Enrollment of a missing code")

	e := &clearinghouse.Enrollment{CodeHash: auth.HashToken("CODE-1"), CustomerID: "cus_a", Created: t0, Expires: at(72 * time.Hour)}
	ok(t, st.CreateEnrollment(ctx, e), "CreateEnrollment")
	got, err := st.Enrollment(ctx, e.CodeHash)
	ok(t, err, "Enrollment")
	same(t, "fresh enrollment", got, e)
	if got.UsedAt != nil || got.UsedBy != "" {
		t.Errorf("fresh enrollment is used: %+v", got)
	}

	wantKind(t, st.CreateEnrollment(ctx, &clearinghouse.Enrollment{CodeHash: e.CodeHash, CustomerID: "cus_a", Created: t0, Expires: t0}),
		errs.Conflict, "CreateEnrollment with a duplicate code")

	site := &clearinghouse.Site{ID: "site_1", CustomerID: "cus_a", Name: "Main office", CertDER: []byte{0x30, 0x82, 0x00, 0xff}, Certified: at(time.Minute)}
	ok(t, st.EnrollSite(ctx, e.CodeHash, site, at(time.Minute+time.Nanosecond)), "EnrollSite")
	got, err = st.Enrollment(ctx, e.CodeHash)
	ok(t, err, "Enrollment after use")
	want := *e
	want.UsedBy, want.UsedAt = "site_1", ptr(at(time.Minute+time.Nanosecond))
	same(t, "used enrollment", got, &want)
	gs, err := st.Site(ctx, "site_1")
	ok(t, err, "Site recorded by EnrollSite")
	same(t, "enrolled site", gs, site)
}

func testEnrollSiteReuse(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedCustomers(t, st, "cus_a")
	code := auth.HashToken("CODE-2")
	ok(t, st.CreateEnrollment(ctx, &clearinghouse.Enrollment{CodeHash: code, CustomerID: "cus_a", Created: t0, Expires: at(time.Hour)}), "CreateEnrollment")
	first := &clearinghouse.Site{ID: "site_1", CustomerID: "cus_a", Name: "first", CertDER: []byte("cert-1"), Certified: at(time.Second)}
	ok(t, st.EnrollSite(ctx, code, first, at(time.Second)), "first EnrollSite")

	second := &clearinghouse.Site{ID: "site_2", CustomerID: "cus_a", Name: "second", CertDER: []byte("cert-2"), Certified: at(2 * time.Second)}
	wantKind(t, st.EnrollSite(ctx, code, second, at(2*time.Second)), errs.Conflict, "EnrollSite with a used code")
	// The same site again is a reuse too.
	wantKind(t, st.EnrollSite(ctx, code, first, at(3*time.Second)), errs.Conflict, "EnrollSite with a used code, same site")

	_, err := st.Site(ctx, "site_2")
	wantKind(t, err, errs.NotFound, "Site of the refused enrollment")
	gs, err := st.Site(ctx, "site_1")
	ok(t, err, "Site of the first enrollment")
	same(t, "first site", gs, first)
	e, err := st.Enrollment(ctx, code)
	ok(t, err, "Enrollment")
	if e.UsedBy != "site_1" || e.UsedAt == nil || !e.UsedAt.Equal(at(time.Second)) {
		t.Errorf("enrollment after reuse: used by %q at %v, want site_1 at %v", e.UsedBy, e.UsedAt, at(time.Second))
	}
	sites, err := st.Sites(ctx, "cus_a")
	ok(t, err, "Sites")
	same(t, "sites", sites, []*clearinghouse.Site{first})
}

func testEnrollSiteConcurrent(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedCustomers(t, st, "cus_a")
	code := auth.HashToken("CODE-3")
	ok(t, st.CreateEnrollment(ctx, &clearinghouse.Enrollment{CodeHash: code, CustomerID: "cus_a", Created: t0, Expires: at(time.Hour)}), "CreateEnrollment")
	const n = 8
	results := make([]error, n)
	run(n, func(i int) {
		s := &clearinghouse.Site{ID: fmt.Sprintf("site_%d", i), CustomerID: "cus_a", Name: "racer", CertDER: []byte{byte(i)}, Certified: at(time.Duration(i))}
		results[i] = st.EnrollSite(ctx, code, s, at(time.Minute))
	})
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("EnrollSite: goroutines %d and %d both enrolled with one code", winner, i)
		case err == nil:
			winner = i
		default:
			wantKind(t, err, errs.Conflict, fmt.Sprintf("losing EnrollSite %d", i))
		}
	}
	if winner < 0 {
		t.Fatal("EnrollSite: no goroutine enrolled")
	}
	sites, err := st.Sites(ctx, "cus_a")
	ok(t, err, "Sites")
	if len(sites) != 1 || sites[0].ID != fmt.Sprintf("site_%d", winner) {
		t.Errorf("sites after the race: %+v, want only site_%d", sites, winner)
	}
	e, err := st.Enrollment(ctx, code)
	ok(t, err, "Enrollment")
	if e.UsedBy != fmt.Sprintf("site_%d", winner) {
		t.Errorf("enrollment used by %q, want site_%d", e.UsedBy, winner)
	}
}

func testSites(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedCustomers(t, st, "cus_a", "cus_b")
	_, err := st.Site(ctx, "nope")
	wantKind(t, err, errs.NotFound, "Site of a missing ID")
	sites, err := st.Sites(ctx, "cus_a")
	ok(t, err, "Sites of a customer without sites")
	if len(sites) != 0 {
		t.Errorf("Sites of a customer without sites: %d", len(sites))
	}

	a1 := &clearinghouse.Site{ID: "site_a1", CustomerID: "cus_a", Name: "A one", CertDER: []byte("der-a1"), Certified: t0}
	a2 := &clearinghouse.Site{ID: "site_a2", CustomerID: "cus_a", Name: "A two", CertDER: []byte("der-a2"), Certified: at(time.Second)}
	b1 := &clearinghouse.Site{ID: "site_b1", CustomerID: "cus_b", Name: "B one", CertDER: bytes.Repeat([]byte{0, 1, 0xff}, 700), Certified: at(2 * time.Second)}
	for _, s := range []*clearinghouse.Site{a1, a2, b1} {
		ok(t, st.PutSite(ctx, s), "PutSite "+s.ID)
	}
	got, err := st.Site(ctx, "site_b1")
	ok(t, err, "Site b1")
	same(t, "site b1", got, b1)

	// Renewal: same customer, new name, certificate and time.
	renewed := &clearinghouse.Site{ID: "site_a1", CustomerID: "cus_a", Name: "A one, renamed", CertDER: []byte("der-a1-renewed"), Certified: at(time.Hour)}
	ok(t, st.PutSite(ctx, renewed), "PutSite renewal")
	got, err = st.Site(ctx, "site_a1")
	ok(t, err, "Site after renewal")
	same(t, "renewed site", got, renewed)

	// Another customer cannot take the site over.
	steal := &clearinghouse.Site{ID: "site_a1", CustomerID: "cus_b", Name: "stolen", CertDER: []byte("evil"), Certified: at(2 * time.Hour)}
	wantKind(t, st.PutSite(ctx, steal), errs.Conflict, "PutSite for another customer")
	got, err = st.Site(ctx, "site_a1")
	ok(t, err, "Site after refused takeover")
	same(t, "site after refused takeover", got, renewed)

	sites, err = st.Sites(ctx, "cus_a")
	ok(t, err, "Sites of cus_a")
	sort.Slice(sites, func(i, j int) bool { return sites[i].ID < sites[j].ID })
	same(t, "sites of cus_a", sites, []*clearinghouse.Site{renewed, a2})
	sites, err = st.Sites(ctx, "cus_b")
	ok(t, err, "Sites of cus_b")
	same(t, "sites of cus_b", sites, []*clearinghouse.Site{b1})
	sites, err = st.Sites(ctx, "")
	ok(t, err, "Sites of all customers")
	sort.Slice(sites, func(i, j int) bool { return sites[i].ID < sites[j].ID })
	same(t, "all sites", sites, []*clearinghouse.Site{renewed, a2, b1})
}

func seedOrderParts(t *testing.T, st clearinghouse.Store) {
	t.Helper()
	seedCustomers(t, st, "cus_a", "cus_b")
	ok(t, st.CreateProduct(t.Context(), product("prod_a", t0)), "CreateProduct")
}

func testOrders(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedOrderParts(t, st)
	_, err := st.Order(ctx, "nope")
	wantKind(t, err, errs.NotFound, "Order of a missing ID")
	orders, err := st.Orders(ctx, "")
	ok(t, err, "Orders of an empty store")
	if len(orders) != 0 {
		t.Errorf("Orders of an empty store: %d", len(orders))
	}

	// The temporary-license allowance: 0 (none) is kept apart from NULL
	// (not stated), and each of the two numbers is kept apart from the other.
	timed := &clearinghouse.Order{ID: "ord_1", CustomerID: "cus_a", ProductID: "prod_a", Platform: "linux-amd64", Quantity: 25,
		Features: []string{"basic", "export"}, FirstActive: ptr(at(24 * time.Hour)), Expires: ptr(at(365*24*time.Hour + 999)), Created: t0,
		TemporaryLicenses: ptr(0), TemporaryDays: ptr(3)}
	undated := &clearinghouse.Order{ID: "ord_2", CustomerID: "cus_a", ProductID: "prod_a", Platform: "windows-amd64", Quantity: 1,
		Features: []string{}, Created: at(time.Second), TemporaryLicenses: ptr(1), TemporaryDays: ptr(365)}
	half := &clearinghouse.Order{ID: "ord_3", CustomerID: "cus_b", ProductID: "prod_a", Platform: "linux-arm64", Quantity: 10_000_000,
		Features: nil, Expires: ptr(at(time.Hour)), Created: at(2 * time.Second), Upgrade: &packfmt.Upgrade{FromMin: "1.0", FromMax: "2.9.1"}}
	for _, o := range []*clearinghouse.Order{timed, undated, half} {
		ok(t, st.CreateOrder(ctx, o), "CreateOrder "+o.ID)
	}
	for _, o := range []*clearinghouse.Order{timed, undated, half} {
		got, err := st.Order(ctx, o.ID)
		ok(t, err, "Order "+o.ID)
		same(t, "order "+o.ID, got, o)
		if got.PackID != "" {
			t.Errorf("new order %s has pack %q", o.ID, got.PackID)
		}
	}
	got, _ := st.Order(ctx, "ord_2")
	if got != nil && (got.FirstActive != nil || got.Expires != nil) {
		t.Errorf("order without dates came back with first active %v, expires %v", got.FirstActive, got.Expires)
	}

	wantKind(t, st.CreateOrder(ctx, &clearinghouse.Order{ID: "ord_1", CustomerID: "cus_b", ProductID: "prod_a", Platform: "x", Quantity: 1, Created: t0}),
		errs.Conflict, "CreateOrder with a duplicate ID")

	orders, err = st.Orders(ctx, "cus_a")
	ok(t, err, "Orders of cus_a")
	sort.Slice(orders, func(i, j int) bool { return orders[i].ID < orders[j].ID })
	same(t, "orders of cus_a", orders, []*clearinghouse.Order{timed, undated})
	orders, err = st.Orders(ctx, "cus_b")
	ok(t, err, "Orders of cus_b")
	same(t, "orders of cus_b", orders, []*clearinghouse.Order{half})
	orders, err = st.Orders(ctx, "cus_none")
	ok(t, err, "Orders of an unknown customer")
	if len(orders) != 0 {
		t.Errorf("Orders of an unknown customer: %d", len(orders))
	}
	orders, err = st.Orders(ctx, "")
	ok(t, err, "Orders of all customers")
	sort.Slice(orders, func(i, j int) bool { return orders[i].ID < orders[j].ID })
	same(t, "all orders", orders, []*clearinghouse.Order{timed, undated, half})
}

func testAllocateSerials(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	a, err := st.AllocateSerials(ctx, 10)
	ok(t, err, "AllocateSerials 10")
	if a < 1 {
		t.Errorf("first serial %d, want >= 1", a)
	}
	b, err := st.AllocateSerials(ctx, 1)
	ok(t, err, "AllocateSerials 1")
	if b < a+10 {
		t.Errorf("second range starts at %d inside the first [%d, %d)", b, a, a+10)
	}
	c, err := st.AllocateSerials(ctx, 1000)
	ok(t, err, "AllocateSerials 1000")
	if c < b+1 {
		t.Errorf("third range starts at %d inside the second [%d, %d)", c, b, b+1)
	}
	d, err := st.AllocateSerials(ctx, 1)
	ok(t, err, "AllocateSerials after 1000")
	if d < c+1000 {
		t.Errorf("fourth range starts at %d inside the third [%d, %d)", d, c, c+1000)
	}
	if _, err := st.AllocateSerials(ctx, 0); err == nil {
		t.Error("AllocateSerials 0: no error")
	}
}

func testAllocateSerialsConcurrent(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	const goroutines, each = 8, 10
	type span struct{ begin, n int64 }
	var mu sync.Mutex
	var spans []span
	run(goroutines, func(i int) {
		for j := 0; j < each; j++ {
			n := 1 + (i*each+j)%7
			b, err := st.AllocateSerials(ctx, n)
			if err != nil {
				t.Errorf("AllocateSerials(%d): %v", n, err)
				return
			}
			mu.Lock()
			spans = append(spans, span{b, int64(n)})
			mu.Unlock()
		}
	})
	if len(spans) != goroutines*each {
		t.Fatalf("%d ranges allocated, want %d", len(spans), goroutines*each)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		if p := spans[i-1]; p.begin+p.n > spans[i].begin {
			t.Errorf("ranges overlap: [%d, %d) and [%d, %d)", p.begin, p.begin+p.n, spans[i].begin, spans[i].begin+spans[i].n)
		}
	}
}

func seedPackParts(t *testing.T, st clearinghouse.Store) {
	t.Helper()
	seedOrderParts(t, st)
	ctx := t.Context()
	ok(t, st.PutSite(ctx, &clearinghouse.Site{ID: "site_a", CustomerID: "cus_a", Name: "A", CertDER: []byte("der"), Certified: t0}), "PutSite")
	for _, id := range []string{"ord_1", "ord_2"} {
		ok(t, st.CreateOrder(ctx, &clearinghouse.Order{ID: id, CustomerID: "cus_a", ProductID: "prod_a", Platform: "linux-amd64", Quantity: 5, Created: t0}), "CreateOrder "+id)
	}
}

func testRecordPack(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedPackParts(t, st)
	_, err := st.PackForOrder(ctx, "ord_1")
	wantKind(t, err, errs.NotFound, "PackForOrder of an order without a pack")
	_, err = st.PackForOrder(ctx, "nope")
	wantKind(t, err, errs.NotFound, "PackForOrder of a missing order")

	p := &clearinghouse.IssuedPack{PackID: "pk_1", OrderID: "ord_1", SiteID: "site_a", BeginSerial: 1_000_000_000_007, Quantity: 5,
		Issued: at(time.Minute), File: append([]byte("-----BEGIN LICET PACK-----\n\x00\x01"), bytes.Repeat([]byte{0xfe}, 4096)...)}
	ok(t, st.RecordPack(ctx, p), "RecordPack")
	got, err := st.PackForOrder(ctx, "ord_1")
	ok(t, err, "PackForOrder")
	same(t, "issued pack", got, p)
	o, err := st.Order(ctx, "ord_1")
	ok(t, err, "Order")
	if o.PackID != "pk_1" {
		t.Errorf("order.PackID = %q after RecordPack, want pk_1", o.PackID)
	}

	again := &clearinghouse.IssuedPack{PackID: "pk_2", OrderID: "ord_1", SiteID: "site_a", BeginSerial: 9, Quantity: 5, Issued: at(time.Hour), File: []byte("other")}
	wantKind(t, st.RecordPack(ctx, again), errs.Conflict, "RecordPack for an order with a pack")
	got, err = st.PackForOrder(ctx, "ord_1")
	ok(t, err, "PackForOrder after conflict")
	same(t, "issued pack after conflict", got, p)
	o, err = st.Order(ctx, "ord_1")
	ok(t, err, "Order after conflict")
	if o.PackID != "pk_1" {
		t.Errorf("order.PackID = %q after a refused RecordPack, want pk_1", o.PackID)
	}
	// The same pack ID cannot be recorded for another order either.
	if err := st.RecordPack(ctx, &clearinghouse.IssuedPack{PackID: "pk_1", OrderID: "ord_2", SiteID: "site_a", BeginSerial: 1, Quantity: 5, Issued: t0, File: []byte("x")}); err == nil {
		t.Error("RecordPack with a duplicate pack ID: no error")
	}
	o, err = st.Order(ctx, "ord_2")
	ok(t, err, "Order 2")
	if o.PackID != "" {
		t.Errorf("order 2 linked to %q by a failed RecordPack", o.PackID)
	}
}

func testRecordPackConcurrent(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedPackParts(t, st)
	const n = 8
	results := make([]error, n)
	run(n, func(i int) {
		results[i] = st.RecordPack(ctx, &clearinghouse.IssuedPack{PackID: fmt.Sprintf("pk_%d", i), OrderID: "ord_1", SiteID: "site_a",
			BeginSerial: int64(100 * i), Quantity: 5, Issued: at(time.Duration(i)), File: []byte{byte(i)}})
	})
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("RecordPack: goroutines %d and %d both recorded a pack for one order", winner, i)
		case err == nil:
			winner = i
		default:
			wantKind(t, err, errs.Conflict, fmt.Sprintf("losing RecordPack %d", i))
		}
	}
	if winner < 0 {
		t.Fatal("RecordPack: no goroutine won")
	}
	o, err := st.Order(ctx, "ord_1")
	ok(t, err, "Order")
	p, err := st.PackForOrder(ctx, "ord_1")
	ok(t, err, "PackForOrder")
	if want := fmt.Sprintf("pk_%d", winner); o.PackID != want || p.PackID != want || !bytes.Equal(p.File, []byte{byte(winner)}) {
		t.Errorf("after the race: order.PackID %q, pack %q file %x; want %s", o.PackID, p.PackID, p.File, want)
	}
}

// testVendorMissingReferences checks that objects referring to missing
// ones are refused with NotFound, and change nothing.
func testVendorMissingReferences(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedPackParts(t, st)
	wantKind(t, st.CreateEnrollment(ctx, &clearinghouse.Enrollment{CodeHash: []byte("c"), CustomerID: "cus_none", Created: t0, Expires: t0}),
		errs.NotFound, "CreateEnrollment for a missing customer")
	wantKind(t, st.PutSite(ctx, &clearinghouse.Site{ID: "site_x", CustomerID: "cus_none", Name: "x", CertDER: []byte("d"), Certified: t0}),
		errs.NotFound, "PutSite for a missing customer")
	_, err := st.Site(ctx, "site_x")
	wantKind(t, err, errs.NotFound, "Site refused for a missing customer")
	wantKind(t, st.CreateOrder(ctx, &clearinghouse.Order{ID: "ord_x", CustomerID: "cus_none", ProductID: "prod_a", Platform: "p", Quantity: 1, Created: t0}),
		errs.NotFound, "CreateOrder for a missing customer")
	wantKind(t, st.CreateOrder(ctx, &clearinghouse.Order{ID: "ord_x", CustomerID: "cus_a", ProductID: "prod_none", Platform: "p", Quantity: 1, Created: t0}),
		errs.NotFound, "CreateOrder of a missing product")
	_, err = st.Order(ctx, "ord_x")
	wantKind(t, err, errs.NotFound, "Order refused for missing references")
	wantKind(t, st.RecordPack(ctx, &clearinghouse.IssuedPack{PackID: "pk_x", OrderID: "ord_none", SiteID: "site_a", BeginSerial: 1, Quantity: 1, Issued: t0, File: []byte("f")}),
		errs.NotFound, "RecordPack for a missing order")
	wantKind(t, st.RecordPack(ctx, &clearinghouse.IssuedPack{PackID: "pk_x", OrderID: "ord_1", SiteID: "site_none", BeginSerial: 1, Quantity: 1, Issued: t0, File: []byte("f")}),
		errs.NotFound, "RecordPack for a missing site")
	o, err := st.Order(ctx, "ord_1")
	ok(t, err, "Order")
	if o.PackID != "" {
		t.Errorf("a refused RecordPack linked order ord_1 to %q", o.PackID)
	}
	_, err = st.PackForOrder(ctx, "ord_1")
	wantKind(t, err, errs.NotFound, "PackForOrder after a refused RecordPack")
	wantKind(t, st.EnrollSite(ctx, []byte("no such code"), &clearinghouse.Site{ID: "site_y", CustomerID: "cus_a", Name: "y", CertDER: []byte("d"), Certified: t0}, t0),
		errs.NotFound, "EnrollSite with a missing code")
	_, err = st.Site(ctx, "site_y")
	wantKind(t, err, errs.NotFound, "Site refused for a missing code")
}

// testEnrollSiteAtomic checks that an enrollment whose site cannot be
// recorded leaves the code unused: one transaction.
func testEnrollSiteAtomic(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedCustomers(t, st, "cus_a", "cus_b")
	taken := &clearinghouse.Site{ID: "site_b", CustomerID: "cus_b", Name: "B", CertDER: []byte("b"), Certified: t0}
	ok(t, st.PutSite(ctx, taken), "PutSite")
	code := auth.HashToken("CODE-ATOMIC")
	ok(t, st.CreateEnrollment(ctx, &clearinghouse.Enrollment{CodeHash: code, CustomerID: "cus_a", Created: t0, Expires: at(time.Hour)}), "CreateEnrollment")

	// The site ID is registered for another customer: refused, code unused.
	wantKind(t, st.EnrollSite(ctx, code, &clearinghouse.Site{ID: "site_b", CustomerID: "cus_a", Name: "A", CertDER: []byte("a"), Certified: t0}, at(time.Second)),
		errs.Conflict, "EnrollSite of a site of another customer")
	e, err := st.Enrollment(ctx, code)
	ok(t, err, "Enrollment")
	if e.UsedAt != nil || e.UsedBy != "" {
		t.Errorf("a refused enrollment used the code: used by %q at %v", e.UsedBy, e.UsedAt)
	}
	got, err := st.Site(ctx, "site_b")
	ok(t, err, "Site")
	same(t, "site of the other customer", got, taken)

	// The code still works.
	site := &clearinghouse.Site{ID: "site_a", CustomerID: "cus_a", Name: "A", CertDER: []byte("a"), Certified: at(time.Minute)}
	ok(t, st.EnrollSite(ctx, code, site, at(time.Minute)), "EnrollSite after the refusal")
	got, err = st.Site(ctx, "site_a")
	ok(t, err, "Site")
	same(t, "enrolled site", got, site)
}

// testVendorZeroValues checks zero times (kept as the zero time) and nil
// byte strings (kept as empty ones).
func testVendorZeroValues(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	c := &clearinghouse.Customer{ID: "cus_z"}
	ok(t, st.CreateCustomer(ctx, c), "CreateCustomer with a zero time")
	gc, err := st.Customer(ctx, "cus_z")
	ok(t, err, "Customer")
	if !gc.Created.IsZero() {
		t.Errorf("zero creation time came back as %v", gc.Created)
	}
	p := &clearinghouse.Product{ID: "prod_z"}
	ok(t, st.CreateProduct(ctx, p), "CreateProduct with zero values")
	gp, err := st.Product(ctx, "prod_z")
	ok(t, err, "Product")
	same(t, "zero product", gp, p)

	o := &clearinghouse.Order{ID: "ord_z", CustomerID: "cus_z", ProductID: "prod_z", Quantity: 1, FirstActive: &time.Time{}, Expires: ptr(at(0))}
	ok(t, st.CreateOrder(ctx, o), "CreateOrder with zero values")
	got, err := st.Order(ctx, "ord_z")
	ok(t, err, "Order")
	same(t, "order with zero times", got, o)

	s := &clearinghouse.Site{ID: "site_z", CustomerID: "cus_z", CertDER: nil}
	ok(t, st.PutSite(ctx, s), "PutSite without a certificate")
	gs, err := st.Site(ctx, "site_z")
	ok(t, err, "Site")
	same(t, "site without a certificate", gs, s)

	pk := &clearinghouse.IssuedPack{PackID: "pk_z", OrderID: "ord_z", SiteID: "site_z"}
	ok(t, st.RecordPack(ctx, pk), "RecordPack with zero values")
	gk, err := st.PackForOrder(ctx, "ord_z")
	ok(t, err, "PackForOrder")
	same(t, "pack with zero values", gk, pk)
}

// ---- site ----

// pack returns an installable pack of product and platform with n seats.
func pack(id, productID, platform string, begin int64, n int, installed time.Time) *licenseserver.InstalledPack {
	return &licenseserver.InstalledPack{
		PackID: id, OrderID: "ord_" + id, ProductID: productID, ProductName: "Product " + productID, ProductVersion: "3.0",
		Platform: platform, Features: []string{"basic", "pro"}, Quantity: n, BeginSerial: begin,
		Descriptions: map[string]string{"en": "English", "fr": "Français"}, Manufacturer: "Acme",
		ProductData: map[string]string{"tier": "gold"}, Installed: installed, File: []byte("FILE " + id),
	}
}

func install(t *testing.T, st licenseserver.Store, ps ...*licenseserver.InstalledPack) {
	t.Helper()
	for _, p := range ps {
		ok(t, st.InstallPack(t.Context(), p), "InstallPack "+p.PackID)
	}
}

// packWithout returns p without its file, as Packs lists it.
func packWithout(p *licenseserver.InstalledPack, assigned int) *licenseserver.InstalledPack {
	c := *p
	c.File, c.Assigned = nil, assigned
	return &c
}

func testPacks(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	ps, err := st.Packs(ctx)
	ok(t, err, "Packs of an empty store")
	if len(ps) != 0 {
		t.Errorf("Packs of an empty store: %d", len(ps))
	}
	_, err = st.Pack(ctx, "nope")
	wantKind(t, err, errs.NotFound, "Pack of a missing ID")

	// Installed out of ID order, to check that Packs lists oldest first.
	dated := pack("pk_b", "prod_a", "linux-amd64", 1_000_000_000_001, 50, t0)
	dated.FirstActive, dated.Expires = ptr(at(-time.Hour)), ptr(at(90*24*time.Hour+1))
	dated.File = append([]byte{0, 0xff, 0x80}, bytes.Repeat([]byte("pack "), 2000)...)
	undated := pack("pk_a", "prod_b", "windows-amd64", 10, 1, at(time.Nanosecond))
	undated.Features, undated.Descriptions, undated.ProductData = []string{}, nil, map[string]string{}
	undated.Upgrade = &packfmt.Upgrade{FromMin: "2.0", FromMax: "2.10"}
	install(t, st, dated, undated)

	got, err := st.Pack(ctx, "pk_b")
	ok(t, err, "Pack pk_b")
	same(t, "pack pk_b", got, dated)
	got, err = st.Pack(ctx, "pk_a")
	ok(t, err, "Pack pk_a")
	same(t, "pack pk_a", got, undated)
	if got.FirstActive != nil || got.Expires != nil {
		t.Errorf("pack without dates came back with first active %v, expires %v", got.FirstActive, got.Expires)
	}
	if got.Free() != 1 {
		t.Errorf("fresh pack has %d free seats, want 1", got.Free())
	}

	dup := pack("pk_b", "prod_x", "x", 1, 1, at(time.Hour))
	dup.File = []byte("replacement")
	wantKind(t, st.InstallPack(ctx, dup), errs.Conflict, "InstallPack of an installed pack")
	got, err = st.Pack(ctx, "pk_b")
	ok(t, err, "Pack after conflict")
	same(t, "pack after conflict", got, dated)

	ps, err = st.Packs(ctx)
	ok(t, err, "Packs")
	if len(ps) != 2 {
		t.Fatalf("Packs: %d, want 2", len(ps))
	}
	for _, p := range ps {
		p.File = nil // Packs need not carry the files
	}
	same(t, "packs, oldest first", ps, []*licenseserver.InstalledPack{packWithout(dated, 0), packWithout(undated, 0)})
}

func testInstallPackConcurrent(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	const n = 8
	results := make([]error, n)
	run(n, func(i int) {
		p := pack("pk_race", "prod_a", "linux-amd64", 100, 10, at(time.Duration(i)))
		p.File = []byte(fmt.Sprintf("file of goroutine %d", i))
		results[i] = st.InstallPack(ctx, p)
	})
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("InstallPack: goroutines %d and %d both installed one pack", winner, i)
		case err == nil:
			winner = i
		default:
			wantKind(t, err, errs.Conflict, fmt.Sprintf("losing InstallPack %d", i))
		}
	}
	if winner < 0 {
		t.Fatal("InstallPack: no goroutine won")
	}
	p, err := st.Pack(ctx, "pk_race")
	ok(t, err, "Pack")
	if want := fmt.Sprintf("file of goroutine %d", winner); string(p.File) != want {
		t.Errorf("Pack file %q, want %q", p.File, want)
	}
	if !p.Installed.Equal(at(time.Duration(winner))) {
		t.Errorf("Pack installed %v, want the winner's %v", p.Installed, at(time.Duration(winner)))
	}
	ps, err := st.Packs(ctx)
	ok(t, err, "Packs")
	if len(ps) != 1 {
		t.Errorf("Packs: %d, want 1", len(ps))
	}
}

func testImages(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	imgs, err := st.Images(ctx)
	ok(t, err, "Images of an empty store")
	if len(imgs) != 0 {
		t.Errorf("Images of an empty store: %d", len(imgs))
	}
	_, err = st.Image(ctx, 7)
	wantKind(t, err, errs.NotFound, "Image of a missing software ID")

	sum := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	a := &licenseserver.Image{SoftwareID: 7, Name: "agent-7.bin", SHA256: sum(1), Size: 1 << 33, Added: t0}
	top := &licenseserver.Image{SoftwareID: 0xFFFFFFFF, Name: "max", SHA256: sum(2), Size: 0, Added: at(time.Second)}
	zero := &licenseserver.Image{SoftwareID: 0, Name: "zero", SHA256: sum(3), Size: 1, Added: at(2 * time.Second)}
	for _, img := range []*licenseserver.Image{a, top, zero} {
		ok(t, st.PutImage(ctx, img), fmt.Sprintf("PutImage %d", img.SoftwareID))
	}
	for _, img := range []*licenseserver.Image{a, top, zero} {
		got, err := st.Image(ctx, img.SoftwareID)
		ok(t, err, fmt.Sprintf("Image %d", img.SoftwareID))
		same(t, fmt.Sprintf("image %d", img.SoftwareID), got, img)
	}

	replaced := &licenseserver.Image{SoftwareID: 7, Name: "agent-7 v2.bin", SHA256: sum(9), Size: 12345, Added: at(time.Hour)}
	ok(t, st.PutImage(ctx, replaced), "PutImage replacing")
	got, err := st.Image(ctx, 7)
	ok(t, err, "Image after replace")
	same(t, "replaced image", got, replaced)

	imgs, err = st.Images(ctx)
	ok(t, err, "Images")
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].SoftwareID < imgs[j].SoftwareID })
	same(t, "images", imgs, []*licenseserver.Image{zero, replaced, top})
}

// seats issues AssignSeat requests with fresh challenge IDs and a sign
// function that counts its calls.
type seats struct {
	st    licenseserver.Store
	n     atomic.Int64 // challenges issued
	signs atomic.Int64 // sign calls
}

func (s *seats) req(client, productID, platform string, now time.Time) licenseserver.SeatRequest {
	return licenseserver.SeatRequest{
		ClientID: client, SystemID: "sys-" + client, ClientKey: []byte("key of " + client), ClientHPKE: []byte("hpke of " + client),
		ProductID: productID, Platform: platform, Now: now,
		ChallengeID: fmt.Sprintf("ch_%d", s.n.Add(1)), ChallengeExpires: now.Add(time.Minute),
	}
}

func (s *seats) sign(a *licenseserver.Assignment, p *licenseserver.InstalledPack) ([]byte, error) {
	s.signs.Add(1)
	if !a.Temporary && a.PackID != p.PackID && a.UpgradePackID != p.PackID {
		return nil, fmt.Errorf("sign: assignment of pack %s (upgrade pack %q) given pack %s", a.PackID, a.UpgradePackID, p.PackID)
	}
	return []byte(fmt.Sprintf("cert %d for %s", a.LicenseID, a.ClientID)), nil
}

func (s *seats) assign(ctx context.Context, client, productID, platform string, now time.Time) (*licenseserver.Assignment, bool, error) {
	return s.st.AssignSeat(ctx, s.req(client, productID, platform, now), s.sign)
}

// mustAssign assigns a seat and fails the test if that fails or the
// existing flag is not the one wanted.
func (s *seats) mustAssign(t *testing.T, client, productID, platform string, now time.Time, wantExisting bool) *licenseserver.Assignment {
	t.Helper()
	a, existing, err := s.assign(t.Context(), client, productID, platform, now)
	ok(t, err, "AssignSeat for "+client)
	if existing != wantExisting {
		t.Errorf("AssignSeat for %s: existing = %v, want %v", client, existing, wantExisting)
	}
	return a
}

func assigned(t *testing.T, st licenseserver.Store, packID string) int {
	t.Helper()
	p, err := st.Pack(t.Context(), packID)
	ok(t, err, "Pack "+packID)
	return p.Assigned
}

func testChallengeSingleUse(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 1, 10, t0))
	s := &seats{st: st}
	req := s.req("cli_1", "prod_a", "linux-amd64", t0)
	_, _, err := st.AssignSeat(ctx, req, s.sign)
	ok(t, err, "AssignSeat")

	// The same challenge again, for the same client or another: a replay.
	_, _, err = st.AssignSeat(ctx, req, s.sign)
	wantKind(t, err, errs.Invalid, "AssignSeat replaying a challenge")
	other := s.req("cli_2", "prod_a", "linux-amd64", at(time.Second))
	other.ChallengeID = req.ChallengeID
	_, _, err = st.AssignSeat(ctx, other, s.sign)
	wantKind(t, err, errs.Invalid, "AssignSeat replaying a challenge for another client")
	if got := assigned(t, st, "pk_1"); got != 1 {
		t.Errorf("pack assigned %d after replays, want 1", got)
	}
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_2"})
	ok(t, err, "Assignments")
	if len(as) != 0 {
		t.Errorf("a replayed challenge assigned a seat: %+v", as[0])
	}

	// An answered challenge is refused even when the request fails otherwise.
	_, _, err = st.AssignSeat(ctx, licenseserver.SeatRequest{ClientID: "cli_3", SystemID: "s", ClientKey: []byte("k"), ProductID: "prod_none",
		Platform: "linux-amd64", Now: t0, ChallengeID: req.ChallengeID, ChallengeExpires: at(time.Minute)}, s.sign)
	wantKind(t, err, errs.Invalid, "AssignSeat replaying a challenge for a product without packs")
}

// testConsumeChallenge: a challenge consumed by a wrong answer is refused
// afterwards, by ConsumeChallenge and by AssignSeat alike, and one consumed
// by AssignSeat cannot be consumed again; concurrent consumers: one wins.
func testConsumeChallenge(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 1, 10, t0))
	s := &seats{st: st}
	req := s.req("cli_1", "prod_a", "linux-amd64", t0)
	ok(t, st.ConsumeChallenge(ctx, req.ChallengeID, req.ChallengeExpires), "ConsumeChallenge")
	wantKind(t, st.ConsumeChallenge(ctx, req.ChallengeID, req.ChallengeExpires), errs.Invalid, "ConsumeChallenge twice")
	_, _, err := st.AssignSeat(ctx, req, s.sign)
	wantKind(t, err, errs.Invalid, "AssignSeat with a challenge consumed by a wrong answer")
	if got := assigned(t, st, "pk_1"); got != 0 {
		t.Errorf("pack assigned %d after a consumed challenge, want 0", got)
	}
	granted := s.req("cli_2", "prod_a", "linux-amd64", t0)
	_, _, err = st.AssignSeat(ctx, granted, s.sign)
	ok(t, err, "AssignSeat")
	wantKind(t, st.ConsumeChallenge(ctx, granted.ChallengeID, granted.ChallengeExpires), errs.Invalid, "ConsumeChallenge of a granted challenge")
	var wins atomic.Int64
	run(16, func(int) {
		err := st.ConsumeChallenge(ctx, "ch-concurrent", at(time.Minute))
		switch {
		case err == nil:
			wins.Add(1)
		case !errs.Is(err, errs.Invalid):
			t.Errorf("concurrent ConsumeChallenge: %v, want nil or Invalid", err)
		}
	})
	if wins.Load() != 1 {
		t.Errorf("%d concurrent ConsumeChallenge calls succeeded, want 1", wins.Load())
	}
}

func testChallengeConcurrent(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 1, 10, t0))
	s := &seats{st: st}
	const n = 8
	results := make([]error, n)
	run(n, func(i int) {
		req := s.req(fmt.Sprintf("cli_%d", i), "prod_a", "linux-amd64", t0)
		req.ChallengeID = "ch_shared"
		_, _, results[i] = st.AssignSeat(ctx, req, s.sign)
	})
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("AssignSeat: goroutines %d and %d both answered one challenge", winner, i)
		case err == nil:
			winner = i
		default:
			wantKind(t, err, errs.Invalid, fmt.Sprintf("losing AssignSeat %d", i))
		}
	}
	if winner < 0 {
		t.Fatal("AssignSeat: no goroutine answered the challenge")
	}
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{})
	ok(t, err, "Assignments")
	if len(as) != 1 || as[0].ClientID != fmt.Sprintf("cli_%d", winner) {
		t.Errorf("assignments after the race: %d, want only cli_%d's", len(as), winner)
	}
	if got := assigned(t, st, "pk_1"); got != 1 {
		t.Errorf("pack assigned %d, want 1", got)
	}
}

func testAssignSeat(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	p := pack("pk_1", "prod_a", "linux-amd64", 1000, 3, t0)
	p.Expires = ptr(at(30 * 24 * time.Hour))
	install(t, st, p)
	s := &seats{st: st}

	// Now in another zone: the assignment's times come back in UTC.
	now := at(time.Minute).In(time.FixedZone("CET", 3600))
	req := s.req("cli_0", "prod_a", "linux-amd64", now)
	a, existing, err := st.AssignSeat(ctx, req, s.sign)
	ok(t, err, "AssignSeat cli_0")
	if existing {
		t.Error("first AssignSeat: existing = true")
	}
	want := &licenseserver.Assignment{LicenseID: 1000, PackID: "pk_1", ClientID: "cli_0", SystemID: "sys-cli_0", ProductID: "prod_a",
		Platform: "linux-amd64", ClientKey: []byte("key of cli_0"), ClientHPKE: []byte("hpke of cli_0"), Issued: at(time.Minute), Expires: p.Expires, Cert: []byte("cert 1000 for cli_0")}
	same(t, "assignment", a, want)
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_0"})
	ok(t, err, "Assignments cli_0")
	same(t, "stored assignment", as, []*licenseserver.Assignment{want})

	// License IDs count up from the pack's begin serial.
	for i, client := range []string{"cli_1", "cli_2"} {
		a := s.mustAssign(t, client, "prod_a", "linux-amd64", at(time.Minute), false)
		if a.LicenseID != int64(1001+i) {
			t.Errorf("license ID of %s = %d, want %d", client, a.LicenseID, 1001+i)
		}
	}
	if got := assigned(t, st, "pk_1"); got != 3 {
		t.Errorf("pack assigned %d, want 3", got)
	}

	// The same client again: its assignment, not a new seat, and no new signature.
	signs := s.signs.Load()
	again := s.mustAssign(t, "cli_1", "prod_a", "linux-amd64", at(time.Hour), true)
	if again.LicenseID != 1001 || string(again.Cert) != "cert 1001 for cli_1" || !again.Issued.Equal(at(time.Minute)) {
		t.Errorf("existing assignment: license %d, cert %q, issued %v; want 1001, the first cert, the first time", again.LicenseID, again.Cert, again.Issued)
	}
	if s.signs.Load() != signs {
		t.Error("sign was called for an assignment that has its license")
	}

	// Full.
	_, _, err = s.assign(ctx, "cli_3", "prod_a", "linux-amd64", at(time.Hour))
	wantKind(t, err, errs.Exhausted, "AssignSeat of a full pack")
	if got := assigned(t, st, "pk_1"); got != 3 {
		t.Errorf("pack assigned %d after the refusal, want 3", got)
	}
	// A known client still gets its seat when the pack is full.
	s.mustAssign(t, "cli_2", "prod_a", "linux-amd64", at(time.Hour), true)
	// No pack of the product at all.
	_, _, err = s.assign(ctx, "cli_0", "prod_none", "linux-amd64", at(time.Hour))
	wantKind(t, err, errs.Exhausted, "AssignSeat of a product without packs")
}

func testAssignSeatPackSelection(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	notYet := pack("pk_later", "prod_a", "linux-amd64", 100, 5, t0)
	notYet.FirstActive = ptr(at(24 * time.Hour))
	expired := pack("pk_expired", "prod_a", "linux-amd64", 200, 5, at(time.Second))
	expired.Expires = ptr(at(-time.Nanosecond))
	otherPlatform := pack("pk_windows", "prod_a", "windows-amd64", 300, 5, at(2*time.Second))
	otherProduct := pack("pk_other", "prod_b", "linux-amd64", 400, 5, at(3*time.Second))
	install(t, st, notYet, expired, otherPlatform, otherProduct)
	s := &seats{st: st}

	_, _, err := s.assign(ctx, "cli_1", "prod_a", "linux-amd64", t0)
	wantKind(t, err, errs.Exhausted, "AssignSeat with only unusable packs")
	for _, id := range []string{"pk_later", "pk_expired", "pk_windows", "pk_other"} {
		if got := assigned(t, st, id); got != 0 {
			t.Errorf("pack %s assigned %d after a refusal, want 0", id, got)
		}
	}

	if a := s.mustAssign(t, "cli_1", "prod_a", "windows-amd64", t0, false); a.PackID != "pk_windows" || a.LicenseID != 300 {
		t.Errorf("windows seat from %s #%d, want pk_windows #300", a.PackID, a.LicenseID)
	}
	if a := s.mustAssign(t, "cli_1", "prod_b", "linux-amd64", t0, false); a.PackID != "pk_other" || a.LicenseID != 400 {
		t.Errorf("prod_b seat from %s #%d, want pk_other #400", a.PackID, a.LicenseID)
	}

	// A usable pack, installed last.
	good := pack("pk_good", "prod_a", "linux-amd64", 500, 5, at(4*time.Second))
	good.FirstActive, good.Expires = ptr(at(-time.Hour)), ptr(at(time.Hour))
	install(t, st, good)
	a := s.mustAssign(t, "cli_2", "prod_a", "linux-amd64", t0, false)
	if a.PackID != "pk_good" || a.LicenseID != 500 || a.Expires == nil || !a.Expires.Equal(at(time.Hour)) {
		t.Errorf("seat from %s #%d expiring %v, want pk_good #500 expiring %v", a.PackID, a.LicenseID, a.Expires, at(time.Hour))
	}

	// Once the later pack is active (and the good one expired), it is used.
	a = s.mustAssign(t, "cli_3", "prod_a", "linux-amd64", at(25*time.Hour), false)
	if a.PackID != "pk_later" || a.LicenseID != 100 || a.Expires != nil {
		t.Errorf("seat from %s #%d expiring %v, want pk_later #100 without expiry", a.PackID, a.LicenseID, a.Expires)
	}
	for id, want := range map[string]int{"pk_later": 1, "pk_expired": 0, "pk_windows": 1, "pk_other": 1, "pk_good": 1} {
		if got := assigned(t, st, id); got != want {
			t.Errorf("pack %s assigned %d, want %d", id, got, want)
		}
	}
}

func testAssignSeatNextPack(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 10, 2, t0), pack("pk_2", "prod_a", "linux-amd64", 20, 2, at(time.Second)))
	s := &seats{st: st}
	want := []struct {
		pack    string
		license int64
	}{{"pk_1", 10}, {"pk_1", 11}, {"pk_2", 20}, {"pk_2", 21}}
	for i, w := range want {
		a := s.mustAssign(t, fmt.Sprintf("cli_%d", i), "prod_a", "linux-amd64", t0, false)
		if a.PackID != w.pack || a.LicenseID != w.license {
			t.Errorf("seat %d from %s #%d, want %s #%d", i, a.PackID, a.LicenseID, w.pack, w.license)
		}
	}
	_, _, err := s.assign(ctx, "cli_9", "prod_a", "linux-amd64", t0)
	wantKind(t, err, errs.Exhausted, "AssignSeat with both packs full")
	for _, id := range []string{"pk_1", "pk_2"} {
		p, err := st.Pack(ctx, id)
		ok(t, err, "Pack "+id)
		if p.Assigned != 2 || p.Free() != 0 {
			t.Errorf("pack %s: assigned %d, free %d; want 2, 0", id, p.Assigned, p.Free())
		}
	}
}

// testAssignSeatTemporary: with no free seat, a system gets one temporary
// license per product, the same one again for the same client, none for
// another client of the same system, none for a product without packs; a
// new seat then goes to the client as a permanent license. Temporary
// licenses are charged to an active pack whose statement allows them: a
// license ID from its temporary range, at most its temporary days, no more
// than its count (testTemporaryAllowance).
func testAssignSeatTemporary(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	p1 := pack("pk_1", "prod_a", "linux-amd64", 10, 1, t0)
	p1.TemporaryCount, p1.TemporaryMaxDays, p1.TemporaryBegin = 1, 60, 11
	install(t, st, p1)
	s := &seats{st: st}
	s.mustAssign(t, "cli_0", "prod_a", "linux-amd64", t0, false)
	temp := func(client, system, product string) (*licenseserver.Assignment, bool, error) {
		r := s.req(client, product, "linux-amd64", t0)
		r.SystemID, r.TemporaryFor = system, 60*24*time.Hour
		return st.AssignSeat(ctx, r, s.sign)
	}
	a, existing, err := temp("cli_1", "sys_x", "prod_a")
	ok(t, err, "temporary license")
	if existing || !a.Temporary || a.PackID != "pk_1" || a.LicenseID != 11 || a.Expires == nil || !a.Expires.Equal(t0.Add(60*24*time.Hour)) || len(a.Cert) == 0 {
		t.Fatalf("temporary license: %+v existing=%v", a, existing)
	}
	again, existing, err := temp("cli_1", "sys_x", "prod_a")
	ok(t, err, "second temporary request")
	if !existing || again.LicenseID != a.LicenseID {
		t.Errorf("second temporary request: license %d existing=%v, want %d existing", again.LicenseID, existing, a.LicenseID)
	}
	_, _, err = temp("cli_2", "sys_x", "prod_a")
	wantKind(t, err, errs.Exhausted, "temporary license for a second key on one system")
	_, _, err = temp("cli_3", "sys_y", "prod_none")
	wantKind(t, err, errs.Exhausted, "temporary license of a product without packs")
	temps, err := st.Temporaries(ctx)
	ok(t, err, "Temporaries")
	if len(temps) != 1 || temps[0].LicenseID != a.LicenseID || temps[0].ClientID != "cli_1" {
		t.Errorf("Temporaries = %+v", temps)
	}
	install(t, st, pack("pk_2", "prod_a", "linux-amd64", 20, 1, at(time.Second)))
	perm, existing, err := temp("cli_1", "sys_x", "prod_a")
	ok(t, err, "request after a new pack")
	if existing || perm.Temporary || perm.PackID != "pk_2" || perm.LicenseID != 20 {
		t.Errorf("after a new pack: %+v existing=%v", perm, existing)
	}
}

func testAssignSeatExpiredAssignment(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	short := pack("pk_short", "prod_a", "linux-amd64", 10, 5, t0)
	short.Expires = ptr(at(time.Hour))
	long := pack("pk_long", "prod_a", "linux-amd64", 20, 5, at(time.Second))
	install(t, st, short, long)
	s := &seats{st: st}

	first := s.mustAssign(t, "cli_1", "prod_a", "linux-amd64", t0, false)
	if first.PackID != "pk_short" || first.LicenseID != 10 {
		t.Fatalf("first seat from %s #%d, want pk_short #10", first.PackID, first.LicenseID)
	}
	// After the short pack expired, the client's license is dead: it gets a new seat.
	second := s.mustAssign(t, "cli_1", "prod_a", "linux-amd64", at(2*time.Hour), false)
	if second.PackID != "pk_long" || second.LicenseID != 20 || second.Expires != nil {
		t.Errorf("second seat from %s #%d expiring %v, want pk_long #20 without expiry", second.PackID, second.LicenseID, second.Expires)
	}
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_1"})
	ok(t, err, "Assignments")
	if len(as) != 1 || as[0].LicenseID != 20 {
		t.Errorf("live assignments of cli_1: %d (first #%d), want only #20", len(as), firstLicense(as))
	}
	// And keeps it.
	if a := s.mustAssign(t, "cli_1", "prod_a", "linux-amd64", at(3*time.Hour), true); a.LicenseID != 20 {
		t.Errorf("third request got #%d, want #20", a.LicenseID)
	}
}

func firstLicense(as []*licenseserver.Assignment) int64 {
	if len(as) == 0 {
		return 0
	}
	return as[0].LicenseID
}

// testAssignSeatCert checks that an assignment recorded without a license
// gets one on the next request, stored with it.
func testAssignSeatCert(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 10, 5, t0))
	s := &seats{st: st}
	unsigned := func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error) { return nil, nil }
	a, existing, err := st.AssignSeat(ctx, s.req("cli_1", "prod_a", "linux-amd64", t0), unsigned)
	ok(t, err, "AssignSeat without a license")
	if existing || len(a.Cert) != 0 {
		t.Errorf("AssignSeat without a license: existing %v, cert %q", existing, a.Cert)
	}
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_1"})
	ok(t, err, "Assignments")
	if len(as) != 1 || len(as[0].Cert) != 0 {
		t.Fatalf("stored assignments without a license: %+v", as)
	}

	var gotA *licenseserver.Assignment
	var gotP *licenseserver.InstalledPack
	signer := func(a *licenseserver.Assignment, p *licenseserver.InstalledPack) ([]byte, error) {
		gotA, gotP = a, p
		return []byte("late cert"), nil
	}
	b, existing, err := st.AssignSeat(ctx, s.req("cli_1", "prod_a", "linux-amd64", at(time.Minute)), signer)
	ok(t, err, "AssignSeat signing the existing assignment")
	if !existing || b.LicenseID != a.LicenseID || string(b.Cert) != "late cert" {
		t.Errorf("existing assignment: existing %v, license %d, cert %q; want true, %d, late cert", existing, b.LicenseID, b.Cert, a.LicenseID)
	}
	if gotA == nil || gotA.LicenseID != a.LicenseID || gotP == nil || gotP.PackID != "pk_1" {
		t.Errorf("sign was given assignment %+v and pack %+v", gotA, gotP)
	}
	as, err = st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_1"})
	ok(t, err, "Assignments after signing")
	if len(as) != 1 || string(as[0].Cert) != "late cert" {
		t.Errorf("stored license after signing: %+v", as)
	}
	if got := assigned(t, st, "pk_1"); got != 1 {
		t.Errorf("pack assigned %d, want 1", got)
	}

	// A stored license that is not stale comes back as it is; a stale one
	// (it ended with a renewed site certificate) is signed again, same ID.
	fresh := s.req("cli_1", "prod_a", "linux-amd64", at(2*time.Minute))
	fresh.Stale = func(cert []byte) bool { return false }
	c, existing, err := st.AssignSeat(ctx, fresh, func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error) {
		return []byte("unwanted"), nil
	})
	ok(t, err, "AssignSeat with a license that is not stale")
	if !existing || string(c.Cert) != "late cert" {
		t.Errorf("license not stale: existing %v, cert %q; want the stored one", existing, c.Cert)
	}
	stale := s.req("cli_1", "prod_a", "linux-amd64", at(3*time.Minute))
	stale.Stale = func(cert []byte) bool { return string(cert) == "late cert" }
	d, existing, err := st.AssignSeat(ctx, stale, func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error) {
		return []byte("renewed cert"), nil
	})
	ok(t, err, "AssignSeat with a stale license")
	if !existing || d.LicenseID != a.LicenseID || string(d.Cert) != "renewed cert" {
		t.Errorf("stale license: existing %v, license %d, cert %q; want true, %d, renewed cert", existing, d.LicenseID, d.Cert, a.LicenseID)
	}
	as, err = st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_1"})
	ok(t, err, "Assignments after signing again")
	if len(as) != 1 || string(as[0].Cert) != "renewed cert" {
		t.Errorf("stored license after signing again: %+v", as)
	}
	if got := assigned(t, st, "pk_1"); got != 1 {
		t.Errorf("pack assigned %d after signing again, want 1", got)
	}
}

func testAssignSeatSignError(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 10, 5, t0))
	s := &seats{st: st}
	boom := errs.E(errs.Internal, "signing key unavailable")
	req := s.req("cli_1", "prod_a", "linux-amd64", t0)
	_, _, err := st.AssignSeat(ctx, req, func(*licenseserver.Assignment, *licenseserver.InstalledPack) ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("AssignSeat with a failing sign: %v, want %v", err, boom)
	}
	if got := assigned(t, st, "pk_1"); got != 0 {
		t.Errorf("pack assigned %d after a failed grant, want 0", got)
	}
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{})
	ok(t, err, "Assignments")
	if len(as) != 0 {
		t.Errorf("a failed grant recorded %d assignments", len(as))
	}
	// Nothing was recorded, the challenge included: one transaction.
	a, existing, err := st.AssignSeat(ctx, req, s.sign)
	ok(t, err, "AssignSeat retrying the challenge of a failed grant")
	if existing || a.LicenseID != 10 {
		t.Errorf("retry: existing %v, license %d; want false, 10", existing, a.LicenseID)
	}
}

func testAssignSeatConcurrent(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	const clients, seatsN = 200, 50
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 5000, seatsN, t0))
	s := &seats{st: st}
	got := make([]*licenseserver.Assignment, clients)
	errList := make([]error, clients)
	run(clients, func(i int) {
		got[i], _, errList[i] = s.assign(ctx, fmt.Sprintf("cli_%03d", i), "prod_a", "linux-amd64", t0)
	})
	checkGrants(t, got, errList, seatsN, 5000)
	if n := assigned(t, st, "pk_1"); n != seatsN {
		t.Errorf("pack assigned %d, want %d", n, seatsN)
	}
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{PackID: "pk_1"})
	ok(t, err, "Assignments")
	if len(as) != seatsN {
		t.Errorf("%d assignments stored, want %d", len(as), seatsN)
	}
}

// checkGrants checks the outcome of concurrent AssignSeat calls for
// distinct clients against one pack of n seats beginning at serial begin:
// exactly n grants to distinct clients with the license IDs begin to
// begin+n-1, the others Exhausted.
func checkGrants(t *testing.T, got []*licenseserver.Assignment, errList []error, n int, begin int64) {
	t.Helper()
	clients := map[string]bool{}
	licenses := map[int64]string{}
	for i, err := range errList {
		if err != nil {
			if !errs.Is(err, errs.Exhausted) {
				t.Errorf("AssignSeat %d: %v, want success or Exhausted", i, err)
			}
			continue
		}
		a := got[i]
		if clients[a.ClientID] {
			t.Errorf("client %s got two seats", a.ClientID)
		}
		clients[a.ClientID] = true
		if prev, dup := licenses[a.LicenseID]; dup {
			t.Errorf("license %d granted to %s and %s", a.LicenseID, prev, a.ClientID)
		}
		licenses[a.LicenseID] = a.ClientID
		if a.LicenseID < begin || a.LicenseID >= begin+int64(n) {
			t.Errorf("license %d outside the pack's [%d, %d)", a.LicenseID, begin, begin+int64(n))
		}
	}
	if len(clients) != n {
		t.Errorf("%d seats granted, want exactly %d", len(clients), n)
	}
}

func testAssignSeatSameClientConcurrent(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 10, 5, t0))
	s := &seats{st: st}
	const n = 8
	got := make([]*licenseserver.Assignment, n)
	existing := make([]bool, n)
	errList := make([]error, n)
	run(n, func(i int) {
		got[i], existing[i], errList[i] = s.assign(ctx, "cli_same", "prod_a", "linux-amd64", t0)
	})
	fresh := 0
	for i, err := range errList {
		if err != nil {
			t.Errorf("AssignSeat %d: %v", i, err)
			continue
		}
		if !existing[i] {
			fresh++
		}
		if got[i].LicenseID != 10 {
			t.Errorf("AssignSeat %d: license %d, want 10", i, got[i].LicenseID)
		}
	}
	if fresh != 1 {
		t.Errorf("%d calls allocated a new seat, want 1", fresh)
	}
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_same"})
	ok(t, err, "Assignments")
	if len(as) != 1 {
		t.Errorf("%d assignments for one client, want 1", len(as))
	}
	if got := assigned(t, st, "pk_1"); got != 1 {
		t.Errorf("pack assigned %d, want 1", got)
	}
}

func testAssignments(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 10, 5, t0), pack("pk_2", "prod_b", "linux-amd64", 20, 5, t0.Add(time.Second)))
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{})
	ok(t, err, "Assignments of an empty store")
	if len(as) != 0 {
		t.Errorf("Assignments of an empty store: %d", len(as))
	}
	s := &seats{st: st}
	x1 := s.mustAssign(t, "cli_x", "prod_a", "linux-amd64", t0, false)
	y1 := s.mustAssign(t, "cli_y", "prod_a", "linux-amd64", at(time.Second), false)
	x2 := s.mustAssign(t, "cli_x", "prod_b", "linux-amd64", at(2*time.Second), false)

	byID := func(as []*licenseserver.Assignment) []*licenseserver.Assignment {
		sort.Slice(as, func(i, j int) bool { return as[i].LicenseID < as[j].LicenseID })
		return as
	}
	for _, c := range []struct {
		f    licenseserver.AssignmentFilter
		want []*licenseserver.Assignment
	}{
		{licenseserver.AssignmentFilter{}, []*licenseserver.Assignment{x1, y1, x2}},
		{licenseserver.AssignmentFilter{ClientID: "cli_x"}, []*licenseserver.Assignment{x1, x2}},
		{licenseserver.AssignmentFilter{ClientID: "cli_y"}, []*licenseserver.Assignment{y1}},
		{licenseserver.AssignmentFilter{PackID: "pk_1"}, []*licenseserver.Assignment{x1, y1}},
		{licenseserver.AssignmentFilter{PackID: "pk_2"}, []*licenseserver.Assignment{x2}},
		{licenseserver.AssignmentFilter{ClientID: "cli_x", PackID: "pk_2"}, []*licenseserver.Assignment{x2}},
		{licenseserver.AssignmentFilter{ClientID: "cli_y", PackID: "pk_2"}, nil},
		{licenseserver.AssignmentFilter{ClientID: "cli_none"}, nil},
		{licenseserver.AssignmentFilter{PackID: "pk_none"}, nil},
	} {
		as, err := st.Assignments(ctx, c.f)
		ok(t, err, fmt.Sprintf("Assignments %+v", c.f))
		same(t, fmt.Sprintf("assignments %+v", c.f), byID(as), c.want)
	}
}

// testSiteZeroValues checks zero times and nil byte strings on the site.
func testSiteZeroValues(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	p := &licenseserver.InstalledPack{PackID: "pk_z", ProductID: "prod_a", Platform: "linux-amd64", Quantity: 1, FirstActive: &time.Time{}}
	ok(t, st.InstallPack(ctx, p), "InstallPack with zero values")
	got, err := st.Pack(ctx, "pk_z")
	ok(t, err, "Pack")
	same(t, "pack with zero values", got, p)

	img := &licenseserver.Image{SoftwareID: 1}
	ok(t, st.PutImage(ctx, img), "PutImage with zero values")
	gi, err := st.Image(ctx, 1)
	ok(t, err, "Image")
	same(t, "image with zero values", gi, img)

	// A client without a key, at a zero time: the zero first-active time is
	// before it, so the pack is active.
	s := &seats{st: st}
	req := s.req("cli_z", "prod_a", "linux-amd64", time.Time{})
	req.ClientKey, req.SystemID = nil, ""
	a, _, err := st.AssignSeat(ctx, req, s.sign)
	ok(t, err, "AssignSeat without a client key")
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_z"})
	ok(t, err, "Assignments")
	same(t, "assignment without a client key", as, []*licenseserver.Assignment{a})
	if len(as) == 1 && !as[0].Issued.IsZero() {
		t.Errorf("zero issue time came back as %v", as[0].Issued)
	}
}

// testAssignSeatCancelled cancels grants while they run: whatever becomes
// of a cancelled one, the others succeed, and the pack's assigned count
// matches the assignments recorded.
func testAssignSeatCancelled(t *testing.T, st licenseserver.Store) {
	const n = 60
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 10, n+1, t0)) // a seat for cli_after
	s := &seats{st: st}
	var good atomic.Int64
	run(n, func(i int) {
		ctx := t.Context()
		if i%2 == 1 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(i)*50*time.Microsecond)
			defer cancel()
		}
		_, _, err := s.assign(ctx, fmt.Sprintf("cli_%02d", i), "prod_a", "linux-amd64", t0)
		switch {
		case err == nil && i%2 == 0:
			good.Add(1)
		case err != nil && i%2 == 0:
			t.Errorf("AssignSeat %d (not cancelled): %v", i, err)
		}
	})
	as, err := st.Assignments(t.Context(), licenseserver.AssignmentFilter{PackID: "pk_1"})
	ok(t, err, "Assignments")
	if got := assigned(t, st, "pk_1"); got != len(as) {
		t.Errorf("pack assigned %d, but %d assignments recorded", got, len(as))
	}
	if int(good.Load()) > len(as) {
		t.Errorf("%d grants succeeded, but %d assignments recorded", good.Load(), len(as))
	}
	// The store still works.
	s.mustAssign(t, "cli_after", "prod_a", "linux-amd64", t0, false)
}

// ---- two stores on one database ----

// TestSharedSite checks that two site stores open on one database (as two
// licet processes would have) grant seats exactly: a and b must be fresh
// and share their database. From each store, 100 goroutines ask for a seat
// of a 60-seat pack: exactly 60 are granted. Then the same client asks
// from 8 goroutines on each store at once: one seat.
func TestSharedSite(t *testing.T, a, b licenseserver.Store) {
	ctx := t.Context()
	const perStore, seatsN = 100, 60
	install(t, a, pack("pk_shared", "prod_a", "linux-amd64", 7000, seatsN, t0))
	if n := assigned(t, b, "pk_shared"); n != 0 {
		t.Fatalf("second store sees pack pk_shared with %d assigned, want 0", n)
	}
	stores := []*seats{{st: a}, {st: b}}
	stores[1].n.Store(1 << 40) // challenge IDs of the two stores must not meet
	got := make([]*licenseserver.Assignment, 2*perStore)
	errList := make([]error, 2*perStore)
	run(2*perStore, func(i int) {
		got[i], _, errList[i] = stores[i%2].assign(ctx, fmt.Sprintf("cli_%03d", i), "prod_a", "linux-amd64", t0)
	})
	checkGrants(t, got, errList, seatsN, 7000)
	for name, st := range map[string]licenseserver.Store{"first": a, "second": b} {
		if n := assigned(t, st, "pk_shared"); n != seatsN {
			t.Errorf("%s store: pack assigned %d, want %d", name, n, seatsN)
		}
		as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{PackID: "pk_shared"})
		ok(t, err, name+" store: Assignments")
		if len(as) != seatsN {
			t.Errorf("%s store: %d assignments, want %d", name, len(as), seatsN)
		}
	}

	install(t, b, pack("pk_same", "prod_b", "linux-amd64", 9000, 5, t0))
	const each = 8
	one := make([]*licenseserver.Assignment, 2*each)
	existing := make([]bool, 2*each)
	errList = make([]error, 2*each)
	run(2*each, func(i int) {
		one[i], existing[i], errList[i] = stores[i%2].assign(ctx, "cli_same", "prod_b", "linux-amd64", t0)
	})
	fresh := 0
	for i, err := range errList {
		if err != nil {
			t.Errorf("AssignSeat %d for one client: %v", i, err)
			continue
		}
		if !existing[i] {
			fresh++
		}
		if one[i].LicenseID != 9000 {
			t.Errorf("AssignSeat %d for one client: license %d, want 9000", i, one[i].LicenseID)
		}
	}
	if fresh != 1 {
		t.Errorf("%d calls for one client allocated a new seat, want 1", fresh)
	}
	if n := assigned(t, a, "pk_same"); n != 1 {
		t.Errorf("pack pk_same assigned %d, want 1", n)
	}

	// Grants of two products, each with two packs, from both stores at once:
	// the stores' transactions take the packs' rows in every order. Every
	// grant succeeds; none is lost to a lock conflict.
	install(t, a, pack("pk_q1", "prod_q", "linux-amd64", 20000, 30, at(time.Second)), pack("pk_q2", "prod_q", "linux-amd64", 21000, 200, at(2*time.Second)))
	install(t, b, pack("pk_r1", "prod_r", "linux-amd64", 30000, 30, at(time.Second)), pack("pk_r2", "prod_r", "linux-amd64", 31000, 200, at(2*time.Second)))
	const mixed = 160
	errList = make([]error, mixed)
	run(mixed, func(i int) {
		products := []string{"prod_q", "prod_r"}
		if i%4 >= 2 {
			products[0], products[1] = products[1], products[0]
		}
		for _, product := range products {
			if _, _, err := stores[i%2].assign(ctx, fmt.Sprintf("mix_%03d", i), product, "linux-amd64", t0); err != nil {
				errList[i] = fmt.Errorf("%s: %w", product, err)
				return
			}
		}
	})
	for i, err := range errList {
		if err != nil {
			t.Errorf("mixed grant %d: %v", i, err)
		}
	}
	total := 0
	for _, id := range []string{"pk_q1", "pk_q2", "pk_r1", "pk_r2"} {
		n := assigned(t, b, id)
		as, err := a.Assignments(ctx, licenseserver.AssignmentFilter{PackID: id})
		ok(t, err, "Assignments "+id)
		if n != len(as) {
			t.Errorf("pack %s assigned %d, but %d assignments recorded", id, n, len(as))
		}
		total += n
	}
	if total != 2*mixed {
		t.Errorf("%d seats of prod_q and prod_r assigned, want %d", total, 2*mixed)
	}
}

// TestSharedVendor checks that two vendor stores open on one fresh database
// allocate serial numbers without overlap and let one enrollment code be
// used once, racing each other.
func TestSharedVendor(t *testing.T, a, b clearinghouse.Store) {
	ctx := t.Context()
	stores := []clearinghouse.Store{a, b}
	type span struct{ begin, n int64 }
	var mu sync.Mutex
	var spans []span
	run(16, func(i int) {
		for j := 0; j < 10; j++ {
			n := 1 + (i+j)%5
			begin, err := stores[i%2].AllocateSerials(ctx, n)
			if err != nil {
				t.Errorf("AllocateSerials: %v", err)
				return
			}
			mu.Lock()
			spans = append(spans, span{begin, int64(n)})
			mu.Unlock()
		}
	})
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	for i := 1; i < len(spans); i++ {
		if p := spans[i-1]; p.begin+p.n > spans[i].begin {
			t.Errorf("ranges overlap: [%d, %d) and [%d, %d)", p.begin, p.begin+p.n, spans[i].begin, spans[i].begin+spans[i].n)
		}
	}

	seedCustomers(t, a, "cus_a")
	code := auth.HashToken("CODE-SHARED")
	ok(t, b.CreateEnrollment(ctx, &clearinghouse.Enrollment{CodeHash: code, CustomerID: "cus_a", Created: t0, Expires: at(time.Hour)}), "CreateEnrollment")
	results := make([]error, 16)
	run(16, func(i int) {
		s := &clearinghouse.Site{ID: fmt.Sprintf("site_%d", i), CustomerID: "cus_a", Name: "racer", CertDER: []byte{byte(i)}, Certified: t0}
		results[i] = stores[i%2].EnrollSite(ctx, code, s, at(time.Minute))
	})
	wins := 0
	for i, err := range results {
		if err == nil {
			wins++
			continue
		}
		wantKind(t, err, errs.Conflict, fmt.Sprintf("losing EnrollSite %d", i))
	}
	if wins != 1 {
		t.Errorf("%d EnrollSite calls won with one code, want 1", wins)
	}
	sites, err := a.Sites(ctx, "cus_a")
	ok(t, err, "Sites")
	if len(sites) != 1 {
		t.Errorf("%d sites enrolled with one code, want 1", len(sites))
	}
}

// OpenBoth opens two stores on the database dsn at the same time, as two
// licet processes starting together would: both run the migrations.
func OpenBoth[S interface{ Close() error }](t *testing.T, dsn string, open func(ctx context.Context, dsn string) (S, error)) (S, S) {
	t.Helper()
	var stores [2]S
	var errList [2]error
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errList[i] = open(t.Context(), dsn) })
	}
	wg.Wait()
	for i, err := range errList {
		if err != nil {
			t.Fatalf("open store %d of 2 concurrently: %v", i+1, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	return stores[0], stores[1]
}

// MigrationFiles counts the migrations of a role in the source tree, seen
// from a backend's package directory (store/sqlite, store/postgres).
func MigrationFiles(t *testing.T, role string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "sqlstore", "migrations", role, "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s migrations found (%v)", role, err)
	}
	return len(files)
}

// upgradePack returns an upgrade pack to version, from versions lo..hi.
func upgradePack(id, productID, version, lo, hi string, begin int64, n int, installed time.Time) *licenseserver.InstalledPack {
	p := pack(id, productID, "linux-amd64", begin, n, installed)
	p.ProductVersion, p.Upgrade = version, &packfmt.Upgrade{FromMin: lo, FromMax: hi}
	return p
}

func upgradeReq(a *licenseserver.Assignment, version string, expired bool, now time.Time) licenseserver.UpgradeRequest {
	return licenseserver.UpgradeRequest{ClientID: a.ClientID, ProductID: a.ProductID, Platform: a.Platform,
		LicenseID: a.LicenseID, Version: version, Expired: expired, Now: now}
}

func testUpgradeSeat(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	// Seat pack of version 3.0; upgrades to 4.0 (from 3.x) and to 5.0 (from 3.0 to 4.9).
	install(t, st, pack("pk_s", "prod_a", "linux-amd64", 1, 10, t0),
		upgradePack("pk_u4", "prod_a", "4.0", "3.0", "3.9", 100, 2, at(time.Second)),
		upgradePack("pk_u5", "prod_a", "5.0", "3.0", "4.9", 200, 1, at(2*time.Second)))
	s := &seats{st: st}
	a1 := s.mustAssign(t, "cli_1", "prod_a", "linux-amd64", at(time.Minute), false)
	a2 := s.mustAssign(t, "cli_2", "prod_a", "linux-amd64", at(time.Minute), false)
	a3 := s.mustAssign(t, "cli_3", "prod_a", "linux-amd64", at(time.Minute), false)
	if a1.PackID != "pk_s" || a2.PackID != "pk_s" || a3.PackID != "pk_s" {
		t.Fatalf("new seats came from %s, %s, %s; an upgrade pack must never grant a new seat", a1.PackID, a2.PackID, a3.PackID)
	}
	if string(a1.ClientHPKE) != "hpke of cli_1" {
		t.Errorf("assignment keeps client HPKE key %q", a1.ClientHPKE)
	}

	// The newest target wins: 3.0 -> 5.0.
	now := at(time.Hour)
	u1, existing, err := st.UpgradeSeat(ctx, upgradeReq(a1, "3.0", false, now), s.sign)
	ok(t, err, "UpgradeSeat cli_1")
	want := *a1
	want.LicenseID, want.UpgradePackID, want.UpgradedFrom, want.Issued, want.Expires = 200, "pk_u5", a1.LicenseID, now, nil
	want.Cert = []byte("cert 200 for cli_1")
	same(t, "upgraded assignment", u1, &want)
	if existing {
		t.Error("first upgrade reported as existing")
	}
	// Asking again with the old license: the same upgrade, no second seat.
	again, existing, err := st.UpgradeSeat(ctx, upgradeReq(a1, "3.0", false, at(2*time.Hour)), s.sign)
	ok(t, err, "UpgradeSeat cli_1 again")
	same(t, "repeated upgrade", again, &want)
	if !existing {
		t.Error("repeated upgrade not reported as existing")
	}
	if n := assigned(t, st, "pk_u5"); n != 1 {
		t.Errorf("pk_u5 assigned %d after one upgrade asked twice, want 1", n)
	}
	// The record is updated in place; a reissue returns the upgraded license.
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{ClientID: "cli_1"})
	ok(t, err, "Assignments cli_1")
	same(t, "assignments of cli_1", as, []*licenseserver.Assignment{&want})
	re := s.mustAssign(t, "cli_1", "prod_a", "linux-amd64", at(3*time.Hour), true)
	if re.LicenseID != 200 || !re.Upgraded() {
		t.Errorf("reissue after upgrade: license %d upgraded %v, want 200 upgraded", re.LicenseID, re.Upgraded())
	}
	// 5.0 is covered by no pack.
	_, _, err = st.UpgradeSeat(ctx, upgradeReq(u1, "5.0", false, now), s.sign)
	wantKind(t, err, errs.Exhausted, "UpgradeSeat of a license no pack covers")

	// pk_u5 is used up: cli_2 gets 4.0 from pk_u4.
	u2, _, err := st.UpgradeSeat(ctx, upgradeReq(a2, "3.0", false, now), s.sign)
	ok(t, err, "UpgradeSeat cli_2")
	if u2.LicenseID != 100 || u2.UpgradePackID != "pk_u4" || u2.PackID != "pk_s" {
		t.Errorf("cli_2 upgraded to license %d of %s (seat %s), want 100 of pk_u4 (seat pk_s)", u2.LicenseID, u2.UpgradePackID, u2.PackID)
	}
	// Not the current license, or no assignment at all: refused.
	stale := *a3
	stale.LicenseID = 999
	_, _, err = st.UpgradeSeat(ctx, upgradeReq(&stale, "3.0", false, now), s.sign)
	wantKind(t, err, errs.Forbidden, "UpgradeSeat of a license that is not the client's current one")
	_, _, err = st.UpgradeSeat(ctx, upgradeReq(a1, "3.0", false, now), s.sign) // a1 is cli_1's old license: fine, repeated
	ok(t, err, "UpgradeSeat repeated after other upgrades")
	ghost := *a3
	ghost.ClientID = "cli_nobody"
	_, _, err = st.UpgradeSeat(ctx, upgradeReq(&ghost, "3.0", false, now), s.sign)
	wantKind(t, err, errs.Forbidden, "UpgradeSeat for a client without an assignment")
	// The old license of cli_2 after cli_2 upgraded is a repeat, but a made-up
	// old license ID is not.
	made := *u2
	made.LicenseID = a2.LicenseID + 1
	_, _, err = st.UpgradeSeat(ctx, upgradeReq(&made, "3.0", false, now), s.sign)
	wantKind(t, err, errs.Forbidden, "UpgradeSeat with another license ID of an upgraded client")

	// An expired upgrade pack gives nothing.
	if n := assigned(t, st, "pk_u4"); n != 1 {
		t.Errorf("pk_u4 assigned %d, want 1", n)
	}
	install(t, st, func() *licenseserver.InstalledPack {
		p := upgradePack("pk_old", "prod_a", "6.0", "3.0", "3.0", 300, 5, at(3*time.Second))
		p.Expires = ptr(at(30 * time.Minute))
		return p
	}())
	u3, _, err := st.UpgradeSeat(ctx, upgradeReq(a3, "3.0", false, now), s.sign)
	ok(t, err, "UpgradeSeat cli_3")
	if u3.UpgradePackID != "pk_u4" {
		t.Errorf("cli_3 upgraded from %s; the expired pack pk_old must not be used", u3.UpgradePackID)
	}
}

func testUpgradeSeatExpired(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	// A renewal pack: 3.0 to 3.0, for expired licenses only.
	install(t, st, pack("pk_s", "prod_b", "linux-amd64", 1, 1, t0),
		upgradePack("pk_r", "prod_b", "3.0", "3.0", "3.0", 50, 5, at(time.Second)))
	s := &seats{st: st}
	a := s.mustAssign(t, "cli_1", "prod_b", "linux-amd64", at(time.Minute), false)
	_, _, err := st.UpgradeSeat(ctx, upgradeReq(a, "3.0", false, at(time.Hour)), s.sign)
	wantKind(t, err, errs.Exhausted, "UpgradeSeat of a current, unexpired license to the same version")
	u, _, err := st.UpgradeSeat(ctx, upgradeReq(a, "3.0", true, at(time.Hour)), s.sign)
	ok(t, err, "UpgradeSeat of an expired license")
	if u.LicenseID != 50 || u.UpgradedFrom != a.LicenseID {
		t.Errorf("renewed license %d from %d, want 50 from %d", u.LicenseID, u.UpgradedFrom, a.LicenseID)
	}
	// The seat pack is used up; the renewal pack's free seats grant nothing new.
	_, _, err = s.assign(ctx, "cli_2", "prod_b", "linux-amd64", at(time.Hour))
	wantKind(t, err, errs.Exhausted, "AssignSeat with only upgrade seats free")
}

func testUpgradeSeatConcurrent(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	const clients, seatsFree = 40, 5
	install(t, st, pack("pk_s", "prod_a", "linux-amd64", 1, clients, t0),
		upgradePack("pk_u", "prod_a", "4.0", "3.0", "3.9", 1000, seatsFree, at(time.Second)))
	s := &seats{st: st}
	as := make([]*licenseserver.Assignment, clients)
	for i := range as {
		as[i] = s.mustAssign(t, fmt.Sprintf("cli_%02d", i), "prod_a", "linux-amd64", at(time.Minute), false)
	}
	// Every client asks twice at once.
	errList := make([]error, 2*clients)
	got := make([]*licenseserver.Assignment, 2*clients)
	run(2*clients, func(i int) {
		got[i], _, errList[i] = st.UpgradeSeat(ctx, upgradeReq(as[i%clients], "3.0", false, at(time.Hour)), s.sign)
	})
	upgraded := map[string]int64{}
	for i, err := range errList {
		switch {
		case err == nil:
			c := as[i%clients].ClientID
			if prev, seen := upgraded[c]; seen && prev != got[i].LicenseID {
				t.Errorf("client %s upgraded to two licenses, %d and %d", c, prev, got[i].LicenseID)
			}
			upgraded[c] = got[i].LicenseID
		case errs.Is(err, errs.Exhausted):
		default:
			t.Errorf("UpgradeSeat %d: %v", i, err)
		}
	}
	if len(upgraded) != seatsFree {
		t.Errorf("%d clients upgraded with %d upgrade seats", len(upgraded), seatsFree)
	}
	if n := assigned(t, st, "pk_u"); n != seatsFree {
		t.Errorf("upgrade pack assigned %d, want %d", n, seatsFree)
	}
	ids := map[int64]bool{}
	for _, id := range upgraded {
		if ids[id] || id < 1000 || id >= 1000+seatsFree {
			t.Errorf("license ID %d given twice or outside the pack's range", id)
		}
		ids[id] = true
	}
}

// testRevokeSite: a revocation is recorded once, shows in Site and Sites,
// and a revoked site cannot be certified again (PutSite), its certificate
// and revocation staying as they were.
func testRevokeSite(t *testing.T, st clearinghouse.Store) {
	ctx := t.Context()
	seedCustomers(t, st, "cus_a")
	wantKind(t, st.RevokeSite(ctx, "site_none", "gone", t0), errs.NotFound, "RevokeSite of a missing site")
	a := &clearinghouse.Site{ID: "site_a", CustomerID: "cus_a", Name: "A", CertDER: []byte("der-a"), Certified: t0}
	b := &clearinghouse.Site{ID: "site_b", CustomerID: "cus_a", Name: "B", CertDER: []byte("der-b"), Certified: t0}
	ok(t, st.PutSite(ctx, a), "PutSite a")
	ok(t, st.PutSite(ctx, b), "PutSite b")
	ok(t, st.RevokeSite(ctx, "site_a", "duplicate serials in report 3", at(time.Hour)), "RevokeSite")
	wantKind(t, st.RevokeSite(ctx, "site_a", "again", at(2*time.Hour)), errs.Conflict, "RevokeSite twice")
	revoked := *a
	revoked.Revoked, revoked.RevokeReason = ptr(at(time.Hour)), "duplicate serials in report 3"
	got, err := st.Site(ctx, "site_a")
	ok(t, err, "Site after revocation")
	same(t, "revoked site", got, &revoked)

	renew := &clearinghouse.Site{ID: "site_a", CustomerID: "cus_a", Name: "A", CertDER: []byte("der-a-renewed"), Certified: at(3 * time.Hour)}
	wantKind(t, st.PutSite(ctx, renew), errs.Conflict, "PutSite of a revoked site")
	got, err = st.Site(ctx, "site_a")
	ok(t, err, "Site after refused renewal")
	same(t, "revoked site after refused renewal", got, &revoked)

	sites, err := st.Sites(ctx, "cus_a")
	ok(t, err, "Sites")
	sort.Slice(sites, func(i, j int) bool { return sites[i].ID < sites[j].ID })
	same(t, "sites with one revoked", sites, []*clearinghouse.Site{&revoked, b})

	// Of concurrent revocations of one site, exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := st.RevokeSite(ctx, "site_b", fmt.Sprintf("reason %d", i), at(time.Duration(i)*time.Second)); {
			case err == nil:
				wins.Add(1)
			case !errs.Is(err, errs.Conflict):
				t.Errorf("concurrent RevokeSite: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("concurrent revocations: %d won, want 1", wins.Load())
	}
}
