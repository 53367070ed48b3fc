package licenseserver

import (
	"context"
	"time"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/pack"
)

// InstalledPack is a row of the license pack table (licensing seed Table 3).
type InstalledPack struct {
	PackID         string            `json:"pack_id"`
	OrderID        string            `json:"order_id"`
	ProductID      string            `json:"product_id"`
	ProductName    string            `json:"product_name"`
	ProductVersion string            `json:"product_version"`
	Platform       string            `json:"platform"`
	Features       []string          `json:"features"`
	Quantity       int               `json:"quantity"`
	Assigned       int               `json:"assigned"`
	BeginSerial    int64             `json:"begin_serial"`
	FirstActive    *time.Time        `json:"first_active,omitempty"`
	Expires        *time.Time        `json:"expires,omitempty"`
	Descriptions   map[string]string `json:"descriptions"`
	Manufacturer   string            `json:"manufacturer"`
	ProductData    map[string]string `json:"product_data"`
	Installed      time.Time         `json:"installed"`
	File           []byte            `json:"-"` // the pack file as installed, kept for audit
	// Upgrade is set for an upgrade pack: its seats upgrade licenses of
	// these versions to ProductVersion and are never granted as new licenses.
	Upgrade *pack.Upgrade `json:"upgrade,omitempty"`
	// Statement is the clearinghouse-signed pack statement (JSON of its
	// Signed envelope) that every license of the pack carries; empty for a
	// pack issued before statements.
	Statement []byte `json:"-"`
	// The temporary licenses the statement allows: how many, valid for at
	// most how many days, license IDs from TemporaryBegin; and how many the
	// site has issued. Zero for a pack without a statement: it allows none.
	TemporaryCount    int64 `json:"temporary_count"`
	TemporaryMaxDays  int64 `json:"temporary_max_days"`
	TemporaryBegin    int64 `json:"temporary_begin,omitempty"`
	TemporaryAssigned int64 `json:"temporary_assigned"`
}

// Free returns the number of seats not yet assigned.
func (p *InstalledPack) Free() int { return p.Quantity - p.Assigned }

// Store is the site's database. Every method returns errs kinds: NotFound for
// a missing object, Conflict for a duplicate.
type Store interface {
	auth.TokenStore
	GrantStore

	// InstallPack records a pack and its file in one transaction; Conflict
	// if a pack with that ID is installed already.
	InstallPack(ctx context.Context, p *InstalledPack) error
	Pack(ctx context.Context, id string) (*InstalledPack, error)
	// Packs lists installed packs, oldest first.
	Packs(ctx context.Context) ([]*InstalledPack, error)
}

// Image is a reference client image registered for a software ID (the
// site's client image cache). The image bytes live in the data directory
// under images/, named by their SHA-256.
type Image struct {
	SoftwareID uint32    `json:"software_id"`
	Name       string    `json:"name"`
	SHA256     []byte    `json:"sha256"`
	Size       int64     `json:"size"`
	Added      time.Time `json:"added"`
}

// Assignment is a row of the client assignment table (licensing seed Table 4).
type Assignment struct {
	LicenseID int64      `json:"license_id"`
	PackID    string     `json:"pack_id"`
	ClientID  string     `json:"client_id"`
	SystemID  string     `json:"system_id"`
	ProductID string     `json:"product_id"`
	Platform  string     `json:"platform"`
	ClientKey []byte     `json:"-"`
	Issued    time.Time  `json:"issued"`
	Expires   *time.Time `json:"expires,omitempty"` // the pack's expiry, or the temporary license's
	Cert      []byte     `json:"-"`                 // the license certificate (DER); empty until signed
	Temporary bool       `json:"temporary"`         // a temporary license, from no pack
	// ClientHPKE is the client's HPKE public key, to seal an upgraded license
	// to; empty for assignments made before upgrades existed.
	ClientHPKE []byte `json:"-"`
	// UpgradePackID is the upgrade pack whose seat the current license took,
	// and UpgradedFrom the license ID it replaced; empty and zero if the
	// license was never upgraded. PackID stays the pack of the client's seat.
	UpgradePackID string `json:"upgrade_pack_id,omitempty"`
	UpgradedFrom  int64  `json:"upgraded_from,omitempty"`
}

// Upgraded reports whether the assignment's license is an upgrade.
func (a *Assignment) Upgraded() bool { return a.UpgradePackID != "" }

// SeatRequest asks for one seat of a product for a client, answering the
// challenge ChallengeID.
type SeatRequest struct {
	ClientID         string
	SystemID         string
	ClientKey        []byte
	ClientHPKE       []byte
	ProductID        string
	Platform         string
	Now              time.Time
	ChallengeID      string
	ChallengeExpires time.Time
	// TemporaryFor, if positive, lets the request fall back to a temporary
	// license of this validity when no seat is free.
	TemporaryFor time.Duration
	// Lease, if set, is a seat leased to this process with its license
	// signed (SeatLeaser): a new assignment takes that seat, not one of the
	// pack row.
	Lease *SeatLease
	// Stale, if set, tells whether the stored license certificate of the
	// client's live assignment must be signed again: it ended with the site
	// certificate that signed it, and the site has been renewed since.
	// AssignSeat then signs it again (same license ID) and stores it.
	Stale func(cert []byte) bool
}

// UpgradeRequest asks to exchange license LicenseID (of product version
// Version, expired or not) of a client for an upgraded one.
type UpgradeRequest struct {
	ClientID  string
	ProductID string
	Platform  string
	LicenseID int64
	Version   string
	Expired   bool
	Now       time.Time
}

// AssignmentFilter selects assignments; empty fields match all.
type AssignmentFilter struct {
	ClientID string
	// PackID matches the pack of the client's seat and the upgrade pack
	// whose seat the current license took.
	PackID string
}

// GrantStore is the part of the site's database that grants licenses.
type GrantStore interface {
	// PutImage registers or replaces the reference image of a software ID.
	PutImage(ctx context.Context, img *Image) error
	Image(ctx context.Context, softwareID uint32) (*Image, error)
	Images(ctx context.Context) ([]*Image, error)

	// AssignSeat grants a seat in one transaction: it records req.ChallengeID
	// as answered (Invalid if it was answered before: a replay), then
	// returns the client's live assignment for the product (existing is true)
	// or allocates one seat from a pack of the product and platform that is
	// active at req.Now and records the assignment with the pack's assigned
	// count. An assignment without a license yet gets the one sign returns
	// (given the assignment and its pack), stored in the same transaction;
	// sign must not call the store. With no free seat and req.TemporaryFor
	// set, the system gets its one temporary license of the product (signed
	// with the newest pack of the product and platform as reference; the same
	// one again on later requests of the same client, even expired; refused
	// for another client of the same system). Exhausted if no pack has a free
	// seat and no temporary license can be given.
	// Exact under any concurrency, across processes too.
	// ConsumeChallenge records the challenge id as answered until expires
	// (a wrong answer: AssignSeat records right ones); Invalid if it was
	// answered before. Shared by every process on the store.
	ConsumeChallenge(ctx context.Context, id string, expires time.Time) error
	AssignSeat(ctx context.Context, req SeatRequest, sign func(*Assignment, *InstalledPack) ([]byte, error)) (a *Assignment, existing bool, err error)
	Assignments(ctx context.Context, f AssignmentFilter) ([]*Assignment, error)
	// UpgradeSeat exchanges the client's current license of a product, in
	// one transaction: it takes a seat of an upgrade pack of the product and
	// platform, active at req.Now, whose range covers req.Version (preferring
	// the newest target version, then the oldest pack) and whose target is
	// newer than req.Version, or, for an expired license, not older; then it
	// gives the assignment a new license ID from that pack's serial range and
	// the license sign returns (given the updated assignment and the upgrade
	// pack). If the client's assignment was already upgraded from
	// req.LicenseID, it returns it unchanged (existing is true): a repeated
	// request takes no second seat. Forbidden if req.LicenseID is not the
	// client's current license; Exhausted if no upgrade seat fits.
	UpgradeSeat(ctx context.Context, req UpgradeRequest, sign func(*Assignment, *InstalledPack) ([]byte, error)) (a *Assignment, existing bool, err error)
	// Temporaries lists the temporary licenses granted, by license ID.
	Temporaries(ctx context.Context) ([]*Assignment, error)
}

// SeatLease is a seat leased to this process (see SeatLeaser) with the
// license already signed for it: Assignment holds the license ID (the
// leased serial), the pack, the client, the issue time and the certificate.
type SeatLease struct {
	Owner      string
	Assignment *Assignment
}

// LeaseRequest asks for up to N free seats of an active pack of a product
// and platform for the serving process Owner, until Until.
type LeaseRequest struct {
	Owner     string
	ProductID string
	Platform  string
	Now       time.Time
	Until     time.Time
	N         int
}

// ErrSeatLeaseLost is what AssignSeat returns when the seat of req.Lease is
// no longer leased to req.Lease.Owner (its lease ended and another process
// took the seat): nothing was recorded; sign again with another seat.
var ErrSeatLeaseLost = errs.E(errs.Conflict, "the leased seat was taken by another process; try again with another seat")

// SeatLeaser is an optional capability of a Store: seats are taken out of
// packs in blocks, leased to one serving process, so that the process signs
// a license before its grant transaction (nothing is signed while the
// database's writer or a pack row is held) and grants do not all update the
// pack row. AssignSeat with SeatRequest.Lease then records the lease's
// assignment and consumes the lease in its transaction, or returns
// ErrSeatLeaseLost. A process that dies leaves its leased seats unassigned;
// they return to the pool when their lease ends, and a process that finds
// no other seat takes them before that. Exact across processes: a seat is
// assigned only by deleting its lease row, which one transaction can do.
type SeatLeaser interface {
	// LeaseSeats takes up to req.N seats of one pack (the oldest active one
	// with seats to lease) for req.Owner and returns the pack and their
	// serials: seats whose lease was given back or ended first, then seats
	// never taken, and, if the product has no other seat left, seats leased
	// to other processes. None (a nil pack) if every seat is assigned.
	LeaseSeats(ctx context.Context, req LeaseRequest) (*InstalledPack, []int64, error)
	// ReturnSeats gives back seats leased to owner and not granted.
	ReturnSeats(ctx context.Context, owner string, serials []int64) error
}
