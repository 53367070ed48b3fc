package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// This file reads the vendor's list of revoked license servers (sites),
// docs/formats.md section 8.6: a Signed envelope of type RevokedSitesType,
// signed by the vendor's clearinghouse, that names every site the vendor
// revoked. A verifier given the list (Options.Revocations) refuses every
// license of a listed site, whatever its dates (a revoked site can sign any
// issue time), and refuses to work with a list that is out of date.

// The revocation list's Signed envelope type and the newest format version
// this package reads.
const (
	RevokedSitesType    = "licet.revoked-sites"
	RevokedSitesVersion = 1
)

// RevocationGrace is how long after its NextUpdate a revocation list is
// still used: time for a verifier to fetch the next one through a
// short outage. Past it the list is stale and every check fails with
// ErrStaleRevocations: a verifier that cannot learn of new revocations says
// so instead of passing licenses of sites revoked since.
const RevocationGrace = 24 * time.Hour

// maxIssueSkew is how far in the future a list's issue time may be (clocks
// of vendor and verifier differ).
const maxIssueSkew = 5 * time.Minute

var (
	// ErrRevokedSite: the license server that issued the license was revoked
	// by the vendor (it is on the revocation list the verifier was given).
	ErrRevokedSite = errors.New("license server revoked by the vendor")
	// ErrStaleRevocations: the revocation list given to the verifier is past
	// its next update (and RevocationGrace), or not valid yet.
	ErrStaleRevocations = errors.New("revocation list out of date")
)

// RevokedSite is one entry of the revocation list.
type RevokedSite struct {
	SiteID     string    `json:"site_id"`
	CustomerID string    `json:"customer_id"`
	Revoked    time.Time `json:"revoked"`
	Reason     string    `json:"reason"`
}

// Revocations is the vendor's signed list of revoked license servers.
type Revocations struct {
	Vendor string `json:"vendor"`
	// Number counts the revocations the list holds; a later list never has
	// a smaller one (revocation is final).
	Number     int64         `json:"number"`
	Issued     time.Time     `json:"issued"`
	NextUpdate time.Time     `json:"next_update"` // fetch a newer list by then
	Sites      []RevokedSite `json:"sites"`

	index map[string]*RevokedSite // by site ID; built by ParseRevocations
}

// UsableUntil is the end of the list's use: NextUpdate plus RevocationGrace.
func (l *Revocations) UsableUntil() time.Time { return l.NextUpdate.Add(RevocationGrace) }

// Fresh returns an error wrapping ErrStaleRevocations unless the list may be
// used at now: not issued after now (beyond a few minutes of clock
// difference) and not past UsableUntil.
func (l *Revocations) Fresh(now time.Time) error {
	if l.Issued.After(now.Add(maxIssueSkew)) {
		return fmt.Errorf("%w: the list of revoked license servers was issued at %s, it is now %s; check the clock",
			ErrStaleRevocations, l.Issued.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !now.Before(l.UsableUntil()) {
		return fmt.Errorf("%w: the list of revoked license servers (number %d, issued %s) was due to be replaced at %s and is not used after %s; fetch the current list from the vendor",
			ErrStaleRevocations, l.Number, l.Issued.UTC().Format(time.RFC3339), l.NextUpdate.UTC().Format(time.RFC3339), l.UsableUntil().UTC().Format(time.RFC3339))
	}
	return nil
}

// Lookup returns the list's entry of a site, or nil.
func (l *Revocations) Lookup(siteID string) *RevokedSite {
	if l.index != nil {
		return l.index[siteID]
	}
	for i := range l.Sites {
		if l.Sites[i].SiteID == siteID {
			return &l.Sites[i]
		}
	}
	return nil
}

// Check returns an error wrapping ErrStaleRevocations if the list is not
// usable at now, or one wrapping ErrRevokedSite if it lists siteID.
func (l *Revocations) Check(siteID string, now time.Time) error {
	if err := l.Fresh(now); err != nil {
		return err
	}
	if r := l.Lookup(siteID); r != nil {
		return fmt.Errorf("%w: the vendor revoked license server %s (customer %s) on %s (%s); its licenses are no longer accepted, get a license from a license server in good standing",
			ErrRevokedSite, r.SiteID, r.CustomerID, r.Revoked.UTC().Format(time.DateOnly), r.Reason)
	}
	return nil
}

// MaxRevocationList bounds the size of a revocation list, in bytes: this
// package refuses a longer one, and readers stop reading there.
const MaxRevocationList = 16 << 20

// ParseRevocations checks a revocation list (the JSON of its Signed
// envelope, as the vendor serves it at GET /v1/revoked-sites and 'licet
// vendor site revocations' writes it) against the vendor root at now:
// signed by a clearinghouse certificate the root issued directly and valid
// at now, of format version 1 to RevokedSitesVersion (the version is inside
// the signature), and fresh (Revocations.Fresh).
func (v *Verifier) ParseRevocations(raw []byte, now time.Time) (*Revocations, error) {
	if len(raw) > MaxRevocationList {
		return nil, fmt.Errorf("%w: the revocation list is %d bytes, over the limit of %d", ErrMalformed, len(raw), MaxRevocationList)
	}
	payload, ch, err := v.checkVendorSigned(raw, RevokedSitesType, RevokedSitesVersion, "the revocation list", ErrUntrustedSite)
	if err != nil {
		return nil, err
	}
	if err := validAt(ch, now, "the vendor's clearinghouse certificate "+ch.Subject.CommonName+" that signed the revocation list", "fetch a list the vendor signed with its current clearinghouse certificate"); err != nil {
		return nil, err
	}
	var l Revocations
	if err := json.Unmarshal(payload, &l); err != nil {
		return nil, fmt.Errorf("%w: the signed revocation list is not valid JSON (%v)", ErrMalformed, err)
	}
	if l.Issued.IsZero() || !l.NextUpdate.After(l.Issued) || l.Number < 0 {
		return nil, fmt.Errorf("%w: the signed revocation list lacks its issue time, a next update after it, or a number", ErrMalformed)
	}
	l.index = make(map[string]*RevokedSite, len(l.Sites))
	for i := range l.Sites {
		if l.Sites[i].SiteID == "" {
			return nil, fmt.Errorf("%w: entry %d of the revocation list names no site", ErrMalformed, i)
		}
		l.index[l.Sites[i].SiteID] = &l.Sites[i]
	}
	if err := l.Fresh(now); err != nil {
		return nil, err
	}
	return &l, nil
}
