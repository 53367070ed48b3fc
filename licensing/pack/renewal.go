package pack

import (
	"crypto/x509"
	"encoding/json"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// The renewal request a site signs to get a new site certificate
// (docs/formats.md, section 8.7).
const (
	TypeSiteRenewal    = "licet.site-renewal"
	SiteRenewalVersion = 1
)

// RenewalGrace is how long after its certificate expired a site may still
// renew it with the key of that certificate; later, it enrolls anew.
const RenewalGrace = 365 * 24 * time.Hour

// RenewalRequest asks the vendor for a new certificate of the signing site,
// against the usage report it names.
type RenewalRequest struct {
	RequestID string    `json:"request_id"`
	SiteID    string    `json:"site_id"`
	Created   time.Time `json:"created"`
	// UsageReport is the SHA-256 of the payload of the usage report that
	// travels with the request (its hash in the site's chain).
	UsageReport []byte `json:"usage_report"`
}

// MaxEarlierReports is how many of its earlier usage reports a renewal
// file carries (and the vendor reads): reports that a lost file or a failed
// upload kept from the vendor, which it imports first so that the chain
// has no gap.
const MaxEarlierReports = 4

// RenewalFile is what travels to the vendor, online (the body of POST
// /v1/sites/renew) or as a file: the signed renewal request, the usage
// report it names and the site's reports before it, all armored.
type RenewalFile struct {
	Renewal     string `json:"renewal"`      // armored SITE RENEWAL
	UsageReport string `json:"usage_report"` // armored USAGE REPORT
	// Earlier are the site's reports before UsageReport, oldest first (at
	// most MaxEarlierReports).
	Earlier []string `json:"earlier_reports,omitempty"`
}

// NewRenewalFile signs a renewal request naming the usage report (its
// armored file and payload hash) with the site key (chain: the site's
// certificate chain without the root) and returns the JSON renewal file,
// which also carries the earlier reports (oldest first).
func NewRenewalFile(site *keys.Signer, chain [][]byte, report, reportHash []byte, earlier [][]byte, now time.Time) ([]byte, error) {
	req := RenewalRequest{RequestID: ids.New("ren"), SiteID: pki.SiteID(site.Public()), Created: now.UTC().Truncate(time.Second), UsageReport: reportHash}
	s, err := envelope.Sign(TypeSiteRenewal, SiteRenewalVersion, req, site, chain)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "sign the renewal request")
	}
	f := RenewalFile{
		Renewal:     string(armor.Encode(armor.Block{Type: armor.TypeSiteRenewal, Version: SiteRenewalVersion, Body: s.Marshal()})),
		UsageReport: string(report),
	}
	for _, e := range earlier[max(0, len(earlier)-MaxEarlierReports):] {
		f.Earlier = append(f.Earlier, string(e))
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode the renewal file")
	}
	return append(b, '\n'), nil
}

// SiteCheckTime is the time at which to check the certificate chain of a
// site whose leaf is certs[0]: now while the certificate is valid; for one
// that expired less than grace ago, the last second of its validity (the
// site key still proves the site); an Invalid error if it expired longer ago
// or does not parse. It serves the renewal of an expired certificate only.
func SiteCheckTime(certs [][]byte, now time.Time, grace time.Duration) (time.Time, error) {
	if len(certs) == 0 {
		return time.Time{}, errs.E(errs.Invalid, "no site certificate given")
	}
	c, err := x509.ParseCertificate(certs[0])
	if err != nil {
		return time.Time{}, errs.Wrap(errs.Invalid, err, "site certificate is not valid X.509")
	}
	if !now.After(c.NotAfter) {
		return now, nil
	}
	if now.Sub(c.NotAfter) > grace {
		return time.Time{}, errs.E(errs.Forbidden, "the certificate of site %s expired on %s, more than %d days ago: it can no longer be renewed; enroll the site anew ('licet site init' with a new enrollment code)",
			c.Subject.SerialNumber, c.NotAfter.UTC().Format(time.DateOnly), int(grace/(24*time.Hour)))
	}
	return c.NotAfter.Add(-time.Second), nil
}

// ReadRenewalFile checks the renewal request of a renewal file: signed by
// the key of a site whose certificate chains to root (at now, or for a
// certificate that expired less than RenewalGrace ago, at its end), naming
// that site. It returns the request, the site and the file (whose usage
// reports the caller checks).
func ReadRenewalFile(data []byte, root *x509.Certificate, now time.Time) (*RenewalRequest, *pki.Site, *RenewalFile, error) {
	var f RenewalFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, nil, nil, errs.Wrap(errs.Invalid, err, "renewal file is not the JSON 'licet site renew --out' writes")
	}
	if f.Renewal == "" || f.UsageReport == "" {
		return nil, nil, nil, errs.E(errs.Invalid, "renewal file lacks its renewal request or its usage report; make it again with 'licet site renew --out FILE'")
	}
	if len(f.Earlier) > MaxEarlierReports {
		return nil, nil, nil, errs.E(errs.Invalid, "renewal file carries %d earlier usage reports; at most %d are read", len(f.Earlier), MaxEarlierReports)
	}
	s, site, err := openSiteSigned([]byte(f.Renewal), armor.TypeSiteRenewal, TypeSiteRenewal, SiteRenewalVersion, "renewal request", root, now, RenewalGrace)
	if err != nil {
		return nil, nil, nil, err
	}
	var req RenewalRequest
	if err := s.Decode(&req); err != nil {
		return nil, nil, nil, err
	}
	if req.SiteID != site.SiteID {
		return nil, nil, nil, errs.E(errs.Invalid, "renewal request names site %s but is signed by site %s", req.SiteID, site.SiteID)
	}
	if len(req.UsageReport) == 0 {
		return nil, nil, nil, errs.E(errs.Invalid, "renewal request names no usage report")
	}
	return &req, site, &f, nil
}
