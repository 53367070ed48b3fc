package licenseserver

import (
	"context"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/pack"
)

// UsageReportStore is an optional capability of a Store: the site's chain
// of signed usage reports.
type UsageReportStore interface {
	// LastUsageReport returns the sequence number and payload hash of the
	// newest recorded report; 0 and nil if there is none.
	LastUsageReport(ctx context.Context) (int64, []byte, error)
	// RecordUsageReport records report sequence with its payload hash and
	// file; Conflict if a report with that sequence is recorded already.
	RecordUsageReport(ctx context.Context, sequence int64, hash []byte, created time.Time, file []byte) error
	// UnsentUsageReports returns the files of the newest n reports not
	// acknowledged, oldest first (fewer if there are fewer).
	UnsentUsageReports(ctx context.Context, n int) ([][]byte, error)
	// AcknowledgeUsageReports marks the reports up to sequence upTo as
	// received by the vendor at time at (those marked already keep their time).
	AcknowledgeUsageReports(ctx context.Context, upTo int64, at time.Time) error
}

// AcknowledgeUsageReports records that the vendor received the site's usage
// reports up to sequence upTo (it answered an upload or a renewal of
// report upTo: its chain holds every report before): renewals no longer
// carry them.
func (s *Server) AcknowledgeUsageReports(ctx context.Context, upTo int64) error {
	rs, ok := s.Store.(UsageReportStore)
	if !ok {
		return errs.E(errs.Internal, "this store keeps no usage reports")
	}
	return rs.AcknowledgeUsageReports(ctx, upTo, s.Now().UTC())
}

// SignedUsageReport makes the site's next usage report (docs/formats.md,
// section 8.5): every installed pack with its seats and temporary licenses
// issued, every granted license with its client and system, numbered after
// the previous report and naming its hash, signed by the site key. It is
// recorded, so that the next report continues the chain, and returned as
// an armored file for the vendor ('licet vendor report import', or online).
func (s *Server) SignedUsageReport(ctx context.Context) ([]byte, *pack.UsageReport, error) {
	file, r, _, err := s.signedUsageReport(ctx)
	return file, r, err
}

// signedUsageReport is SignedUsageReport that also returns the SHA-256 of
// the report's payload (its hash in the chain).
func (s *Server) signedUsageReport(ctx context.Context) ([]byte, *pack.UsageReport, []byte, error) {
	if err := s.ID.RequireCertified(); err != nil {
		return nil, nil, nil, err
	}
	rs, ok := s.Store.(UsageReportStore)
	if !ok {
		return nil, nil, nil, errs.E(errs.Internal, "this store keeps no usage reports")
	}
	seq, prev, err := rs.LastUsageReport(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	r := &pack.UsageReport{SiteID: s.ID.SiteID, Created: s.Now().UTC().Truncate(time.Second), Sequence: seq + 1, Previous: prev,
		Packs: []pack.UsagePack{}, Licenses: []pack.UsageLicense{}}
	packs, err := s.Store.Packs(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, p := range packs {
		r.Packs = append(r.Packs, pack.UsagePack{PackID: p.PackID, ProductID: p.ProductID, Quantity: p.Quantity, Assigned: p.Assigned,
			TemporaryCount: p.TemporaryCount, TemporaryAssigned: p.TemporaryAssigned})
	}
	as, err := s.Store.Assignments(ctx, AssignmentFilter{})
	if err != nil {
		return nil, nil, nil, err
	}
	temps, err := s.Store.Temporaries(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, a := range append(as, temps...) {
		r.Licenses = append(r.Licenses, pack.UsageLicense{LicenseID: a.LicenseID, PackID: a.PackID, UpgradePackID: a.UpgradePackID,
			ClientID: a.ClientID, SystemID: a.SystemID, Temporary: a.Temporary})
	}
	file, hash, err := pack.SignUsageReport(r, s.ID.Signer, s.ID.SiteChain())
	if err != nil {
		return nil, nil, nil, err
	}
	if err := rs.RecordUsageReport(ctx, r.Sequence, hash, r.Created, file); err != nil {
		return nil, nil, nil, err
	}
	return file, r, hash, nil
}
