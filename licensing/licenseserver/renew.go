package licenseserver

import (
	"context"

	"github.com/licet/licet/licensing/pack"
)

// RenewalFile makes what the vendor renews the site's certificate against
// (docs/formats.md, section 8.7): the site's next signed usage report
// (recorded, so that the chain continues from it), its reports before it
// that the vendor has not acknowledged (pack.MaxEarlierReports at most:
// any the vendor missed close the gap),
// and a renewal request naming the new one, signed by the site key, as a
// JSON renewal file. It works with
// an expired certificate too: the site key still proves the site.
func (s *Server) RenewalFile(ctx context.Context) ([]byte, *pack.UsageReport, error) {
	var earlier [][]byte
	if rs, ok := s.Store.(UsageReportStore); ok {
		var err error
		if earlier, err = rs.UnsentUsageReports(ctx, pack.MaxEarlierReports); err != nil {
			return nil, nil, err
		}
	}
	report, r, hash, err := s.signedUsageReport(ctx)
	if err != nil {
		return nil, nil, err
	}
	file, err := pack.NewRenewalFile(s.ID.Signer, s.ID.SiteChain(), report, hash, earlier, s.Now())
	if err != nil {
		return nil, nil, err
	}
	return file, r, nil
}
