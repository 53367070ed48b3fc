package clearinghouse

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/pack"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// This file is the life of a site after its enrollment: the lifetime of its
// certificate, its renewal against its latest usage report, its revocation,
// and the signed list of revoked sites that verifiers take (docs/formats.md,
// sections 8.6 and 8.7; docs/decisions.md, "Site certificates expire").

// DefaultRevocationsValidity is how long a revocation list is current: its
// next update is this long after its issue.
const DefaultRevocationsValidity = 7 * 24 * time.Hour

// MinRevocationsValidity and MaxRevocationsValidity bound how long a
// revocation list may be current: a list is usable until its next update
// (and verify.RevocationGrace), so an old copy handed to a verifier hides
// the revocations made since for at most that long.
const (
	MinRevocationsValidity = time.Hour
	MaxRevocationsValidity = 90 * 24 * time.Hour
)

// RenewalReportMaxAge is how old the usage report a renewal is made against
// (and the renewal request itself) may be when the vendor receives it: a
// file carried by hand has this long to arrive.
const RenewalReportMaxAge = 30 * 24 * time.Hour

// maxRevokeReason bounds a revocation reason, in bytes.
const maxRevokeReason = 200

// siteValidity is the life of the site certificates s issues.
func (s *Service) siteValidity() time.Duration {
	if s.SiteValidity > 0 {
		return s.SiteValidity
	}
	return pki.SiteValidity
}

// withExpiry fills site.Expires from its certificate.
func withExpiry(site *Site) *Site {
	if c, err := x509.ParseCertificate(site.CertDER); err == nil {
		end := c.NotAfter.UTC()
		site.Expires = &end
	}
	return site
}

// Site returns a site with the end of its certificate.
func (s *Service) Site(ctx context.Context, id string) (*Site, error) {
	site, err := s.Store.Site(ctx, id)
	if err != nil {
		return nil, err
	}
	return withExpiry(site), nil
}

// Sites lists the sites, of one customer if customerID is set, with the
// ends of their certificates.
func (s *Service) Sites(ctx context.Context, customerID string) ([]*Site, error) {
	sites, err := s.Store.Sites(ctx, customerID)
	if err != nil {
		return nil, err
	}
	for _, site := range sites {
		withExpiry(site)
	}
	return sites, nil
}

// revokedError is the error a revoked site gets for anything it asks.
func revokedError(site *Site, what string) error {
	return errs.E(errs.Forbidden, "site %s was revoked by the vendor on %s (%s): it cannot %s; contact the vendor",
		site.ID, site.Revoked.UTC().Format(time.DateOnly), site.RevokeReason, what)
}

// knownSite returns the registered, unrevoked site of a request signed by
// site siteID for customerID; what names the request in errors.
func (s *Service) knownSite(ctx context.Context, siteID, customerID, what string) (*Site, error) {
	known, err := s.Store.Site(ctx, siteID)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.Forbidden, "site %s is not registered with this vendor", siteID)
	}
	if err != nil {
		return nil, err
	}
	if known.CustomerID != customerID {
		return nil, errs.E(errs.Forbidden, "site %s is registered for another customer", siteID)
	}
	if known.Revoked != nil {
		return nil, revokedError(known, what)
	}
	return known, nil
}

// refuseRevoked refuses the certification request of a site the vendor
// revoked: its key stays revoked, whatever enrollment code it brings.
func (s *Service) refuseRevoked(ctx context.Context, siteID string) error {
	known, err := s.Store.Site(ctx, siteID)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if known.Revoked != nil {
		return revokedError(known, "be certified again (make a new site key with 'licet site init')")
	}
	return nil
}

// RevokeSite revokes a site for reason: from now on it cannot renew its
// certificate, buy packs or send usage reports, and the revocation list
// names it, so that verifiers given the list refuse its licenses.
// Revocation is final.
func (s *Service) RevokeSite(ctx context.Context, siteID, reason string) (*Site, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil, errs.E(errs.Invalid, "reason: say why the site is revoked (it is shown to the site and in the revocation list)")
	}
	if len(reason) > maxRevokeReason || !utf8.ValidString(reason) || strings.ContainsAny(reason, "\r\n") {
		return nil, errs.E(errs.Invalid, "reason: give one line of text of at most %d bytes", maxRevokeReason)
	}
	if err := s.Store.RevokeSite(ctx, siteID, reason, s.Now().UTC()); err != nil {
		return nil, err
	}
	s.revoked.forget()
	return s.Site(ctx, siteID)
}

// revokedListReuse is how long the public revocation list (GET
// /v1/revoked-sites, which anyone may ask for) is served again instead of
// read and signed anew: each request would otherwise read every site and
// sign. A revocation in this process takes effect at once; one made by
// another vendor server process, within this time.
const revokedListReuse = time.Minute

// revokedCache holds the last signed revocation list of the default
// validity.
type revokedCache struct {
	mu   sync.Mutex
	at   time.Time // when it was made; zero: none
	raw  []byte
	list *verify.Revocations
	gen  uint64 // counts forget calls: a list read before one is not kept
}

// get returns the cached list if it was made less than revokedListReuse
// before now.
func (c *revokedCache) get(now time.Time) ([]byte, *verify.Revocations, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || now.Before(c.at) || now.Sub(c.at) >= revokedListReuse {
		return nil, nil, false
	}
	return c.raw, c.list, true
}

// generation returns the number of forget calls so far; take it before
// reading the sites of a list to put.
func (c *revokedCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps the list made at now from sites read after generation returned
// gen, unless a revocation forgot the cache since: that list may miss it.
func (c *revokedCache) put(now time.Time, gen uint64, raw []byte, list *verify.Revocations) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	c.at, c.raw, c.list = now, raw, list
}

// forget drops the cached list, and any list being made meanwhile.
func (c *revokedCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.raw, c.list = time.Time{}, nil, nil
	c.gen++
}

// Revocations makes the signed list of revoked sites (docs/formats.md,
// section 8.6), current for validFor (0: DefaultRevocationsValidity): the
// JSON of its Signed envelope, signed by the clearinghouse key, and its
// content.
func (s *Service) Revocations(ctx context.Context, validFor time.Duration) ([]byte, *verify.Revocations, error) {
	now := s.Now().UTC().Truncate(time.Second)
	byDefault := validFor <= 0
	gen := s.revoked.generation()
	if byDefault {
		if raw, l, ok := s.revoked.get(now); ok {
			return raw, l, nil
		}
		validFor = s.RevocationsValidity
	}
	if validFor <= 0 {
		validFor = DefaultRevocationsValidity
	}
	sites, err := s.Store.Sites(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	l := &verify.Revocations{Vendor: s.Config.VendorName, Issued: now, NextUpdate: now.Add(validFor), Sites: []verify.RevokedSite{}}
	for _, site := range sites {
		if site.Revoked != nil {
			l.Sites = append(l.Sites, verify.RevokedSite{SiteID: site.ID, CustomerID: site.CustomerID, Revoked: site.Revoked.UTC(), Reason: site.RevokeReason})
		}
	}
	l.Number = int64(len(l.Sites))
	signed, err := envelope.Sign(verify.RevokedSitesType, verify.RevokedSitesVersion, l, s.Clearinghouse, s.ClearinghouseChain)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "sign the revocation list")
	}
	raw := signed.Marshal()
	if byDefault {
		s.revoked.put(now, gen, raw, l)
	}
	return raw, l, nil
}

// Renewal is the answer to a renewal: the new certificate chain and the
// usage report it was made against.
type Renewal struct {
	Chain       [][]byte
	Site        *Site
	UsageReport *UsageRecord
}

// RenewSite answers a site's renewal file (pack.RenewalFile) with a new
// certificate for the same site key, of the vendor's site validity. The
// site must be registered and not revoked; the request must be signed by its
// key (with a certificate still valid or expired less than
// pack.RenewalGrace ago) and recent; the usage report it names must come with
// it, be the site's latest, recent, continue the site's chain and carry no
// flag. The report, and the earlier ones the file carries (imported first,
// so that reports the vendor missed close the chain), are recorded whether
// or not the renewal is granted.
func (s *Service) RenewSite(ctx context.Context, file []byte) (*Renewal, error) {
	now := s.Now().UTC()
	req, site, rf, err := pack.ReadRenewalFile(file, s.Root.Cert, now)
	if err != nil {
		return nil, err
	}
	known, err := s.knownSite(ctx, site.SiteID, site.CustomerID, "renew its certificate")
	if err != nil {
		return nil, err
	}
	if err := recent("renewal request", req.Created, now); err != nil {
		return nil, err
	}
	// Earlier reports first: those the vendor missed (a lost file, a
	// failed upload) continue the chain up to the new one; those it has
	// change nothing. A flag on one this renewal brings (a fork from a
	// second database, say) refuses the renewal like one on the new report.
	var flagged []*UsageRecord
	for i, e := range rf.Earlier {
		erec, _, fresh, err := s.importUsageReport(ctx, []byte(e), now, pack.RenewalGrace)
		if err != nil {
			return nil, errs.Wrap(errs.KindOf(err), err, "earlier usage report %d of the renewal", i+1)
		}
		if erec.SiteID != site.SiteID {
			return nil, errs.E(errs.Invalid, "earlier usage report %d of the renewal is site %s's, not the renewing site's (%s)", i+1, erec.SiteID, site.SiteID)
		}
		if fresh && len(erec.Flags) > 0 {
			flagged = append(flagged, erec)
		}
	}
	rec, report, _, err := s.importUsageReport(ctx, []byte(rf.UsageReport), now, pack.RenewalGrace)
	if err != nil {
		return nil, errs.Wrap(errs.KindOf(err), err, "the usage report of the renewal")
	}
	if report.SiteID != site.SiteID {
		return nil, errs.E(errs.Invalid, "the usage report of the renewal is site %s's, not the renewing site's (%s); make the renewal file again at the renewing site ('licet site renew')", report.SiteID, site.SiteID)
	}
	if hex.EncodeToString(req.UsageReport) != rec.Hash {
		return nil, errs.E(errs.Invalid, "the renewal request names usage report %.16s, but report %.16s came with it; make the renewal file again", hex.EncodeToString(req.UsageReport), rec.Hash)
	}
	if err := recent("usage report", report.Created, now); err != nil {
		return nil, err
	}
	if len(rec.Flags) > 0 {
		flagged = append(flagged, rec)
	}
	if len(flagged) > 0 {
		var msgs []string
		for _, r := range flagged {
			for _, f := range r.Flags {
				msgs = append(msgs, fmt.Sprintf("report %d: %s: %s", r.Sequence, f.Kind, f.Message))
			}
		}
		return nil, errs.E(errs.Forbidden, "site %s cannot renew: the vendor flagged its usage reports (%s); settle it with the vendor",
			site.SiteID, strings.Join(msgs, "; "))
	}
	us, err := s.usageStore()
	if err != nil {
		return nil, err
	}
	all, err := us.UsageReports(ctx, site.SiteID)
	if err != nil {
		return nil, err
	}
	for _, o := range all {
		if o.Sequence > rec.Sequence {
			return nil, errs.E(errs.Conflict, "usage report %d is not site %s's latest: the vendor has report %d; renew against a new report ('licet site renew' makes one)",
				rec.Sequence, site.SiteID, o.Sequence)
		}
	}
	sreq := &pki.SiteRequest{SiteID: site.SiteID, Name: known.Name, PublicKey: site.PublicKey, HPKEKey: site.HPKEKey}
	der, chain, err := s.certifySite(sreq, known.CustomerID, now)
	if err != nil {
		return nil, err
	}
	renewed := &Site{ID: site.SiteID, CustomerID: known.CustomerID, Name: known.Name, CertDER: der, Certified: now}
	if err := s.Store.PutSite(ctx, renewed); err != nil {
		return nil, err
	}
	return &Renewal{Chain: chain, Site: withExpiry(renewed), UsageReport: rec}, nil
}

// recent checks that a document created at created is no older than
// RenewalReportMaxAge and not from the future (beyond five minutes of clock
// difference).
func recent(what string, created, now time.Time) error {
	switch {
	case created.After(now.Add(5 * time.Minute)):
		return errs.E(errs.Invalid, "the %s was made at %s, after the vendor's clock (%s); check the site's clock", what, created.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	case now.Sub(created) > RenewalReportMaxAge:
		return errs.E(errs.Invalid, "the %s was made on %s, more than %d days ago; make a new renewal file ('licet site renew --out FILE')",
			what, created.UTC().Format(time.DateOnly), int(RenewalReportMaxAge/(24*time.Hour)))
	}
	return nil
}
