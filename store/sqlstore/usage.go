package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
)

// Signed usage reports (issue 12): the site's chain of the reports it made
// (licenseserver.UsageReportStore) and the vendor's record of the reports
// it received (clearinghouse.UsageReportStore).

var (
	_ licenseserver.UsageReportStore = (*Site)(nil)
	_ clearinghouse.UsageReportStore = (*Vendor)(nil)
)

// LastUsageReport returns the newest report's sequence and hash.
func (s *Site) LastUsageReport(ctx context.Context) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := s.conn().row(ctx, `SELECT sequence, hash FROM s_usage_reports ORDER BY sequence DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, s.dbErr(err, "read the last usage report")
	}
	return seq, hash, nil
}

// RecordUsageReport records a report the site made.
func (s *Site) RecordUsageReport(ctx context.Context, sequence int64, hash []byte, created time.Time, file []byte) error {
	_, err := s.conn().exec(ctx, `INSERT INTO s_usage_reports (sequence, hash, created, file) VALUES (?, ?, ?, ?)`, sequence, hash, toNanos(created), file)
	if s.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "usage report %d was made at the same time by another command; make the report again", sequence)
	}
	return s.dbErr(err, "record usage report")
}

// AcknowledgeUsageReports marks the reports up to upTo acknowledged at at.
func (s *Site) AcknowledgeUsageReports(ctx context.Context, upTo int64, at time.Time) error {
	_, err := s.conn().exec(ctx, `UPDATE s_usage_reports SET acknowledged = ? WHERE sequence <= ? AND acknowledged IS NULL`, toNanos(at), upTo)
	return s.dbErr(err, "acknowledge usage reports")
}

// UnsentUsageReports returns the newest n report files not acknowledged,
// oldest first.
func (s *Site) UnsentUsageReports(ctx context.Context, n int) ([][]byte, error) {
	rows, err := s.conn().query(ctx, `SELECT file FROM s_usage_reports WHERE acknowledged IS NULL ORDER BY sequence DESC LIMIT ?`, n)
	if err != nil {
		return nil, s.dbErr(err, "read recent usage reports")
	}
	defer rows.Close()
	var files [][]byte
	for rows.Next() {
		var f []byte
		if err := rows.Scan(&f); err != nil {
			return nil, s.dbErr(err, "read recent usage reports")
		}
		files = append(files, f)
	}
	if err := rows.Err(); err != nil {
		return nil, s.dbErr(err, "read recent usage reports")
	}
	slices.Reverse(files)
	return files, nil
}

const usageCols = `site_id, hash, sequence, previous, received, licenses, flags, file`

func scanUsage(sc interface{ Scan(...any) error }) (*clearinghouse.UsageRecord, error) {
	var r clearinghouse.UsageRecord
	var hash, prev []byte
	var received int64
	var flags string
	if err := sc.Scan(&r.SiteID, &hash, &r.Sequence, &prev, &received, &r.Licenses, &flags, &r.File); err != nil {
		return nil, err
	}
	r.Hash, r.Previous, r.Received = string(hash), string(prev), fromNanos(received)
	return &r, fromJSON(flags, &r.Flags)
}

// UsageReport returns the site's report with the given hash.
func (v *Vendor) UsageReport(ctx context.Context, siteID, hash string) (*clearinghouse.UsageRecord, error) {
	r, err := scanUsage(v.conn().row(ctx, `SELECT `+usageCols+` FROM v_usage_reports WHERE site_id = ? AND hash = ?`, siteID, []byte(hash)))
	if err != nil {
		return nil, v.scanErr(err, "usage report", hash)
	}
	return r, nil
}

// RecordUsageReport stores a received report.
func (v *Vendor) RecordUsageReport(ctx context.Context, r *clearinghouse.UsageRecord) error {
	_, err := v.conn().exec(ctx, `INSERT INTO v_usage_reports (`+usageCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.SiteID, []byte(r.Hash), r.Sequence, []byte(r.Previous), toNanos(r.Received), r.Licenses, toJSON(r.Flags), nonNilBytes(r.File))
	if v.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "usage report %.16s of site %s is recorded already", r.Hash, r.SiteID)
	}
	return v.dbErr(err, "record usage report")
}

// UsageReports lists received reports, oldest first.
func (v *Vendor) UsageReports(ctx context.Context, siteID string) ([]*clearinghouse.UsageRecord, error) {
	return list(ctx, v.conn(), "list usage reports", scanUsage, `SELECT `+usageCols+` FROM v_usage_reports
		WHERE (? = '' OR site_id = ?) ORDER BY received, sequence`, siteID, siteID)
}

// SitePacks lists the packs issued to a site.
func (v *Vendor) SitePacks(ctx context.Context, siteID string) ([]*clearinghouse.IssuedPack, error) {
	return list(ctx, v.conn(), "list packs of site "+siteID, func(sc interface{ Scan(...any) error }) (*clearinghouse.IssuedPack, error) {
		var p clearinghouse.IssuedPack
		var issued int64
		if err := sc.Scan(&p.PackID, &p.OrderID, &p.SiteID, &p.BeginSerial, &p.Quantity, &issued); err != nil {
			return nil, err
		}
		p.Issued = fromNanos(issued)
		return &p, nil
	}, `SELECT pack_id, order_id, site_id, begin_serial, quantity, issued FROM v_packs WHERE site_id = ? ORDER BY issued`, siteID)
}
