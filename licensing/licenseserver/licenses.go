package licenseserver

import (
	"cmp"
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"time"

	"github.com/licet/licet/errs"
)

// The kinds of a granted license (LicenseEntry.Kind, LicenseFilter.Kind).
const (
	KindPermanent = "permanent" // the license of a seat of a pack
	KindUpgraded  = "upgraded"  // a seat's license exchanged for a newer version with an upgrade seat
	KindTemporary = "temporary" // the one a machine gets when no seat is free; it lasts a limited time and is not renewed
)

// LicenseKinds are the values LicenseFilter.Kind takes besides "" (all).
var LicenseKinds = []string{KindPermanent, KindTemporary, KindUpgraded}

// LicenseFilter selects granted licenses; empty fields match all.
type LicenseFilter struct {
	// AssignmentFilter selects by client and pack; a temporary license's
	// pack is the one it was charged to.
	AssignmentFilter
	// Kind keeps one kind of license: KindPermanent (every seat's license,
	// upgraded ones included: one per assigned seat), KindUpgraded (only the
	// upgraded ones) or KindTemporary.
	Kind string
}

// LicenseEntry is a granted license as the site's administrator sees it: a
// seat's (from the assignment table) or a temporary one.
type LicenseEntry struct {
	*Assignment
	// Kind is KindPermanent, KindUpgraded or KindTemporary.
	Kind string `json:"kind"`
	// NotAfter is when the license ends (its certificate's end: for a seat,
	// the pack's expiry or the site certificate's end, whichever is first);
	// nil for a seat whose license is not signed yet and whose pack never
	// expires.
	NotAfter *time.Time `json:"not_after,omitempty"`
	// SupersededBy is, for a temporary license, the permanent license of the
	// same product that its client, or another client on its system, holds
	// now (one that has not ended); 0 if none. A superseded temporary license
	// is no longer in use: the client gets the permanent one.
	SupersededBy int64 `json:"superseded_by,omitempty"`
}

// Licenses lists the granted licenses that f selects, seats' and temporary
// ones, by license ID, with their kind, end, and for temporary ones the
// permanent license that superseded them.
func (s *Server) Licenses(ctx context.Context, f LicenseFilter) ([]*LicenseEntry, error) {
	if f.Kind != "" && !slices.Contains(LicenseKinds, f.Kind) {
		return nil, errs.E(errs.Usage, "license kind %q: give one of %s", f.Kind, strings.Join(LicenseKinds, ", "))
	}
	var seats, temps []*Assignment
	var err error
	if f.Kind != KindTemporary {
		if seats, err = s.Store.Assignments(ctx, f.AssignmentFilter); err != nil {
			return nil, err
		}
		if f.Kind == KindUpgraded {
			seats = slices.DeleteFunc(seats, func(a *Assignment) bool { return !a.Upgraded() })
		}
	}
	if f.Kind == "" || f.Kind == KindTemporary {
		if temps, err = s.Store.Temporaries(ctx); err != nil {
			return nil, err
		}
		temps = slices.DeleteFunc(temps, func(a *Assignment) bool {
			return (f.ClientID != "" && a.ClientID != f.ClientID) || (f.PackID != "" && a.PackID != f.PackID)
		})
	}
	holders := seats
	if len(temps) > 0 && (f.Kind != "" || f.ClientID != "" || f.PackID != "") {
		// A temporary license's client or system may hold its seat under
		// another pack or client ID than the filter keeps.
		if holders, err = s.Store.Assignments(ctx, AssignmentFilter{}); err != nil {
			return nil, err
		}
	}
	return licenseEntries(seats, temps, holders, s.Now()), nil
}

// licenseEntries makes the entries of seats and temps, by license ID; a
// temporary license is superseded by a seat of holders, live at now, of the
// same product and of the same client or system.
func licenseEntries(seats, temps, holders []*Assignment, now time.Time) []*LicenseEntry {
	type key struct{ product, holder string }
	live := map[key]int64{}
	for _, a := range holders {
		if a.Expires != nil && !a.Expires.After(now) {
			continue // its pack has expired: the license has ended
		}
		live[key{a.ProductID, "client " + a.ClientID}] = a.LicenseID
		if a.SystemID != ReleasedSystemID {
			live[key{a.ProductID, "system " + a.SystemID}] = a.LicenseID
		}
	}
	out := make([]*LicenseEntry, 0, len(seats)+len(temps))
	for _, a := range seats {
		e := &LicenseEntry{Assignment: a, Kind: KindPermanent, NotAfter: licenseEnd(a)}
		if a.Upgraded() {
			e.Kind = KindUpgraded
		}
		out = append(out, e)
	}
	for _, a := range temps {
		e := &LicenseEntry{Assignment: a, Kind: KindTemporary, NotAfter: licenseEnd(a)}
		if id, ok := live[key{a.ProductID, "client " + a.ClientID}]; ok {
			e.SupersededBy = id
		} else if id, ok := live[key{a.ProductID, "system " + a.SystemID}]; ok {
			e.SupersededBy = id
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *LicenseEntry) int { return cmp.Compare(a.LicenseID, b.LicenseID) })
	return out
}

// licenseEnd is when an assignment's license ends: its certificate's
// NotAfter, or without a certificate the assignment's expiry.
func licenseEnd(a *Assignment) *time.Time {
	if len(a.Cert) > 0 {
		if c, err := x509.ParseCertificate(a.Cert); err == nil {
			end := c.NotAfter.UTC()
			return &end
		}
	}
	if a.Expires == nil {
		return nil
	}
	end := a.Expires.UTC()
	return &end
}
