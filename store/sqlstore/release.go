package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/licenseserver"
)

// ReleaseLicense marks a current license as released (licenseserver.LicenseReleaser).
func (s *Site) ReleaseLicense(ctx context.Context, licenseID int64) (*licenseserver.Assignment, error) {
	var out *licenseserver.Assignment
	err := s.tx(ctx, func(c conn) error {
		a, err := scanAssignment(c.row(ctx, `SELECT `+assignmentCols+` FROM s_assignments WHERE license_id = ?`, licenseID))
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, "no current license %d at this license server; 'licet site license list' shows them", licenseID)
		}
		if err != nil {
			return s.dbErr(err, "look up license")
		}
		if _, err := c.exec(ctx, `UPDATE s_assignments SET system_id = ?, cert = ? WHERE license_id = ?`, licenseserver.ReleasedSystemID, []byte{}, licenseID); err != nil {
			return s.dbErr(err, "release license")
		}
		a.SystemID, a.Cert, out = licenseserver.ReleasedSystemID, nil, a
		return nil
	})
	return out, err
}
