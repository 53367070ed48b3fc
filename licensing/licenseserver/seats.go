package licenseserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"sync"
	"time"
)

// Seat leases (see SeatLeaser): each Server leases seats in blocks, keeps
// them here, and signs a grant's license with one before the grant's
// transaction, so that signing runs in parallel and outside the database's
// single writer (SQLite) or a pack row lock (PostgreSQL).
const (
	// SeatLeaseBlock is how many seats a Server leases at once.
	SeatLeaseBlock = 64
	// SeatLeaseTime is how long a lease lasts; a seat is used only while
	// its lease has more than seatLeaseMargin left.
	SeatLeaseTime   = 5 * time.Minute
	seatLeaseMargin = 30 * time.Second
	// seatAttempts bounds how often a grant signs with another leased seat
	// after its seat was taken by another process, before it takes a seat
	// inside its transaction instead.
	seatAttempts = 4
)

// leasedSeat is one serial of a pack leased to this process.
type leasedSeat struct {
	pack   *InstalledPack
	serial int64
	until  time.Time
}

type seatKey struct{ product, platform string }

// seatPool holds the seats leased to this Server, by product and platform.
type seatPool struct {
	owner string
	mu    sync.Mutex
	free  map[seatKey][]leasedSeat
	lease map[seatKey]*sync.Mutex // one lease request at a time per key
}

func newSeatPool() *seatPool {
	var b [8]byte
	rand.Read(b[:])
	host, _ := os.Hostname()
	return &seatPool{
		owner: host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:]),
		free:  map[seatKey][]leasedSeat{},
		lease: map[seatKey]*sync.Mutex{},
	}
}

// seats returns the Server's seat pool, or nil if its store leases no seats.
func (s *Server) seats() (*seatPool, SeatLeaser) {
	l, ok := s.Store.(SeatLeaser)
	if !ok {
		return nil, nil
	}
	s.seatOnce.Do(func() { s.seatPool = newSeatPool() })
	return s.seatPool, l
}

// pop returns a leased seat of k usable at now, if the pool has one.
func (p *seatPool) pop(k seatKey, now time.Time) (leasedSeat, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.free[k]
	for len(q) > 0 {
		seat := q[len(q)-1]
		q = q[:len(q)-1]
		if seat.until.Sub(now) > seatLeaseMargin && (seat.pack.Expires == nil || seat.pack.Expires.After(now)) {
			p.free[k] = q
			return seat, true
		}
		// Too close to its end: leave it; its lease ends and it is leased again.
	}
	p.free[k] = q
	return leasedSeat{}, false
}

// put gives a seat back to the pool (its grant did not use it).
func (p *seatPool) put(k seatKey, seat leasedSeat) {
	p.mu.Lock()
	p.free[k] = append(p.free[k], seat)
	p.mu.Unlock()
}

// take returns a seat leased to this process for a grant of product on
// platform, leasing a block if the pool has none; ok is false if the store
// has no seat to lease (every seat is assigned): the grant then goes the
// way without a lease, to a temporary license or a refusal.
func (s *Server) takeSeat(ctx context.Context, product, platform string, now time.Time) (leasedSeat, bool, error) {
	p, l := s.seats()
	if p == nil {
		return leasedSeat{}, false, nil
	}
	k := seatKey{product, platform}
	if seat, ok := p.pop(k, now); ok {
		return seat, true, nil
	}
	p.mu.Lock()
	mu := p.lease[k]
	if mu == nil {
		mu = new(sync.Mutex)
		p.lease[k] = mu
	}
	p.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if seat, ok := p.pop(k, now); ok { // another request leased meanwhile
		return seat, true, nil
	}
	until := now.Add(SeatLeaseTime)
	pk, serials, err := l.LeaseSeats(ctx, LeaseRequest{Owner: p.owner, ProductID: product, Platform: platform, Now: now, Until: until, N: SeatLeaseBlock})
	if err != nil || len(serials) == 0 {
		return leasedSeat{}, false, err
	}
	p.mu.Lock()
	// Highest serial first back in, so that pop hands out the lowest first.
	for i := len(serials) - 1; i >= 1; i-- {
		p.free[k] = append(p.free[k], leasedSeat{pack: pk, serial: serials[i], until: until})
	}
	p.mu.Unlock()
	return leasedSeat{pack: pk, serial: serials[0], until: until}, true, nil
}

// ReturnSeats gives the seats leased to this Server and not granted back to
// the store, for other processes; call it when the Server stops serving.
// Seats it does not give back (a killed process) return when their lease
// ends, or earlier to a process that has no other seat.
func (s *Server) ReturnSeats(ctx context.Context) error {
	p, l := s.seats()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	var serials []int64
	for k, q := range p.free {
		for _, seat := range q {
			serials = append(serials, seat.serial)
		}
		delete(p.free, k)
	}
	p.mu.Unlock()
	if len(serials) == 0 {
		return nil
	}
	return l.ReturnSeats(ctx, p.owner, serials)
}

// assignLeased assigns a seat for req: with a leased seat and its license
// signed before the transaction when the store leases seats, else (or
// after seatAttempts seats were taken by other processes) with a seat taken
// and signed inside the transaction.
func (s *Server) assignLeased(ctx context.Context, req SeatRequest) (*Assignment, bool, error) {
	for attempt := 0; attempt < seatAttempts; attempt++ {
		seat, ok, err := s.takeSeat(ctx, req.ProductID, req.Platform, req.Now)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			break
		}
		a := &Assignment{LicenseID: seat.serial, PackID: seat.pack.PackID, ClientID: req.ClientID, SystemID: req.SystemID,
			ProductID: req.ProductID, Platform: req.Platform, ClientKey: req.ClientKey, ClientHPKE: req.ClientHPKE,
			Issued: req.Now.UTC(), Expires: seat.pack.Expires}
		if a.Cert, err = s.signLicense(a, seat.pack); err != nil {
			s.seatPool.put(seatKey{req.ProductID, req.Platform}, seat)
			return nil, false, err
		}
		lreq := req
		lreq.Lease = &SeatLease{Owner: s.seatPool.owner, Assignment: a}
		got, existing, err := s.Store.AssignSeat(ctx, lreq, s.signLicense)
		if errors.Is(err, ErrSeatLeaseLost) {
			continue // another process took the seat after our lease ended
		}
		if err != nil || existing {
			s.seatPool.put(seatKey{req.ProductID, req.Platform}, seat) // the seat is still ours
		}
		return got, existing, err
	}
	return s.Store.AssignSeat(ctx, req, s.signLicense)
}
