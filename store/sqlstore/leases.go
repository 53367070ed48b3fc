package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/licenseserver"
)

var _ licenseserver.SeatLeaser = (*Site)(nil)

// maxLease bounds the seats of one lease.
const maxLease = 256

// leaseTx runs a lease transaction: on a database whose writers run
// concurrently (PostgreSQL) in a short transaction of its own, outside the
// group commit, so that the pack row is locked only while a block is taken;
// on SQLite, whose one writer is the group commit's, in the next batch.
func (s *Site) leaseTx(ctx context.Context, fn func(c conn) error) error {
	if s.d.SkipLocked != "" {
		return s.directTx(ctx, fn)
	}
	return s.tx(ctx, fn)
}

// LeaseSeats implements licenseserver.SeatLeaser (see leaseTx). Never-taken seats are leased in blocks of at most
// a quarter of what the pack has left, so that the last seats of a small pack
// are not all held by one process; seats of other processes are taken one at
// a time, and only when the product has no other seat.
func (s *Site) LeaseSeats(ctx context.Context, req licenseserver.LeaseRequest) (*licenseserver.InstalledPack, []int64, error) {
	n := min(max(req.N, 1), maxLease)
	now, until := toNanos(req.Now), toNanos(req.Until)
	var pack *licenseserver.InstalledPack
	var serials []int64
	err := s.leaseTx(ctx, func(c conn) error {
		pack, serials = nil, nil
		packs, err := list(ctx, c, "list packs to lease seats of", scanPack, `SELECT `+packCols+` FROM s_packs
			WHERE product_id = ? AND platform = ? AND upgrade_from_min IS NULL
			  AND (first_active IS NULL OR first_active <= ?) AND (expires IS NULL OR expires > ?)
			ORDER BY installed, pack_id`, req.ProductID, req.Platform, now, now)
		if err != nil {
			return err
		}
		for _, p := range packs {
			if p.Free() <= 0 {
				continue
			}
			// Seats given back, or whose lease ended.
			got, err := s.takeLeases(ctx, c, req.Owner, until, p.PackID, `(owner = '' OR expires <= ?)`, now, n)
			if err != nil {
				return err
			}
			// Seats never taken.
			if len(got) < n {
				more, err := s.extendLease(ctx, c, req.Owner, until, p.PackID, n-len(got))
				if err != nil {
					return err
				}
				got = append(got, more...)
			}
			if len(got) > 0 {
				pack, serials = p, got
				return nil
			}
		}
		// The last seats are leased to other processes: take one.
		for _, p := range packs {
			if p.Free() <= 0 {
				continue
			}
			got, err := s.takeLeases(ctx, c, req.Owner, until, p.PackID, `owner <> ?`, req.Owner, 1)
			if err != nil {
				return err
			}
			if len(got) > 0 {
				pack, serials = p, got
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return pack, serials, nil
}

// takeLeases re-owns up to n lease rows of a pack that match cond (with its
// one argument), passing over rows another transaction holds.
func (s *Site) takeLeases(ctx context.Context, c conn, owner string, until int64, packID, cond string, arg any, n int) ([]int64, error) {
	rows, err := c.query(ctx, `UPDATE s_seat_leases SET owner = ?, expires = ? WHERE serial IN (
		SELECT serial FROM s_seat_leases WHERE pack_id = ? AND `+cond+` ORDER BY serial LIMIT ? `+s.d.SkipLocked+`)
		RETURNING serial`, owner, until, packID, arg, n)
	if err != nil {
		return nil, s.dbErr(err, "lease seats of pack "+packID)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var serial int64
		if err := rows.Scan(&serial); err != nil {
			return nil, s.dbErr(err, "lease seats of pack "+packID)
		}
		out = append(out, serial)
	}
	slices.Sort(out) // RETURNING gives no order
	return out, s.dbErr(rows.Err(), "lease seats of pack "+packID)
}

// extendLease takes up to n never-taken seats of a pack (at most a quarter
// of those left, at least one) and records their leases.
func (s *Site) extendLease(ctx context.Context, c conn, owner string, until int64, packID string, n int) ([]int64, error) {
	for try := 0; try < 3; try++ {
		var quantity, taken int64
		if err := c.row(ctx, `SELECT quantity, assigned FROM s_packs WHERE pack_id = ?`, packID).Scan(&quantity, &taken); err != nil {
			return nil, s.scanErr(err, "pack", packID)
		}
		k := min(int64(n), max((quantity-taken)/4, 1))
		if taken+k > quantity {
			return nil, nil
		}
		var first int64
		err := c.row(ctx, `UPDATE s_packs SET assigned = assigned + ? WHERE pack_id = ? AND assigned + ? <= quantity
			RETURNING begin_serial + assigned - ?`, k, packID, k, k).Scan(&first)
		if isNoRows(err) {
			continue // another process took seats meanwhile
		}
		if err != nil {
			return nil, s.dbErr(err, "take seats of pack "+packID)
		}
		out := make([]int64, 0, k)
		for serial := first; serial < first+k; serial++ {
			if _, err := c.exec(ctx, `INSERT INTO s_seat_leases (serial, pack_id, owner, expires) VALUES (?, ?, ?, ?)`, serial, packID, owner, until); err != nil {
				return nil, s.dbErr(err, "record the lease of seat "+packID)
			}
			out = append(out, serial)
		}
		return out, nil
	}
	return nil, nil
}

// ReturnSeats implements licenseserver.SeatLeaser: the seats stay leased
// to nobody (owner ”) until a process leases them again.
func (s *Site) ReturnSeats(ctx context.Context, owner string, serials []int64) error {
	return s.leaseTx(ctx, func(c conn) error {
		for _, serial := range serials {
			if _, err := c.exec(ctx, `UPDATE s_seat_leases SET owner = '' WHERE serial = ? AND owner = ?`, serial, owner); err != nil {
				return s.dbErr(err, "give back leased seats")
			}
		}
		return nil
	})
}

// consumeLease records the assignment of a leased seat in the grant's
// transaction: the lease row goes, the assignment comes.
func (s *Site) consumeLease(ctx context.Context, c conn, l *licenseserver.SeatLease) error {
	a := l.Assignment
	if s.d.WritableCTE { // one statement: the assignment is inserted only if the lease row was there
		res, err := c.exec(ctx, `WITH taken AS (DELETE FROM s_seat_leases WHERE serial = ? AND owner = ? AND pack_id = ? RETURNING serial)
			INSERT INTO s_assignments (`+assignmentCols+`)
			SELECT serial, ?, ?, ?, ?, ?, CAST(? AS `+s.d.BlobType+`), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS `+s.d.BlobType+`),
				CAST(? AS `+s.d.BlobType+`), NULL, NULL FROM taken`,
			a.LicenseID, l.Owner, a.PackID,
			a.PackID, a.ClientID, a.SystemID, a.ProductID, a.Platform, nonNilBytes(a.ClientKey), toNanos(a.Issued), toNullNanos(a.Expires), a.Cert, a.ClientHPKE)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "take leased seat and record assignment")
		}
		return leaseTaken(res)
	}
	res, err := c.exec(ctx, `DELETE FROM s_seat_leases WHERE serial = ? AND owner = ? AND pack_id = ?`, a.LicenseID, l.Owner, a.PackID)
	if err != nil {
		return s.dbErr(err, "take leased seat")
	}
	if err := leaseTaken(res); err != nil {
		return err
	}
	return s.recordAssignment(ctx, c, a)
}

// leaseTaken checks that a statement taking a leased seat found its row:
// ErrSeatLeaseLost if another process took it after the lease ended.
func leaseTaken(res sql.Result) error {
	if n, err := res.RowsAffected(); err != nil {
		return errs.Wrap(errs.Internal, errs.Private(err), "take leased seat")
	} else if n != 1 {
		return licenseserver.ErrSeatLeaseLost
	}
	return nil
}

// recordAssignment inserts a new assignment with its license.
func (s *Site) recordAssignment(ctx context.Context, c conn, a *licenseserver.Assignment) error {
	_, err := c.exec(ctx, `INSERT INTO s_assignments (`+assignmentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
		a.LicenseID, a.PackID, a.ClientID, a.SystemID, a.ProductID, a.Platform, nonNilBytes(a.ClientKey), toNanos(a.Issued), toNullNanos(a.Expires), a.Cert,
		a.ClientHPKE)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "record assignment")
	}
	return nil
}

// takeAnyLease takes, in a grant's transaction, one leased and not granted
// seat of an active pack of the product and platform, whoever leased it:
// the way to the last seats when they are leased to processes that do not
// grant them. A nil pack if there is none (or each is being taken).
func (s *Site) takeAnyLease(ctx context.Context, c conn, product, platform string, now int64) (*licenseserver.InstalledPack, int64, error) {
	packs, err := list(ctx, c, "find a pack with leased seats", scanPack, `SELECT `+packCols+` FROM s_packs
		WHERE product_id = ? AND platform = ? AND upgrade_from_min IS NULL
		  AND (first_active IS NULL OR first_active <= ?) AND (expires IS NULL OR expires > ?)
		  AND EXISTS (SELECT 1 FROM s_seat_leases l WHERE l.pack_id = s_packs.pack_id)
		ORDER BY installed, pack_id`, product, platform, now, now)
	if err != nil {
		return nil, 0, err
	}
	for _, p := range packs {
		var serial int64
		err := c.row(ctx, `DELETE FROM s_seat_leases WHERE serial IN (
			SELECT serial FROM s_seat_leases WHERE pack_id = ? ORDER BY serial LIMIT 1 `+s.d.SkipLocked+`) RETURNING serial`, p.PackID).Scan(&serial)
		if isNoRows(err) {
			continue
		}
		if err != nil {
			return nil, 0, s.dbErr(err, "take a leased seat of pack "+p.PackID)
		}
		p.Assigned++
		return p, serial, nil
	}
	return nil, 0, nil
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
