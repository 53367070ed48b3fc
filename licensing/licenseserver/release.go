package licenseserver

import (
	"context"

	"github.com/licet/licet/errs"
)

// ReleasedSystemID is the system ID of an assignment the administrator
// released (ReleaseLicense): no client can send it (checkSystemID refuses
// '!'), and the next grant request of the license's client, from whatever
// system, takes the license over with a new certificate naming its system.
const ReleasedSystemID = "!released"

// LicenseReleaser is an optional capability of a Store: freeing a license
// from the machine it was granted to.
type LicenseReleaser interface {
	// ReleaseLicense marks the current license licenseID as released: its
	// system ID becomes ReleasedSystemID and its certificate is dropped, so
	// that the client's next grant, from any system, gets the same seat and
	// license ID in a license naming the new system. NotFound if no current
	// license has that ID.
	ReleaseLicense(ctx context.Context, licenseID int64) (*Assignment, error)
}

// ReleaseLicense frees license licenseID from the machine it was granted to,
// for a client that moved to other hardware: a license stays on its machine
// (the site refuses to reissue it to another system ID) until the
// administrator releases it. The old certificate stays valid until it ends:
// licet has no revocation of single licenses.
func (s *Server) ReleaseLicense(ctx context.Context, licenseID int64) (*Assignment, error) {
	r, ok := s.Store.(LicenseReleaser)
	if !ok {
		return nil, errs.E(errs.Internal, "this store cannot release licenses")
	}
	return r.ReleaseLicense(ctx, licenseID)
}
