package licenseserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/license"
	"github.com/licet/licet/verify"
)

// Upgraded is the result of an upgrade (licensing seed Fig. 8).
type Upgraded struct {
	Assignment *Assignment
	// Repeated is true when the license had been upgraded already: the same
	// upgraded license is returned and no seat was taken.
	Repeated bool
	// File is the armored LICENSE file of the new license, encrypted to the
	// client's key; only the client can open it.
	File []byte
	// License is the new license chain in PEM (license, then site
	// certificate): the certificates only, no secret, which a gateway checks
	// before letting the client's request through.
	License []byte
}

// Upgrade exchanges a license this site issued, expired or for an older
// product version, for an upgraded one, without a new platform challenge:
// the site's own signature on the presented license is the proof. One seat
// of an upgrade pack is taken and the client's assignment gets the new
// license; asking again with the same old license returns the same new one.
//
// The site API lets only holders of a token of scope upgrade ask (a
// gateway, which first makes the client prove it holds the license's key);
// the new license is bound to the client's key and sealed to it. A token
// bound to a product (auth.FromContext of ctx) upgrades that product's
// licenses only.
func (s *Server) Upgrade(ctx context.Context, licensePEM []byte) (*Upgraded, error) {
	if err := s.ID.CheckCurrent(s.Now()); err != nil {
		return nil, err
	}
	v, err := s.Verifier()
	if err != nil {
		return nil, err
	}
	now := s.Now().UTC()
	// A license of this site from before pack statements may be upgraded
	// (to one with the upgrade pack's statement): the site checks below that
	// it issued the license and that it is the client's current one.
	lic, err := v.Verify(licensePEM, verify.Options{Now: now, AllowExpired: true, AllowUnbound: true})
	if err != nil {
		return nil, errs.Wrap(errs.Forbidden, err, "rejected: the license to upgrade does not verify")
	}
	if pub, ok := lic.Site.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(pub, s.ID.Signer.Public()) {
		return nil, errs.E(errs.Forbidden, "rejected: license %d was issued by license server %s, not by this one (%s); upgrade it where it was issued", lic.LicenseID, lic.SiteID, s.ID.SiteID)
	}
	if tok := auth.FromContext(ctx); tok != nil && !tok.AllowsProduct(lic.ProductID) {
		return nil, errs.E(errs.Forbidden, "rejected: token %s is bound to product %q and may not upgrade license %d of product %q", tok.ID, tok.Product, lic.LicenseID, lic.ProductID)
	}
	if lic.Temporary() {
		return nil, errs.E(errs.Forbidden, "rejected: license %d is a temporary license, which is not upgraded; request a license (POST /v1/licenses) when seats are free", lic.LicenseID)
	}
	a, repeated, err := s.Store.UpgradeSeat(ctx, UpgradeRequest{
		ClientID: lic.ClientID, ProductID: lic.ProductID, Platform: lic.Platform, LicenseID: lic.LicenseID,
		Version: lic.ProductVersion, Expired: !now.Before(lic.NotAfter), Now: now,
	}, s.signLicense)
	if err != nil {
		return nil, err
	}
	chain := s.ID.LicenseChain(a.Cert)
	file, err := SealLicense(chain, a.ClientHPKE)
	if err != nil {
		return nil, err
	}
	return &Upgraded{Assignment: a, Repeated: repeated, File: file, License: license.EncodePEM(chain)}, nil
}

// UpgradeSeatsVersion returns a value that changes when the site's upgrade
// seats change (an upgrade pack installed): a gateway that remembers a
// failed upgrade exchange forgets it then (GET /v1/upgrades/seats).
func (s *Server) UpgradeSeatsVersion(ctx context.Context) (string, error) {
	packs, err := s.Store.Packs(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, p := range packs { // oldest first: the order is stable
		if p.Upgrade != nil {
			fmt.Fprintf(h, "%s %d\n", p.PackID, p.Quantity)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}
