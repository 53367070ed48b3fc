package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/licet/licet/compliance/fleet"
	"github.com/licet/licet/errs"
)

var _ fleet.Store = (*Vendor)(nil)

// InsertPolicyBundle implements fleet.Store.
func (v *Vendor) InsertPolicyBundle(ctx context.Context, b *fleet.Bundle) error {
	return v.tx(ctx, func(c conn) error {
		var max sql.NullInt64
		if err := c.row(ctx, `SELECT MAX(version) FROM v_compliance_bundles`).Scan(&max); err != nil {
			return v.dbErr(err, "read the latest policy bundle")
		}
		if max.Valid && int64(b.Version) <= max.Int64 {
			return errs.E(errs.Conflict, "policy bundle version %d is not above the published version %d", b.Version, max.Int64)
		}
		_, err := c.exec(ctx, `INSERT INTO v_compliance_bundles (version, file, published) VALUES (?, ?, ?)`, int64(min(b.Version, 1<<62)), b.File, toNanos(b.Published))
		return v.dbErr(err, "store the policy bundle")
	})
}

// LatestPolicyBundle implements fleet.Store.
func (v *Vendor) LatestPolicyBundle(ctx context.Context) (*fleet.Bundle, error) {
	var b fleet.Bundle
	var version, published int64
	err := v.conn().row(ctx, `SELECT version, file, published FROM v_compliance_bundles ORDER BY version DESC LIMIT 1`).Scan(&version, &b.File, &published)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "no policy bundle was published; publish one with 'licet vendor policy publish FILE'")
	}
	if err != nil {
		return nil, v.dbErr(err, "read the latest policy bundle")
	}
	b.Version, b.Published = uint64(version), fromNanos(published)
	return &b, nil
}

// LastResetSequence implements fleet.Store.
func (v *Vendor) LastResetSequence(ctx context.Context, deviceID string) (uint64, error) {
	var max sql.NullInt64
	if err := v.conn().row(ctx, `SELECT MAX(sequence) FROM v_compliance_resets WHERE device_id = ?`, deviceID).Scan(&max); err != nil {
		return 0, v.dbErr(err, "read the resets of device "+deviceID)
	}
	return uint64(max.Int64), nil
}

// InsertReset implements fleet.Store.
// ReportedResetSequence returns the reset sequence of a device's recorded
// compliance report, the highest it ever reported (0: none).
func (v *Vendor) ReportedResetSequence(ctx context.Context, deviceID string) (uint64, error) {
	var seq int64
	err := v.conn().row(ctx, `SELECT reset_sequence FROM v_compliance_reports WHERE device_id = ?`, deviceID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, v.dbErr(err, "read the last compliance report")
	}
	return uint64(max(seq, 0)), nil
}

func (v *Vendor) InsertReset(ctx context.Context, r *fleet.StoredReset) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_compliance_resets (device_id, sequence, reason, file, created) VALUES (?, ?, ?, ?, ?)`,
		r.DeviceID, int64(min(r.Sequence, 1<<62)), r.Reason, r.File, toNanos(r.Created))
	return v.dbErr(err, "store the reset of device "+r.DeviceID)
}

// Resets implements fleet.Store.
func (v *Vendor) Resets(ctx context.Context, deviceID string, since uint64) ([]*fleet.StoredReset, error) {
	return list(ctx, v.conn(), "list resets", func(sc interface{ Scan(...any) error }) (*fleet.StoredReset, error) {
		var r fleet.StoredReset
		var seq, created int64
		if err := sc.Scan(&r.DeviceID, &seq, &r.Reason, &r.File, &created); err != nil {
			return nil, err
		}
		r.Sequence, r.Created = uint64(seq), fromNanos(created)
		return &r, nil
	}, `SELECT device_id, sequence, reason, file, created FROM v_compliance_resets WHERE device_id = ? AND sequence > ? ORDER BY sequence`, deviceID, int64(min(since, 1<<62)))
}

// RecordCompliance implements fleet.Store.
func (v *Vendor) RecordCompliance(ctx context.Context, d *fleet.DeviceCompliance) error {
	return v.tx(ctx, func(c conn) error {
		var score int
		var changed int64
		err := c.row(ctx, `SELECT score, changed FROM v_compliance_reports WHERE device_id = ?`, d.DeviceID).Scan(&score, &changed)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			d.Changed = d.At
		case err != nil:
			return v.dbErr(err, "read the compliance of device "+d.DeviceID)
		case score != d.Score:
			d.Changed = d.At
		default:
			d.Changed = fromNanos(changed)
		}
		if _, err := c.exec(ctx, `DELETE FROM v_compliance_reports WHERE device_id = ?`, d.DeviceID); err != nil {
			return v.dbErr(err, "record the compliance of device "+d.DeviceID)
		}
		_, err = c.exec(ctx, `INSERT INTO v_compliance_reports (device_id, score, mode, bundle_version, reset_sequence, failing, evaluated, at, changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.DeviceID, d.Score, d.Mode, int64(min(d.BundleVersion, 1<<62)), int64(min(d.ResetSequence, 1<<62)), strings.Join(d.Failing, ","), toNanos(d.Evaluated), toNanos(d.At), toNanos(d.Changed))
		return v.dbErr(err, "record the compliance of device "+d.DeviceID)
	})
}

// ComplianceBelow implements fleet.Store.
func (v *Vendor) ComplianceBelow(ctx context.Context, n int) ([]*fleet.DeviceCompliance, error) {
	return list(ctx, v.conn(), "list devices by compliance", func(sc interface{ Scan(...any) error }) (*fleet.DeviceCompliance, error) {
		var d fleet.DeviceCompliance
		var bv, rs, ev, at, ch int64
		var failing string
		if err := sc.Scan(&d.DeviceID, &d.Score, &d.Mode, &bv, &rs, &failing, &ev, &at, &ch); err != nil {
			return nil, err
		}
		d.BundleVersion, d.ResetSequence = uint64(bv), uint64(rs)
		d.Evaluated, d.At, d.Changed = fromNanos(ev), fromNanos(at), fromNanos(ch)
		if failing != "" {
			d.Failing = strings.Split(failing, ",")
		}
		return &d, nil
	}, `SELECT device_id, score, mode, bundle_version, reset_sequence, failing, evaluated, at, changed FROM v_compliance_reports WHERE score < ? ORDER BY score, device_id`, n)
}
