package sqlstore

import (
	"context"
	"database/sql"
	"sync/atomic"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/faultpoint"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/pack"
)

// Site is the license server's database (tables s_*): it implements
// licenseserver.Store over SQLite or PostgreSQL.
type Site struct {
	*DB
	tokenTable
	answered atomic.Uint64 // challenges recorded as answered, for their sweep
}

var _ licenseserver.Store = (*Site)(nil)

// NewSite migrates db for the site role and returns the store; closing the
// store closes db.
func NewSite(ctx context.Context, db *DB) (*Site, error) {
	if err := db.Migrate(ctx, "site"); err != nil {
		return nil, err
	}
	return &Site{DB: db, tokenTable: tokenTable{db: db, table: "s_tokens"}}, nil
}

// InstallPack records a pack (with no seat assigned) and, in a separate
// table, its file, in one transaction; between the two inserts it calls
// faultpoint.Hit("site.install-pack") so that crash tests can kill the
// process there. Conflict if a pack with that ID is installed already, also
// when concurrent installs of one pack race: exactly one wins.
func (s *Site) InstallPack(ctx context.Context, p *licenseserver.InstalledPack) error {
	var upMin, upMax sql.NullString
	if p.Upgrade != nil {
		upMin, upMax = sql.NullString{String: p.Upgrade.FromMin, Valid: true}, sql.NullString{String: p.Upgrade.FromMax, Valid: true}
	}
	return s.tx(ctx, func(c conn) error {
		res, err := c.exec(ctx, `INSERT INTO s_packs (pack_id, order_id, product_id, product_name, product_version, platform, features,
			quantity, assigned, begin_serial, first_active, expires, descriptions, manufacturer, product_data, installed, upgrade_from_min, upgrade_from_max,
			statement, temp_count, temp_max_days, temp_begin)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pack_id) DO NOTHING`,
			p.PackID, p.OrderID, p.ProductID, p.ProductName, p.ProductVersion, p.Platform, toJSON(nonNil(p.Features)),
			p.Quantity, p.BeginSerial, toNullNanos(p.FirstActive), toNullNanos(p.Expires),
			toJSON(nonNilMap(p.Descriptions)), p.Manufacturer, toJSON(nonNilMap(p.ProductData)), toNanos(p.Installed), upMin, upMax,
			nullBytes(p.Statement), p.TemporaryCount, p.TemporaryMaxDays, p.TemporaryBegin)
		if err != nil {
			return s.dbErr(err, "install pack "+p.PackID)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return s.dbErr(err, "install pack "+p.PackID)
		}
		if n != 1 {
			// Installed already. (A concurrent install that has not committed
			// yet made the insert wait for its outcome, so the row is there.)
			var installed int64
			if err := c.row(ctx, `SELECT installed FROM s_packs WHERE pack_id = ?`, p.PackID).Scan(&installed); err != nil {
				return s.dbErr(err, "look up pack "+p.PackID)
			}
			return errs.E(errs.Conflict, "pack %s is already installed (on %s); nothing was changed", p.PackID, fromNanos(installed).Format(time.DateOnly))
		}
		faultpoint.Hit("site.install-pack")
		_, err = c.exec(ctx, `INSERT INTO s_pack_files (pack_id, file) VALUES (?, ?)`, p.PackID, nonNilBytes(p.File))
		return s.dbErr(err, "store file of pack "+p.PackID)
	})
}

// nullBytes stores an absent byte string as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// nonNilBytes stores a missing byte string as an empty one (the columns are NOT NULL).
func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// packCols are the columns of an InstalledPack. Its Assigned count is the
// seats taken out of the pack (s_packs.assigned) less those leased to serving
// processes and not granted yet (s_seat_leases): exact at every commit.
const packCols = `pack_id, order_id, product_id, product_name, product_version, platform, features, quantity,
	assigned - (SELECT COUNT(*) FROM s_seat_leases l WHERE l.pack_id = s_packs.pack_id),
	begin_serial, first_active, expires, descriptions, manufacturer, product_data, installed, upgrade_from_min, upgrade_from_max,
	statement, temp_count, temp_max_days, temp_begin, temp_assigned`

func scanPack(sc interface{ Scan(...any) error }) (*licenseserver.InstalledPack, error) {
	var p licenseserver.InstalledPack
	var feats, descs, data string
	var first, exp sql.NullInt64
	var installed int64
	var upMin, upMax sql.NullString
	if err := sc.Scan(&p.PackID, &p.OrderID, &p.ProductID, &p.ProductName, &p.ProductVersion, &p.Platform, &feats,
		&p.Quantity, &p.Assigned, &p.BeginSerial, &first, &exp, &descs, &p.Manufacturer, &data, &installed, &upMin, &upMax,
		&p.Statement, &p.TemporaryCount, &p.TemporaryMaxDays, &p.TemporaryBegin, &p.TemporaryAssigned); err != nil {
		return nil, err
	}
	p.FirstActive, p.Expires, p.Installed = fromNullNanos(first), fromNullNanos(exp), fromNanos(installed)
	if upMin.Valid {
		p.Upgrade = &pack.Upgrade{FromMin: upMin.String, FromMax: upMax.String}
	}
	if err := fromJSON(feats, &p.Features); err != nil {
		return nil, err
	}
	if err := fromJSON(descs, &p.Descriptions); err != nil {
		return nil, err
	}
	return &p, fromJSON(data, &p.ProductData)
}

// Pack returns an installed pack with its file.
func (s *Site) Pack(ctx context.Context, id string) (*licenseserver.InstalledPack, error) {
	p, err := scanPack(s.conn().row(ctx, `SELECT `+packCols+` FROM s_packs WHERE pack_id = ?`, id))
	if err != nil {
		return nil, s.scanErr(err, "pack", id)
	}
	if err := s.conn().row(ctx, `SELECT file FROM s_pack_files WHERE pack_id = ?`, id).Scan(&p.File); err != nil {
		return nil, s.scanErr(err, "file of pack", id)
	}
	return p, nil
}

// Packs lists installed packs, oldest first (by installation time, then
// ID), without their files: Pack returns a pack with its file.
func (s *Site) Packs(ctx context.Context) ([]*licenseserver.InstalledPack, error) {
	return list(ctx, s.conn(), "list packs", scanPack, `SELECT `+packCols+` FROM s_packs ORDER BY installed, pack_id`)
}
