package clearinghouse

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/pack"
)

// What the vendor finds wrong with a usage report (UsageFlag.Kind).
const (
	// FlagDuplicateSerial: a license ID appears twice in the report, or
	// belongs to another client than in the site's previous report: the
	// site issued one serial to two clients (a pack installed in two
	// databases, edited seat columns).
	FlagDuplicateSerial = "duplicate_serial"
	// FlagOverQuantity: more seats or temporary licenses of a pack are in
	// use than the vendor sold.
	FlagOverQuantity = "over_quantity"
	// FlagChainBreak: the report does not continue the site's last report
	// (another sequence, another previous hash): a second database, or a
	// report withheld or rolled back.
	FlagChainBreak = "chain_break"
	// FlagOutsideRange: a license ID outside the serial range of its pack.
	FlagOutsideRange = "outside_range"
	// FlagUnknownPack: a license of a pack the vendor never issued to the site.
	FlagUnknownPack = "unknown_pack"
)

// UsageFlag is one thing wrong with a usage report.
type UsageFlag struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// UsageRecord is a usage report as the vendor received it.
type UsageRecord struct {
	SiteID   string      `json:"site_id"`
	Hash     string      `json:"hash"` // hex SHA-256 of the report's payload
	Sequence int64       `json:"sequence"`
	Previous string      `json:"previous"` // hex; empty for a site's first report
	Received time.Time   `json:"received"`
	Licenses int         `json:"licenses"`
	Flags    []UsageFlag `json:"flags"`
	File     []byte      `json:"-"`
}

// UsageReportStore is an optional capability of a Store: the usage reports
// sites sent, and the packs issued to a site.
type UsageReportStore interface {
	// UsageReport returns the site's report with the given hash (hex);
	// NotFound if none.
	UsageReport(ctx context.Context, siteID, hash string) (*UsageRecord, error)
	// RecordUsageReport stores a report; Conflict if the site's report with
	// that hash is stored already.
	RecordUsageReport(ctx context.Context, r *UsageRecord) error
	// UsageReports lists reports, of one site if siteID is not empty,
	// oldest first.
	UsageReports(ctx context.Context, siteID string) ([]*UsageRecord, error)
	// SitePacks lists the packs issued to a site.
	SitePacks(ctx context.Context, siteID string) ([]*IssuedPack, error)
}

// usageStore returns the store's UsageReportStore capability.
func (s *Service) usageStore() (UsageReportStore, error) {
	us, ok := s.Store.(UsageReportStore)
	if !ok {
		return nil, errs.E(errs.Internal, "this vendor store keeps no usage reports")
	}
	return us, nil
}

// ImportUsageReport checks a site's signed usage report (pack.ReadUsageReport)
// and records it with what is wrong with it: serials issued twice, more
// seats or temporary licenses in use than sold, license IDs outside their
// pack or of packs never sold to the site, and a hash chain that does not
// continue the site's last report. Importing the same report again returns
// the record made the first time. A report is the site's own statement:
// flags are evidence for the vendor, not proof of innocence when absent.
func (s *Service) ImportUsageReport(ctx context.Context, file []byte) (*UsageRecord, error) {
	now := s.Now().UTC()
	rec, _, _, err := s.importUsageReport(ctx, file, now, 0)
	return rec, err
}

// importUsageReport is ImportUsageReport at now that also accepts a report
// signed with a site certificate that expired less than grace ago (a
// renewal's). It also returns the report, and whether this import recorded
// it (false for a report received before).
func (s *Service) importUsageReport(ctx context.Context, file []byte, now time.Time, grace time.Duration) (*UsageRecord, *pack.UsageReport, bool, error) {
	us, err := s.usageStore()
	if err != nil {
		return nil, nil, false, err
	}
	r, site, hash, err := pack.ReadUsageReportGrace(file, s.Root.Cert, now, grace)
	if err != nil {
		return nil, nil, false, err
	}
	if _, err := s.knownSite(ctx, site.SiteID, site.CustomerID, "send usage reports"); err != nil {
		return nil, nil, false, err
	}
	rec := &UsageRecord{SiteID: r.SiteID, Hash: hex.EncodeToString(hash), Sequence: r.Sequence, Previous: hex.EncodeToString(r.Previous),
		Received: now, Licenses: len(r.Licenses), Flags: []UsageFlag{}, File: file}
	if old, err := us.UsageReport(ctx, rec.SiteID, rec.Hash); err == nil {
		return old, r, false, nil
	} else if !errs.Is(err, errs.NotFound) {
		return nil, nil, false, err
	}
	flag := func(kind, format string, args ...any) {
		rec.Flags = append(rec.Flags, UsageFlag{Kind: kind, Message: fmt.Sprintf(format, args...)})
	}

	// The chain: the report must follow one the vendor has (or be the
	// site's first), and no other report may follow that same one (a fork:
	// a second database, or one restored from a backup).
	all, err := us.UsageReports(ctx, rec.SiteID)
	if err != nil {
		return nil, nil, false, err
	}
	var prevRec, latest *UsageRecord
	for _, o := range all {
		if o.Hash == rec.Previous && rec.Previous != "" {
			prevRec = o
		}
		if latest == nil || o.Sequence > latest.Sequence {
			latest = o
		}
	}
	switch {
	case rec.Previous == "" && len(all) > 0:
		flag(FlagChainBreak, "report %d starts a new chain, but the vendor has %d reports of site %s: a second database, or a reset one", r.Sequence, len(all), r.SiteID)
	case rec.Previous == "" && r.Sequence != 1:
		flag(FlagChainBreak, "report %d names no previous report", r.Sequence)
	case rec.Previous != "" && prevRec == nil:
		flag(FlagChainBreak, "report %d follows report %.16s, which the vendor never received from site %s", r.Sequence, rec.Previous, r.SiteID)
	case prevRec != nil && r.Sequence != prevRec.Sequence+1:
		flag(FlagChainBreak, "report %d follows report %d (%.16s): the numbers do not follow", r.Sequence, prevRec.Sequence, prevRec.Hash)
	}
	for _, o := range all {
		if rec.Previous != "" && o.Previous == rec.Previous {
			flag(FlagChainBreak, "report %d (%.16s) already follows the same report as this one: the site's chain forked (a second database, or one restored from a backup)", o.Sequence, o.Hash)
		}
	}
	// Licenses are compared with the report this one follows, or else with
	// the site's newest.
	base := prevRec
	if base == nil {
		base = latest
	}
	var before map[int64]string // license ID -> client in the base report
	if base != nil {
		// Read as it was accepted: a renewal's report may be signed under a
		// certificate that had expired when it was received.
		if prev, _, _, err := pack.ReadUsageReportGrace(base.File, s.Root.Cert, base.Received, pack.RenewalGrace); err == nil {
			before = map[int64]string{}
			for _, l := range prev.Licenses {
				before[l.LicenseID] = l.ClientID
			}
		}
	}

	// Serials issued twice.
	seen := map[int64]string{}
	for _, l := range r.Licenses {
		if c, dup := seen[l.LicenseID]; dup {
			flag(FlagDuplicateSerial, "license %d is listed for client %s and for client %s", l.LicenseID, c, l.ClientID)
			continue
		}
		seen[l.LicenseID] = l.ClientID
		if c, ok := before[l.LicenseID]; ok && c != l.ClientID {
			flag(FlagDuplicateSerial, "license %d was client %s's in report %d and is client %s's now", l.LicenseID, c, base.Sequence, l.ClientID)
		}
	}

	// Against what was sold.
	sold, err := us.SitePacks(ctx, rec.SiteID)
	if err != nil {
		return nil, nil, false, err
	}
	type packUse struct {
		p          *IssuedPack
		temps      int64 // temporary licenses allowed
		seats, tmp int64 // in use
	}
	packs := map[string]*packUse{}
	for _, p := range sold {
		u := &packUse{p: p}
		if o, err := s.Store.Order(ctx, p.OrderID); err == nil {
			count, _ := o.TemporaryAllowance()
			u.temps = int64(count)
		}
		packs[p.PackID] = u
	}
	for _, l := range r.Licenses {
		id := l.PackID
		if l.UpgradePackID != "" {
			id = l.UpgradePackID
		}
		if id == "" && l.Temporary {
			continue // a temporary license from before pack statements: charged to no pack
		}
		u := packs[id]
		if u == nil {
			flag(FlagUnknownPack, "license %d names pack %q, which the vendor never issued to site %s", l.LicenseID, id, r.SiteID)
			continue
		}
		begin, n := u.p.BeginSerial, int64(u.p.Quantity)
		if l.Temporary {
			begin, n = begin+n, u.temps
			u.tmp++
		}
		if l.LicenseID < begin || l.LicenseID >= begin+n {
			flag(FlagOutsideRange, "license %d lies outside pack %s's range for it (%d to %d)", l.LicenseID, id, begin, begin+n-1)
		}
		if l.UpgradePackID != "" && packs[l.PackID] != nil {
			packs[l.PackID].seats++ // the upgraded seat still counts in its seat pack
		}
		if !l.Temporary {
			u.seats++
		}
	}
	for _, p := range r.Packs {
		if u := packs[p.PackID]; u != nil && int64(p.Assigned) > u.seats {
			u.seats = int64(p.Assigned)
		}
	}
	for id, u := range packs {
		if u.seats > int64(u.p.Quantity) {
			flag(FlagOverQuantity, "pack %s has %d seats in use; the vendor sold %d", id, u.seats, u.p.Quantity)
		}
		if u.tmp > u.temps {
			flag(FlagOverQuantity, "pack %s has %d temporary licenses; it allows %d", id, u.tmp, u.temps)
		}
	}
	if err := us.RecordUsageReport(ctx, rec); err != nil {
		if errs.Is(err, errs.Conflict) { // the same report, imported concurrently
			old, err := us.UsageReport(ctx, rec.SiteID, rec.Hash)
			return old, r, false, err
		}
		return nil, nil, false, err
	}
	return rec, r, true, nil
}

// UsageReports lists the usage reports received, of one site if siteID is
// not empty.
func (s *Service) UsageReports(ctx context.Context, siteID string) ([]*UsageRecord, error) {
	us, err := s.usageStore()
	if err != nil {
		return nil, err
	}
	return us.UsageReports(ctx, siteID)
}
