package pack

import (
	"crypto/sha256"
	"crypto/x509"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// The usage report a site signs about its client assignment table, for the
// vendor (docs/formats.md, section 8.5).
const (
	TypeUsageReport    = "licet.usage-report"
	UsageReportVersion = 1
)

// UsageReport is what a site reports of its licenses: per pack the seats
// it holds and has assigned, and every license it has granted. Reports form
// a hash chain: each names the SHA-256 of the previous report's payload.
type UsageReport struct {
	SiteID   string    `json:"site_id"`
	Created  time.Time `json:"created"`
	Sequence int64     `json:"sequence"` // 1 for the site's first report
	// Previous is the SHA-256 of the payload of report Sequence-1 (empty for
	// the first).
	Previous []byte         `json:"previous"`
	Packs    []UsagePack    `json:"packs"`
	Licenses []UsageLicense `json:"licenses"`
}

// UsagePack is one installed pack in a usage report.
type UsagePack struct {
	PackID            string `json:"pack_id"`
	ProductID         string `json:"product_id"`
	Quantity          int    `json:"quantity"`
	Assigned          int    `json:"assigned"`
	TemporaryCount    int64  `json:"temporary_count"`
	TemporaryAssigned int64  `json:"temporary_assigned"`
}

// UsageLicense is one granted license in a usage report.
type UsageLicense struct {
	LicenseID     int64  `json:"license_id"`
	PackID        string `json:"pack_id"`
	UpgradePackID string `json:"upgrade_pack_id,omitempty"`
	ClientID      string `json:"client_id"`
	SystemID      string `json:"system_id"`
	Temporary     bool   `json:"temporary"`
}

// SignUsageReport signs r with the site key (chain: the site's certificate
// chain without the root) as an armored USAGE REPORT file, and returns the
// SHA-256 of its payload, which the next report names as Previous.
func SignUsageReport(r *UsageReport, site *keys.Signer, chain [][]byte) ([]byte, []byte, error) {
	s, err := envelope.Sign(TypeUsageReport, UsageReportVersion, r, site, chain)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "sign the usage report")
	}
	sum := sha256.Sum256(s.Payload)
	return armor.Encode(armor.Block{Type: armor.TypeUsageReport, Version: UsageReportVersion, Body: s.Marshal()}), sum[:], nil
}

// ReadUsageReport checks an armored usage report: its site certificate
// chains to root at now, the site key signed it, and it names that site. It
// returns the report, the certified site and the SHA-256 of its payload.
func ReadUsageReport(data []byte, root *x509.Certificate, now time.Time) (*UsageReport, *pki.Site, []byte, error) {
	return readUsageReport(data, root, now, 0)
}

// ReadUsageReportGrace is ReadUsageReport that also accepts a report whose
// site certificate expired less than grace ago (checked at its end, as
// SiteCheckTime does): the reports a renewal carries.
func ReadUsageReportGrace(data []byte, root *x509.Certificate, now time.Time, grace time.Duration) (*UsageReport, *pki.Site, []byte, error) {
	return readUsageReport(data, root, now, grace)
}

func readUsageReport(data []byte, root *x509.Certificate, now time.Time, grace time.Duration) (*UsageReport, *pki.Site, []byte, error) {
	s, site, err := openSiteSigned(data, armor.TypeUsageReport, TypeUsageReport, UsageReportVersion, "usage report", root, now, grace)
	if err != nil {
		return nil, nil, nil, err
	}
	var r UsageReport
	if err := s.Decode(&r); err != nil {
		return nil, nil, nil, err
	}
	if r.SiteID != site.SiteID {
		return nil, nil, nil, errs.E(errs.Invalid, "usage report names site %s but is signed by site %s", r.SiteID, site.SiteID)
	}
	if r.Sequence < 1 {
		return nil, nil, nil, errs.E(errs.Invalid, "usage report of site %s has sequence %d; reports are numbered from 1", r.SiteID, r.Sequence)
	}
	sum := sha256.Sum256(s.Payload)
	return &r, site, sum[:], nil
}

// openSiteSigned reads an armored Signed envelope that a site signs (a usage
// report, a renewal request; what names it in errors): of a format version
// this licet reads, signed by the key of a site whose certificate chains to
// root at now, or, with grace above zero, at the end of a certificate that
// expired less than grace ago (SiteCheckTime).
func openSiteSigned(data []byte, armorType, typ string, version int, what string, root *x509.Certificate, now time.Time, grace time.Duration) (*envelope.Signed, *pki.Site, error) {
	blk, err := armor.Decode(data, armorType)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "%s rejected", what)
	}
	if blk.Version > version {
		return nil, nil, errs.E(errs.Invalid, "%s format version %d is not supported (this licet reads up to %d); upgrade licet", what, blk.Version, version)
	}
	s, err := envelope.ParseSigned(blk.Body, typ, version)
	if err != nil {
		return nil, nil, err
	}
	at := now
	if grace > 0 {
		if at, err = SiteCheckTime(s.Certificates, now, grace); err != nil {
			return nil, nil, err
		}
	}
	site, err := pki.VerifySite(s.Certificates, root, at)
	if err != nil {
		return nil, nil, err
	}
	if err := s.Verify(site.PublicKey); err != nil {
		return nil, nil, err
	}
	return s, site, nil
}
