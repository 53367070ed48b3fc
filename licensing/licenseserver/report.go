package licenseserver

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/licet/licet/licensing/pack"
)

// Report summarises a site's seats and licenses for its administrator.
type Report struct {
	Generated time.Time       `json:"generated"`
	Packs     []PackReport    `json:"packs"`
	Products  []ProductReport `json:"products"`
	Expiring  []ExpiringEntry `json:"expiring"` // licenses that end within the window
	Window    string          `json:"expiring_within"`
	// ChallengePools are the challenge pool levels of the processes serving
	// this site (from the status files they write every two seconds).
	ChallengePools []ProcessPools `json:"challenge_pools"`
	// Certificate is the state of the site certificate; nil for a site not
	// certified yet.
	Certificate *CertificateStatus `json:"certificate,omitempty"`
}

// The states of a site certificate (CertificateStatus.State).
const (
	CertValid     = "valid"
	CertRenewSoon = "renew_soon" // ends within RenewBefore
	CertExpired   = "expired"    // the site issues no license until it is renewed
)

// CertificateStatus is the state of the site certificate at a time.
type CertificateStatus struct {
	SiteID   string    `json:"site_id"`
	NotAfter time.Time `json:"not_after"`
	State    string    `json:"state"`
	Message  string    `json:"message"` // what it means and what to do
}

// CertificateStatus returns the state of the site certificate at now; nil
// for a site not certified yet.
func (id *Identity) CertificateStatus(now time.Time) *CertificateStatus {
	if !id.Certified() {
		return nil
	}
	end := id.Site().Cert.NotAfter.UTC()
	st := &CertificateStatus{SiteID: id.SiteID, NotAfter: end, State: CertValid}
	left := end.Sub(now)
	switch {
	case left <= 0:
		st.State = CertExpired
		st.Message = fmt.Sprintf("EXPIRED at %s: the site issues no licenses (they would not verify); renew it with 'licet site renew --data %s' (online) or '--out FILE' (by file); a running 'licet site serve' takes the new certificate within a minute, or at once on SIGHUP",
			end.Format(time.RFC3339), id.Dir)
	case left < RenewBefore:
		st.State = CertRenewSoon
		st.Message = fmt.Sprintf("expires at %s, in %d days: licenses end with it; renew it with 'licet site renew --data %s'", end.Format(time.RFC3339), int(left/(24*time.Hour)), id.Dir)
	default:
		st.Message = fmt.Sprintf("valid until %s (%d days)", end.Format(time.RFC3339), int(left/(24*time.Hour)))
	}
	return st
}

// PackReport is one pack's seats.
type PackReport struct {
	PackID    string     `json:"pack_id"`
	ProductID string     `json:"product_id"`
	Platform  string     `json:"platform"`
	Quantity  int        `json:"quantity"`
	Assigned  int        `json:"assigned"`
	Free      int        `json:"free"`
	Expires   *time.Time `json:"expires,omitempty"`
	// Upgrade is set for an upgrade pack: its seats upgrade licenses of
	// these versions.
	Upgrade *pack.Upgrade `json:"upgrade,omitempty"`
}

// ProductReport adds up a product's seats and licenses over its packs:
// Seats, Assigned and Free count seat packs, the Upgrade* fields upgrade packs.
type ProductReport struct {
	ProductID    string `json:"product_id"`
	Seats        int    `json:"seats"`
	Assigned     int    `json:"assigned"`
	Free         int    `json:"free"`
	UpgradeSeats int    `json:"upgrade_seats"`
	UpgradesUsed int    `json:"upgrades_used"`
	UpgradesFree int    `json:"upgrades_free"`
	Permanent    int    `json:"permanent_licenses"` // upgraded ones included
	Temporary    int    `json:"temporary_licenses"`
	// TemporarySuperseded counts the temporary licenses (among Temporary)
	// whose client or system holds a permanent license of the product now.
	TemporarySuperseded int `json:"temporary_superseded"`
	Upgraded            int `json:"upgraded_licenses"`
}

// ExpiringEntry is a license that ends soon. A temporary license whose
// client or system holds a permanent license of the product now (see
// LicenseEntry.SupersededBy) is not one: it is left out.
type ExpiringEntry struct {
	LicenseID int64     `json:"license_id"`
	ClientID  string    `json:"client_id"`
	ProductID string    `json:"product_id"`
	Expires   time.Time `json:"expires"`
	Temporary bool      `json:"temporary"` // a temporary license: it is not renewed
}

// Report builds the site report; licenses ending within the window are listed.
func (s *Server) Report(ctx context.Context, window time.Duration) (*Report, error) {
	now := s.Now().UTC()
	packs, err := s.Store.Packs(ctx)
	if err != nil {
		return nil, err
	}
	licenses, err := s.Licenses(ctx, LicenseFilter{})
	if err != nil {
		return nil, err
	}
	r := &Report{Generated: now, Window: window.String(), Packs: []PackReport{}, Products: []ProductReport{}, Expiring: []ExpiringEntry{},
		Certificate: s.ID.CertificateStatus(now)}
	byProduct := map[string]*ProductReport{}
	product := func(id string) *ProductReport {
		if p, ok := byProduct[id]; ok {
			return p
		}
		p := &ProductReport{ProductID: id}
		byProduct[id] = p
		return p
	}
	for _, p := range packs {
		r.Packs = append(r.Packs, PackReport{PackID: p.PackID, ProductID: p.ProductID, Platform: p.Platform,
			Quantity: p.Quantity, Assigned: p.Assigned, Free: p.Free(), Expires: p.Expires, Upgrade: p.Upgrade})
		pr := product(p.ProductID)
		if p.Upgrade != nil {
			pr.UpgradeSeats += p.Quantity
			pr.UpgradesUsed += p.Assigned
			pr.UpgradesFree += p.Free()
			continue
		}
		pr.Seats += p.Quantity
		pr.Assigned += p.Assigned
		pr.Free += p.Free()
	}
	for _, l := range licenses {
		pr := product(l.ProductID)
		switch l.Kind {
		case KindTemporary:
			pr.Temporary++
			if l.SupersededBy != 0 {
				pr.TemporarySuperseded++
				continue // its client holds a permanent license now: not ending soon
			}
		case KindUpgraded:
			pr.Permanent++
			pr.Upgraded++
		default:
			pr.Permanent++
		}
		if end := l.NotAfter; end != nil && end.After(now) && end.Before(now.Add(window)) {
			r.Expiring = append(r.Expiring, ExpiringEntry{LicenseID: l.LicenseID, ClientID: l.ClientID, ProductID: l.ProductID,
				Expires: *end, Temporary: l.Temporary})
		}
	}
	for _, p := range byProduct {
		r.Products = append(r.Products, *p)
	}
	sort.Slice(r.Products, func(i, j int) bool { return r.Products[i].ProductID < r.Products[j].ProductID })
	sort.Slice(r.Expiring, func(i, j int) bool { return r.Expiring[i].Expires.Before(r.Expiring[j].Expires) })
	if r.ChallengePools, err = ReadPoolStatus(s.ID.Dir, poolStatusMaxAge); err != nil {
		return nil, err
	}
	return r, nil
}
