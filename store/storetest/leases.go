package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/licenseserver"
)

// leaser returns st's SeatLeaser or fails the test.
func leaser(t *testing.T, st licenseserver.Store) licenseserver.SeatLeaser {
	t.Helper()
	l, isLeaser := st.(licenseserver.SeatLeaser)
	if !isLeaser {
		t.Fatalf("%T does not lease seats (licenseserver.SeatLeaser)", st)
	}
	return l
}

// lease leases up to n seats of product prod_a for owner at now.
func lease(t *testing.T, st licenseserver.Store, owner string, now time.Time, n int) (*licenseserver.InstalledPack, []int64) {
	t.Helper()
	p, serials, err := leaser(t, st).LeaseSeats(t.Context(), licenseserver.LeaseRequest{
		Owner: owner, ProductID: "prod_a", Platform: "linux-amd64", Now: now, Until: now.Add(time.Minute), N: n})
	ok(t, err, "LeaseSeats for "+owner)
	return p, serials
}

// assignLease asks for a seat for client with the leased serial of owner.
func (s *seats) assignLease(ctx context.Context, owner, client string, p *licenseserver.InstalledPack, serial int64, now time.Time) (*licenseserver.Assignment, bool, error) {
	req := s.req(client, p.ProductID, p.Platform, now)
	a := &licenseserver.Assignment{LicenseID: serial, PackID: p.PackID, ClientID: client, SystemID: req.SystemID, ProductID: p.ProductID,
		Platform: p.Platform, ClientKey: req.ClientKey, ClientHPKE: req.ClientHPKE, Issued: now.UTC(), Expires: p.Expires}
	a.Cert, _ = s.sign(a, p)
	req.Lease = &licenseserver.SeatLease{Owner: owner, Assignment: a}
	return s.st.AssignSeat(ctx, req, s.sign)
}

func testSeatLeases(t *testing.T, st licenseserver.Store) {
	ctx := t.Context()
	s := &seats{st: st}
	install(t, st, pack("pk_1", "prod_a", "linux-amd64", 100, 40, t0))

	// Never-taken seats, in blocks of at most a quarter of what is left.
	p, got := lease(t, st, "A", t0, 64)
	same(t, "serials leased to A", got, []int64{100, 101, 102, 103, 104, 105, 106, 107, 108, 109})
	if p == nil || p.PackID != "pk_1" {
		t.Fatalf("LeaseSeats gave pack %+v, want pk_1", p)
	}
	if n := assigned(t, st, "pk_1"); n != 0 {
		t.Errorf("pack assigned %d with 10 seats leased and none granted, want 0", n)
	}

	// A grant with a leased seat records the signed license and counts it.
	a, existing, err := s.assignLease(ctx, "A", "cli_1", p, 100, t0)
	ok(t, err, "AssignSeat with a lease")
	if existing || a.LicenseID != 100 || string(a.Cert) != "cert 100 for cli_1" {
		t.Errorf("leased grant: %+v (existing %v), want license 100 with its certificate", a, existing)
	}
	if n := assigned(t, st, "pk_1"); n != 1 {
		t.Errorf("pack assigned %d, want 1", n)
	}
	// The same client again: its license, and the lease is not consumed.
	a, existing, err = s.assignLease(ctx, "A", "cli_1", p, 101, t0)
	ok(t, err, "AssignSeat again with a lease")
	if !existing || a.LicenseID != 100 {
		t.Errorf("repeated grant: license %d (existing %v), want 100 again", a.LicenseID, existing)
	}
	// A seat is consumed once; another owner's seat is not ours.
	for _, c := range []struct {
		owner  string
		serial int64
	}{{"A", 100}, {"B", 101}, {"A", 139}} {
		_, _, err = s.assignLease(ctx, c.owner, "cli_x", p, c.serial, t0)
		if !errors.Is(err, licenseserver.ErrSeatLeaseLost) {
			t.Errorf("grant with seat %d as %s: %v, want ErrSeatLeaseLost", c.serial, c.owner, err)
		}
	}
	if n := assigned(t, st, "pk_1"); n != 1 {
		t.Errorf("pack assigned %d after refused leases, want 1", n)
	}

	// Seats given back go first to the next process.
	ok(t, leaser(t, st).ReturnSeats(ctx, "A", []int64{101, 102}), "ReturnSeats")
	_, got = lease(t, st, "B", t0, 3)
	same(t, "serials leased to B", got, []int64{101, 102, 110})
	// After the leases of A and B end, their seats go to C before never-taken ones.
	_, got = lease(t, st, "C", t0.Add(2*time.Minute), 4)
	same(t, "serials leased to C", got, []int64{101, 102, 103, 104})
	_, _, err = s.assignLease(ctx, "A", "cli_2", p, 103, t0)
	if !errors.Is(err, licenseserver.ErrSeatLeaseLost) {
		t.Errorf("grant with a seat whose lease ended and was taken: %v, want ErrSeatLeaseLost", err)
	}
	s.mustAssign(t, "cli_3", "prod_a", "linux-amd64", t0, false) // without a lease: the next never-taken seat
	if n := assigned(t, st, "pk_1"); n != 2 {
		t.Errorf("pack assigned %d, want 2", n)
	}

	// Lease until every seat is taken; then the seats of others, one at a time.
	for i := 0; ; i++ {
		_, got = lease(t, st, "D", t0, 64)
		if len(got) == 0 || got[0] < 100 {
			t.Fatalf("lease %d by D gave %v, want never-taken seats", i, got)
		}
		if got[len(got)-1] == 139 {
			break
		}
	}
	_, got = lease(t, st, "D", t0, 64)
	if len(got) != 1 || got[0] < 100 || got[0] > 110 {
		t.Errorf("LeaseSeats with every seat taken gave %v, want one seat of A, B or C", got)
	}
	// Once every seat is granted, nothing is left to lease.
	ps, err := st.Packs(ctx)
	ok(t, err, "Packs")
	for i := 0; ps[0].Free() > 0; i++ {
		_, got = lease(t, st, "E", t0, 64)
		if len(got) == 0 {
			t.Fatalf("nothing to lease with %d seats free", ps[0].Free())
		}
		for _, serial := range got {
			_, _, err := s.assignLease(ctx, "E", fmt.Sprintf("cli_e%d_%d", i, serial), p, serial, t0)
			ok(t, err, "grant with a leased seat")
		}
		ps, err = st.Packs(ctx)
		ok(t, err, "Packs")
	}
	if p, got := lease(t, st, "E", t0, 64); p != nil || len(got) != 0 {
		t.Errorf("LeaseSeats of a used-up pack gave %v of %+v, want none", got, p)
	}
	_, _, err = s.assign(ctx, "cli_last", "prod_a", "linux-amd64", t0)
	wantKind(t, err, errs.Exhausted, "AssignSeat of a used-up pack")
	as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{PackID: "pk_1"})
	ok(t, err, "Assignments")
	if len(as) != 40 || assigned(t, st, "pk_1") != 40 {
		t.Errorf("%d assignments, pack assigned %d; want 40 and 40", len(as), assigned(t, st, "pk_1"))
	}
}

// TestSharedLeases checks that several site stores open on one database (as
// several serving processes would have) grant seats exactly with leases,
// the way licenseserver.Server does (one lease request at a time per
// process): 60 goroutines per store ask for a seat of a 100-seat pack, each
// leasing up to 4 seats, granting with the first and giving back the others,
// so that seats are given back, leased again and, at the end, taken from
// other processes' leases. Exactly 100 are granted, every license ID once
// and inside the pack, and every store reports 100 assigned.
func TestSharedLeases(t *testing.T, stores ...licenseserver.Store) {
	ctx := t.Context()
	const perStore, seatsN = 60, 100
	install(t, stores[0], pack("pk_lease", "prod_a", "linux-amd64", 5000, seatsN, t0))
	ss := make([]*seats, len(stores))
	mus := make([]sync.Mutex, len(stores))
	for i, st := range stores {
		ss[i] = &seats{st: st}
		ss[i].n.Store(int64(i) << 40) // challenge IDs of the stores must not meet
	}
	n := perStore * len(stores)
	got := make([]*licenseserver.Assignment, n)
	errList := make([]error, n)
	run(n, func(i int) {
		s, owner, mu := ss[i%len(ss)], fmt.Sprintf("proc-%d", i%len(ss)), &mus[i%len(ss)]
		client := fmt.Sprintf("cli_%03d", i)
		for attempt := 0; attempt < 8; attempt++ {
			mu.Lock()
			p, serials, err := leaser(t, s.st).LeaseSeats(ctx, licenseserver.LeaseRequest{
				Owner: owner, ProductID: "prod_a", Platform: "linux-amd64", Now: t0, Until: t0.Add(time.Minute), N: 4})
			mu.Unlock()
			if err != nil {
				errList[i] = err
				return
			}
			if len(serials) == 0 {
				break
			}
			got[i], _, errList[i] = s.assignLease(ctx, owner, client, p, serials[0], t0)
			if len(serials) > 1 {
				mu.Lock()
				err := leaser(t, s.st).ReturnSeats(ctx, owner, serials[1:])
				mu.Unlock()
				if err != nil {
					errList[i] = err
					return
				}
			}
			if !errors.Is(errList[i], licenseserver.ErrSeatLeaseLost) {
				return
			}
		}
		got[i], _, errList[i] = s.assign(ctx, client, "prod_a", "linux-amd64", t0)
		if errList[i] != nil {
			t.Logf("client %d: %v", i, errList[i])
		}
	})
	checkGrants(t, got, errList, seatsN, 5000)
	for i, st := range stores {
		if a := assigned(t, st, "pk_lease"); a != seatsN {
			t.Errorf("store %d: pack assigned %d, want %d", i, a, seatsN)
		}
		as, err := st.Assignments(ctx, licenseserver.AssignmentFilter{PackID: "pk_lease"})
		ok(t, err, "Assignments")
		if len(as) != seatsN {
			t.Errorf("store %d: %d assignments, want %d", i, len(as), seatsN)
		}
	}
}
