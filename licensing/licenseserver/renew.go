package licenseserver

import (
	"context"

	"github.com/licet/licet/licensing/pack"
)

// RenewalFile makes what the vendor renews the site's certificate against
// (docs/formats.md, section 8.7): the site's next signed usage report
// (recorded, so that the chain continues from it) and a renewal request
// naming it, signed by the site key, as a JSON renewal file. It works with
// an expired certificate too: the site key still proves the site.
func (s *Server) RenewalFile(ctx context.Context) ([]byte, *pack.UsageReport, error) {
	report, r, hash, err := s.signedUsageReport(ctx)
	if err != nil {
		return nil, nil, err
	}
	file, err := pack.NewRenewalFile(s.ID.Signer, s.ID.Chain[:len(s.ID.Chain)-1], report, hash, s.Now())
	if err != nil {
		return nil, nil, err
	}
	return file, r, nil
}
