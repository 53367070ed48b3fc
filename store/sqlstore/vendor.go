package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/pack"
)

// Vendor is the vendor's database (tables v_*): it implements
// clearinghouse.Store over SQLite or PostgreSQL.
type Vendor struct {
	*DB
	tokenTable
}

var _ clearinghouse.Store = (*Vendor)(nil)

// NewVendor migrates db for the vendor role and returns the store; closing
// the store closes db.
func NewVendor(ctx context.Context, db *DB) (*Vendor, error) {
	if err := db.Migrate(ctx, "vendor"); err != nil {
		return nil, err
	}
	return &Vendor{DB: db, tokenTable: tokenTable{db: db, table: "v_tokens"}}, nil
}

// CreateProduct records a product; Conflict if its ID exists.
func (v *Vendor) CreateProduct(ctx context.Context, p *clearinghouse.Product) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_products (id, name, manufacturer, version, features, descriptions, data, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, p.ID, p.Name, p.Manufacturer, p.Version,
		toJSON(nonNil(p.Features)), toJSON(nonNilMap(p.Descriptions)), toJSON(nonNilMap(p.Data)), toNanos(p.Created))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "product %q already exists; choose another ID", p.ID)
	}
	return v.dbErr(err, "store product "+p.ID)
}

// SetProductVersion sets the current version of a product.
func (v *Vendor) SetProductVersion(ctx context.Context, id, version string) error {
	res, err := v.conn().exec(ctx, `UPDATE v_products SET version = ? WHERE id = ?`, version, id)
	if err != nil {
		return v.dbErr(err, "set version of product "+id)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errs.E(errs.NotFound, "product %q not found; add it with 'licet vendor product add'", id)
	}
	return nil
}

const productCols = `id, name, manufacturer, version, features, descriptions, data, created`

func scanProduct(sc interface{ Scan(...any) error }) (*clearinghouse.Product, error) {
	var p clearinghouse.Product
	var feats, descs, data string
	var created int64
	if err := sc.Scan(&p.ID, &p.Name, &p.Manufacturer, &p.Version, &feats, &descs, &data, &created); err != nil {
		return nil, err
	}
	p.Created = fromNanos(created)
	if err := fromJSON(feats, &p.Features); err != nil {
		return nil, err
	}
	if err := fromJSON(descs, &p.Descriptions); err != nil {
		return nil, err
	}
	return &p, fromJSON(data, &p.Data)
}

// Product returns a product.
func (v *Vendor) Product(ctx context.Context, id string) (*clearinghouse.Product, error) {
	p, err := scanProduct(v.conn().row(ctx, `SELECT `+productCols+` FROM v_products WHERE id = ?`, id))
	if err != nil {
		return nil, v.scanErr(err, "product", id)
	}
	return p, nil
}

// Products lists products by creation.
func (v *Vendor) Products(ctx context.Context) ([]*clearinghouse.Product, error) {
	return list(ctx, v.conn(), "list products", scanProduct, `SELECT `+productCols+` FROM v_products ORDER BY created, id`)
}

// list runs a query on c (the database, or a transaction) and scans every row.
func list[T any](ctx context.Context, c conn, what string, scan func(interface{ Scan(...any) error }) (*T, error), q string, args ...any) ([]*T, error) {
	rows, err := c.query(ctx, q, args...)
	if err != nil {
		return nil, c.db.dbErr(err, what)
	}
	defer rows.Close()
	out := []*T{}
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return nil, c.db.dbErr(err, what)
		}
		out = append(out, x)
	}
	return out, c.db.dbErr(rows.Err(), what)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// CreateCustomer records a customer; Conflict if its ID exists.
func (v *Vendor) CreateCustomer(ctx context.Context, c *clearinghouse.Customer) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_customers (id, name, created) VALUES (?, ?, ?)`, c.ID, c.Name, toNanos(c.Created))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "customer %q already exists; choose another ID", c.ID)
	}
	return v.dbErr(err, "store customer "+c.ID)
}

func scanCustomer(sc interface{ Scan(...any) error }) (*clearinghouse.Customer, error) {
	var c clearinghouse.Customer
	var created int64
	if err := sc.Scan(&c.ID, &c.Name, &created); err != nil {
		return nil, err
	}
	c.Created = fromNanos(created)
	return &c, nil
}

// Customer returns a customer.
func (v *Vendor) Customer(ctx context.Context, id string) (*clearinghouse.Customer, error) {
	c, err := scanCustomer(v.conn().row(ctx, `SELECT id, name, created FROM v_customers WHERE id = ?`, id))
	if err != nil {
		return nil, v.scanErr(err, "customer", id)
	}
	return c, nil
}

// Customers lists customers by creation.
func (v *Vendor) Customers(ctx context.Context) ([]*clearinghouse.Customer, error) {
	return list(ctx, v.conn(), "list customers", scanCustomer, `SELECT id, name, created FROM v_customers ORDER BY created, id`)
}

// CreateEnrollment stores an enrollment code's hash; NotFound if its
// customer does not exist, Conflict if the code exists already.
func (v *Vendor) CreateEnrollment(ctx context.Context, e *clearinghouse.Enrollment) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_enrollments (code_hash, customer_id, created, expires) VALUES (?, ?, ?, ?)`,
		e.CodeHash, e.CustomerID, toNanos(e.Created), toNanos(e.Expires))
	switch {
	case v.isUnique(err):
		return errs.Wrap(errs.Conflict, err, "enrollment code exists already; make a new code")
	case v.isFK(err):
		return errs.Wrap(errs.NotFound, err, "customer %q not found; add the customer before making enrollment codes for it", e.CustomerID)
	}
	return v.dbErr(err, "store enrollment code")
}

// Enrollment returns the enrollment of a code hash.
func (v *Vendor) Enrollment(ctx context.Context, codeHash []byte) (*clearinghouse.Enrollment, error) {
	var e clearinghouse.Enrollment
	var created, expires int64
	var usedBy sql.NullString
	var usedAt sql.NullInt64
	err := v.conn().row(ctx, `SELECT code_hash, customer_id, created, expires, used_by, used_at FROM v_enrollments WHERE code_hash = ?`, codeHash).
		Scan(&e.CodeHash, &e.CustomerID, &created, &expires, &usedBy, &usedAt)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errs.E(errs.NotFound, "enrollment code not found; check the code or ask the vendor for a new one")
		}
		return nil, v.dbErr(err, "read enrollment code")
	}
	e.Created, e.Expires, e.UsedBy, e.UsedAt = fromNanos(created), fromNanos(expires), usedBy.String, fromNullNanos(usedAt)
	return &e, nil
}

// EnrollSite consumes the code with a conditional update (only an unused
// code changes) and records the site, in one transaction: of concurrent
// uses of one code, in one process or several, exactly one wins; the others
// get Conflict. NotFound if the code does not exist.
func (v *Vendor) EnrollSite(ctx context.Context, codeHash []byte, s *clearinghouse.Site, now time.Time) error {
	return v.tx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `UPDATE v_enrollments SET used_by = ?, used_at = ? WHERE code_hash = ? AND used_at IS NULL`,
			s.ID, toNanos(now), codeHash)
		if err != nil {
			return v.dbErr(err, "use enrollment code")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return v.dbErr(err, "use enrollment code")
		}
		if n != 1 {
			var usedAt sql.NullInt64
			err := c.row(ctx, `SELECT used_at FROM v_enrollments WHERE code_hash = ?`, codeHash).Scan(&usedAt)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return errs.E(errs.NotFound, "enrollment code not found; check the code or ask the vendor for a new one")
			case err != nil:
				return v.dbErr(err, "read enrollment code")
			case usedAt.Valid:
				return errs.E(errs.Conflict, "enrollment code was already used (on %s); ask the vendor for a new one", fromNanos(usedAt.Int64).Format(time.DateOnly))
			}
			return errs.E(errs.Conflict, "enrollment code was already used; ask the vendor for a new one")
		}
		return v.putSite(ctx, c, s)
	})
}

// PutSite records a site or renews its certificate (and name); Conflict if
// the site is recorded for another customer, NotFound if its customer does
// not exist.
func (v *Vendor) PutSite(ctx context.Context, s *clearinghouse.Site) error {
	return v.tx(ctx, func(c conn) error { return v.putSite(ctx, c, s) })
}

func (v *Vendor) putSite(ctx context.Context, c conn, s *clearinghouse.Site) error {
	var customer string
	err := c.row(ctx, `SELECT customer_id FROM v_sites WHERE id = ?`, s.ID).Scan(&customer)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = c.exec(ctx, `INSERT INTO v_sites (id, customer_id, name, cert, certified) VALUES (?, ?, ?, ?, ?)`,
			s.ID, s.CustomerID, s.Name, nonNilBytes(s.CertDER), toNanos(s.Certified))
		switch {
		case v.isFK(err):
			return errs.Wrap(errs.NotFound, err, "customer %q not found; add the customer before certifying its sites", s.CustomerID)
		case v.isUnique(err): // another process recorded the site meanwhile
			return errs.Wrap(errs.Conflict, err, "site %s was recorded concurrently; try again", s.ID)
		}
		return v.dbErr(err, "record site "+s.ID)
	case err != nil:
		return v.dbErr(err, "read site "+s.ID)
	case customer != s.CustomerID:
		return errs.E(errs.Conflict, "site %s is already registered for customer %s, not %s; nothing was changed", s.ID, customer, s.CustomerID)
	}
	// A revoked site keeps its last certificate: the condition makes a
	// renewal that races a revocation lose.
	res, err := c.exec(ctx, `UPDATE v_sites SET name = ?, cert = ?, certified = ? WHERE id = ? AND revoked IS NULL`, s.Name, nonNilBytes(s.CertDER), toNanos(s.Certified), s.ID)
	if err != nil {
		return v.dbErr(err, "renew site "+s.ID)
	}
	if n, err := res.RowsAffected(); err != nil {
		return v.dbErr(err, "renew site "+s.ID)
	} else if n != 1 {
		return errs.E(errs.Conflict, "site %s is revoked; it cannot be certified again, enroll a new site", s.ID)
	}
	return nil
}

// RevokeSite marks a site revoked with a conditional update: of concurrent
// revocations one wins, the others get Conflict.
func (v *Vendor) RevokeSite(ctx context.Context, id, reason string, at time.Time) error {
	return v.tx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `UPDATE v_sites SET revoked = ?, revoke_reason = ? WHERE id = ? AND revoked IS NULL`, toNanos(at), reason, id)
		if err != nil {
			return v.dbErr(err, "revoke site "+id)
		}
		if n, err := res.RowsAffected(); err != nil {
			return v.dbErr(err, "revoke site "+id)
		} else if n == 1 {
			return nil
		}
		var revoked sql.NullInt64
		switch err := c.row(ctx, `SELECT revoked FROM v_sites WHERE id = ?`, id).Scan(&revoked); {
		case errors.Is(err, sql.ErrNoRows):
			return errs.E(errs.NotFound, "site %q not found; 'licet vendor site list' shows the sites", id)
		case err != nil:
			return v.dbErr(err, "read site "+id)
		}
		return errs.E(errs.Conflict, "site %s was already revoked on %s", id, fromNanos(revoked.Int64).Format(time.DateOnly))
	})
}

const siteCols = `id, customer_id, name, cert, certified, revoked, revoke_reason`

func scanSite(sc interface{ Scan(...any) error }) (*clearinghouse.Site, error) {
	var s clearinghouse.Site
	var certified int64
	var revoked sql.NullInt64
	if err := sc.Scan(&s.ID, &s.CustomerID, &s.Name, &s.CertDER, &certified, &revoked, &s.RevokeReason); err != nil {
		return nil, err
	}
	s.Certified, s.Revoked = fromNanos(certified), fromNullNanos(revoked)
	return &s, nil
}

// Site returns a site.
func (v *Vendor) Site(ctx context.Context, id string) (*clearinghouse.Site, error) {
	s, err := scanSite(v.conn().row(ctx, `SELECT `+siteCols+` FROM v_sites WHERE id = ?`, id))
	if err != nil {
		return nil, v.scanErr(err, "site", id)
	}
	return s, nil
}

// Sites lists sites, of one customer if customerID is set, by
// certification time, then ID.
func (v *Vendor) Sites(ctx context.Context, customerID string) ([]*clearinghouse.Site, error) {
	return list(ctx, v.conn(), "list sites", scanSite, `SELECT `+siteCols+` FROM v_sites WHERE (? = '' OR customer_id = ?) ORDER BY certified, id`, customerID, customerID)
}

// CreateOrder records an order without a pack; Conflict if its ID exists,
// NotFound if its customer or product does not.
func (v *Vendor) CreateOrder(ctx context.Context, o *clearinghouse.Order) error {
	var upMin, upMax sql.NullString
	if o.Upgrade != nil {
		upMin, upMax = sql.NullString{String: o.Upgrade.FromMin, Valid: true}, sql.NullString{String: o.Upgrade.FromMax, Valid: true}
	}
	_, err := v.conn().exec(ctx, `INSERT INTO v_orders (id, customer_id, product_id, platform, quantity, features, first_active, expires, created, upgrade_from_min, upgrade_from_max, temporary_licenses, temporary_days)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, o.ID, o.CustomerID, o.ProductID, o.Platform, o.Quantity, toJSON(nonNil(o.Features)),
		toNullNanos(o.FirstActive), toNullNanos(o.Expires), toNanos(o.Created), upMin, upMax, nullInt(o.TemporaryLicenses), nullInt(o.TemporaryDays))
	switch {
	case v.isUnique(err):
		return errs.Wrap(errs.Conflict, err, "order %q already exists; choose another ID", o.ID)
	case v.isFK(err):
		if _, cerr := v.Customer(ctx, o.CustomerID); errs.Is(cerr, errs.NotFound) {
			return errs.Wrap(errs.NotFound, err, "customer %q not found; add the customer before its orders", o.CustomerID)
		}
		return errs.Wrap(errs.NotFound, err, "product %q not found; add the product before orders for it", o.ProductID)
	}
	return v.dbErr(err, "store order "+o.ID)
}

const orderCols = `id, customer_id, product_id, platform, quantity, features, first_active, expires, created, pack_id, upgrade_from_min, upgrade_from_max, temporary_licenses, temporary_days`

func scanOrder(sc interface{ Scan(...any) error }) (*clearinghouse.Order, error) {
	var o clearinghouse.Order
	var feats string
	var first, exp, tempN, tempDays sql.NullInt64
	var created int64
	var packID, upMin, upMax sql.NullString
	if err := sc.Scan(&o.ID, &o.CustomerID, &o.ProductID, &o.Platform, &o.Quantity, &feats, &first, &exp, &created, &packID, &upMin, &upMax, &tempN, &tempDays); err != nil {
		return nil, err
	}
	o.FirstActive, o.Expires, o.Created, o.PackID = fromNullNanos(first), fromNullNanos(exp), fromNanos(created), packID.String
	o.TemporaryLicenses, o.TemporaryDays = fromNullInt(tempN), fromNullInt(tempDays)
	if upMin.Valid {
		o.Upgrade = &pack.Upgrade{FromMin: upMin.String, FromMax: upMax.String}
	}
	return &o, fromJSON(feats, &o.Features)
}

// Order returns an order.
func (v *Vendor) Order(ctx context.Context, id string) (*clearinghouse.Order, error) {
	o, err := scanOrder(v.conn().row(ctx, `SELECT `+orderCols+` FROM v_orders WHERE id = ?`, id))
	if err != nil {
		return nil, v.scanErr(err, "order", id)
	}
	return o, nil
}

// Orders lists orders, of one customer if customerID is set, by creation
// time, then ID.
func (v *Vendor) Orders(ctx context.Context, customerID string) ([]*clearinghouse.Order, error) {
	return list(ctx, v.conn(), "list orders", scanOrder, `SELECT `+orderCols+` FROM v_orders WHERE (? = '' OR customer_id = ?) ORDER BY created, id`, customerID, customerID)
}

// AllocateSerials reserves n serial numbers, the first being 1, with one
// atomic update of a single counter row: concurrent callers, in one process
// or several, get disjoint ranges. Invalid if n < 1.
func (v *Vendor) AllocateSerials(ctx context.Context, n int) (int64, error) {
	if n < 1 {
		return 0, errs.E(errs.Invalid, "cannot allocate %d serial numbers", n)
	}
	var next int64
	err := v.conn().row(ctx, `UPDATE v_counters SET value = value + ? WHERE name = 'serial' RETURNING value`, n).Scan(&next)
	if err != nil {
		return 0, v.dbErr(err, "allocate serial numbers")
	}
	return next - int64(n), nil
}

// RecordPack stores a pack and links its order, in one transaction and
// once per order: the order is claimed with a conditional update (only an
// order without a pack changes) and v_packs has one row per order at most.
// Conflict if the order has a pack or the pack ID is taken, NotFound if the
// order or the site does not exist.
func (v *Vendor) RecordPack(ctx context.Context, p *clearinghouse.IssuedPack) error {
	return v.tx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `UPDATE v_orders SET pack_id = ? WHERE id = ? AND pack_id IS NULL`, p.PackID, p.OrderID)
		if err != nil {
			return v.dbErr(err, "link pack to order "+p.OrderID)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return v.dbErr(err, "link pack to order "+p.OrderID)
		}
		if n != 1 {
			var has sql.NullString
			err := c.row(ctx, `SELECT pack_id FROM v_orders WHERE id = ?`, p.OrderID).Scan(&has)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return notFound("order", p.OrderID)
			case err != nil:
				return v.dbErr(err, "read order "+p.OrderID)
			}
			return errs.E(errs.Conflict, "order %s already has pack %s; nothing was changed", p.OrderID, has.String)
		}
		_, err = c.exec(ctx, `INSERT INTO v_packs (pack_id, order_id, site_id, begin_serial, quantity, issued, file) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			p.PackID, p.OrderID, p.SiteID, p.BeginSerial, p.Quantity, toNanos(p.Issued), nonNilBytes(p.File))
		switch {
		case v.isUnique(err):
			return errs.Wrap(errs.Conflict, err, "pack %s is already recorded for another order; issue it under a new pack ID", p.PackID)
		case v.isFK(err):
			return errs.Wrap(errs.NotFound, err, "site %q not found; certify the site before issuing packs to it", p.SiteID)
		}
		return v.dbErr(err, "record pack "+p.PackID)
	})
}

// PackForOrder returns the pack issued for an order.
func (v *Vendor) PackForOrder(ctx context.Context, orderID string) (*clearinghouse.IssuedPack, error) {
	var p clearinghouse.IssuedPack
	var issued int64
	err := v.conn().row(ctx, `SELECT pack_id, order_id, site_id, begin_serial, quantity, issued, file FROM v_packs WHERE order_id = ?`, orderID).
		Scan(&p.PackID, &p.OrderID, &p.SiteID, &p.BeginSerial, &p.Quantity, &issued, &p.File)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errs.E(errs.NotFound, "no pack was issued for order %q", orderID)
		}
		return nil, v.dbErr(err, "read pack of order "+orderID)
	}
	p.Issued = fromNanos(issued)
	return &p, nil
}
