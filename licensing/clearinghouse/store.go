package clearinghouse

import (
	"context"
	"time"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/licensing/pack"
)

// Product is something the vendor sells licenses for.
type Product struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Manufacturer string            `json:"manufacturer"`
	Version      string            `json:"version"`
	Features     []string          `json:"features"`
	Descriptions map[string]string `json:"descriptions"` // language tag -> text
	Data         map[string]string `json:"data"`         // product-specific data carried into packs
	Created      time.Time         `json:"created"`
}

// Customer is a buyer; each of its license servers is enrolled for it.
type Customer struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// Enrollment is a one-time code that lets a site enroll online for a customer.
type Enrollment struct {
	CodeHash   []byte     `json:"-"`
	CustomerID string     `json:"customer_id"`
	Created    time.Time  `json:"created"`
	Expires    time.Time  `json:"expires"`
	UsedBy     string     `json:"used_by,omitempty"` // site ID
	UsedAt     *time.Time `json:"used_at,omitempty"`
}

// Site is a certified license server of a customer.
type Site struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	Name       string    `json:"name"`
	CertDER    []byte    `json:"-"`
	Certified  time.Time `json:"certified"` // when its current certificate was issued
	// Expires is the end of its current certificate (filled from CertDER by
	// the service, not stored).
	Expires *time.Time `json:"expires,omitempty"`
	// Revoked is when the vendor revoked the site, nil if it did not;
	// RevokeReason says why. Revocation is final.
	Revoked      *time.Time `json:"revoked,omitempty"`
	RevokeReason string     `json:"revoke_reason,omitempty"`
}

// Order is what a customer bought; a pack is issued against it once.
type Order struct {
	ID          string     `json:"id"`
	CustomerID  string     `json:"customer_id"`
	ProductID   string     `json:"product_id"`
	Platform    string     `json:"platform"`
	Quantity    int        `json:"quantity"`
	Features    []string   `json:"features"`
	FirstActive *time.Time `json:"first_active,omitempty"`
	Expires     *time.Time `json:"expires,omitempty"`
	Created     time.Time  `json:"created"`
	PackID      string     `json:"pack_id,omitempty"` // set once the pack is issued
	// Upgrade, if set, makes this an order of upgrade seats: each exchanges a
	// license of a version in the range for one of the product's version.
	Upgrade *pack.Upgrade `json:"upgrade,omitempty"`
	// TemporaryLicenses is how many temporary licenses the pack's site may
	// issue (0: none), TemporaryDays their longest validity in days. Nil in
	// a new order's request: the defaults (pack.DefaultTemporaryCount,
	// pack.DefaultTemporaryDays), which AddOrder stores; nil for an upgrade
	// order, whose pack allows none.
	TemporaryLicenses *int `json:"temporary_licenses,omitempty"`
	TemporaryDays     *int `json:"temporary_days,omitempty"`
}

// TemporaryAllowance returns how many temporary licenses the pack of o
// allows and for at most how many days each: none for an upgrade order, the
// defaults for a count or days o does not state.
func (o *Order) TemporaryAllowance() (count, days int) {
	if o.Upgrade != nil {
		return 0, 0
	}
	count, days = pack.DefaultTemporaryCount(o.Quantity), pack.DefaultTemporaryDays
	if o.TemporaryLicenses != nil {
		count = *o.TemporaryLicenses
	}
	if o.TemporaryDays != nil {
		days = *o.TemporaryDays
	}
	return count, days
}

// IssuedPack is the record of a pack the clearinghouse issued.
type IssuedPack struct {
	PackID      string    `json:"pack_id"`
	OrderID     string    `json:"order_id"`
	SiteID      string    `json:"site_id"`
	BeginSerial int64     `json:"begin_serial"`
	Quantity    int       `json:"quantity"`
	Issued      time.Time `json:"issued"`
	File        []byte    `json:"-"` // the armored, encrypted pack as sent
}

// Store is the vendor's database. Every method returns errs kinds: NotFound
// for a missing object, Conflict for a duplicate or a state that forbids the change.
type Store interface {
	auth.TokenStore

	CreateProduct(ctx context.Context, p *Product) error
	Product(ctx context.Context, id string) (*Product, error)
	Products(ctx context.Context) ([]*Product, error)
	// SetProductVersion makes version the product's current version, the one
	// packs issued from now on carry; NotFound if the product does not exist.
	SetProductVersion(ctx context.Context, id, version string) error

	CreateCustomer(ctx context.Context, c *Customer) error
	Customer(ctx context.Context, id string) (*Customer, error)
	Customers(ctx context.Context) ([]*Customer, error)

	CreateEnrollment(ctx context.Context, e *Enrollment) error
	// Enrollment returns the enrollment with the given code hash.
	Enrollment(ctx context.Context, codeHash []byte) (*Enrollment, error)
	// EnrollSite marks the enrollment used by site and records the site, in
	// one transaction; Conflict if the code was used already.
	EnrollSite(ctx context.Context, codeHash []byte, site *Site, now time.Time) error

	// PutSite records a certified site or replaces its certificate; Conflict if
	// the site is already recorded for another customer, or revoked (its
	// revocation stays).
	PutSite(ctx context.Context, s *Site) error
	// RevokeSite marks a site revoked at time at, for reason; NotFound if
	// it does not exist, Conflict if it is revoked already.
	RevokeSite(ctx context.Context, id, reason string, at time.Time) error
	Site(ctx context.Context, id string) (*Site, error)
	Sites(ctx context.Context, customerID string) ([]*Site, error)

	CreateOrder(ctx context.Context, o *Order) error
	Order(ctx context.Context, id string) (*Order, error)
	// Orders lists orders, of one customer if customerID is not empty.
	Orders(ctx context.Context, customerID string) ([]*Order, error)

	// AllocateSerials reserves n consecutive license serial numbers and
	// returns the first. Ranges never overlap, across processes too.
	AllocateSerials(ctx context.Context, n int) (int64, error)
	// RecordPack stores an issued pack and links it to its order, in one
	// transaction; Conflict if the order has a pack already.
	RecordPack(ctx context.Context, p *IssuedPack) error
	// PackForOrder returns the pack issued for an order.
	PackForOrder(ctx context.Context, orderID string) (*IssuedPack, error)
}
