// Package pack defines the two files of the license-pack flow (licensing seed
// Fig. 4): the purchase request a site sends to the vendor, signed by the site's
// certified key, and the license pack the clearinghouse returns, signed by the
// clearinghouse key and encrypted to the site's HPKE key. docs/formats.md
// specifies both.
package pack

import (
	"crypto/x509"
	"slices"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/ids"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Document types and the format versions this code writes and reads.
const (
	TypePurchaseRequest    = "licet.purchase-request"
	TypePack               = "licet.pack"
	PurchaseRequestVersion = 1
	// PackVersion is the newest pack format this code reads. It writes
	// version 1 for seat packs, which every licet reads, and version 2 for
	// upgrade packs, so that a site too old to know upgrades refuses them
	// instead of selling their seats as new licenses.
	PackVersion = 2
)

// formatVersion is the format version p is written with.
func formatVersion(p *Pack) int {
	if p.Upgrade != nil {
		return 2
	}
	return 1
}

// Platforms are the client platform types a pack can be for (licensing seed).
var Platforms = []string{"windows", "non-windows", "legacy", "direct-connect"}

// CheckPlatform returns an Invalid error naming the allowed values if p is not a platform.
func CheckPlatform(p string) error {
	if !slices.Contains(Platforms, p) {
		return errs.E(errs.Invalid, "platform %q is not one of %v", p, Platforms)
	}
	return nil
}

// PurchaseRequest asks the clearinghouse for the pack of one order.
type PurchaseRequest struct {
	RequestID string    `json:"request_id"`
	SiteID    string    `json:"site_id"`
	OrderID   string    `json:"order_id"`
	Created   time.Time `json:"created"`
}

// Product describes the licensed product inside a pack.
type Product struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Pack is the signed content of a license pack (licensing seed Table 1).
type Pack struct {
	PackID       string            `json:"pack_id"`
	OrderID      string            `json:"order_id"`
	SiteID       string            `json:"site_id"`
	CustomerID   string            `json:"customer_id"`
	Issued       time.Time         `json:"issued"`
	FirstActive  *time.Time        `json:"first_active,omitempty"`
	Expires      *time.Time        `json:"expires,omitempty"`
	BeginSerial  int64             `json:"begin_serial"`
	Quantity     int               `json:"quantity"`
	Platform     string            `json:"platform"`
	Product      Product           `json:"product"`
	Features     []string          `json:"features"`
	Descriptions map[string]string `json:"descriptions"`
	Manufacturer string            `json:"manufacturer"`
	ProductData  map[string]string `json:"product_data"`
	// Upgrade, if set, makes this an upgrade pack: each seat exchanges a
	// license of the product for a version in the range for a license of
	// Product.Version, without a new seat (format version 2).
	Upgrade *Upgrade `json:"upgrade,omitempty"`
	// Statement is the JSON of the clearinghouse-signed pack statement
	// (a Signed envelope of type verify.StatementType; see SignStatement),
	// which the site puts into every license of the pack. Packs issued
	// before statements have none.
	Statement []byte `json:"statement,omitempty"`
}

// Upgrade is the range of product versions an upgrade pack upgrades from,
// both ends included (compared with verify.CompareVersions).
type Upgrade struct {
	FromMin string `json:"from_min"`
	FromMax string `json:"from_max"`
}

// Covers reports whether version lies in the range.
func (u *Upgrade) Covers(version string) bool {
	return verify.CompareVersions(version, u.FromMin) >= 0 && verify.CompareVersions(version, u.FromMax) <= 0
}

// Check returns an Invalid error if the range is empty or does not lie below
// (or at) the target version.
func (u *Upgrade) Check(target string) error {
	switch {
	case u.FromMin == "" || u.FromMax == "":
		return errs.E(errs.Invalid, "an upgrade needs the versions it upgrades from: MIN..MAX, e.g. 1.0..1.9")
	case verify.CompareVersions(u.FromMin, u.FromMax) > 0:
		return errs.E(errs.Invalid, "upgrade range %s..%s is empty: the first version is newer than the last", u.FromMin, u.FromMax)
	case verify.CompareVersions(u.FromMax, target) > 0:
		return errs.E(errs.Invalid, "upgrade range %s..%s reaches above the version it upgrades to (%s)", u.FromMin, u.FromMax, target)
	}
	return nil
}

// NewPurchaseRequest writes the armored purchase request for orderID, signed by
// the site key, with the site's certificate chain.
func NewPurchaseRequest(site *keys.Signer, chain [][]byte, orderID string, now time.Time) ([]byte, error) {
	req := PurchaseRequest{RequestID: ids.New("req"), SiteID: pki.SiteID(site.Public()), OrderID: orderID, Created: now.UTC().Truncate(time.Second)}
	s, err := envelope.Sign(TypePurchaseRequest, PurchaseRequestVersion, req, site, chain)
	if err != nil {
		return nil, err
	}
	return armor.Encode(armor.Block{Type: armor.TypePurchaseRequest, Version: PurchaseRequestVersion, Body: s.Marshal()}), nil
}

// ReadPurchaseRequest checks an armored purchase request: its site certificate
// chains to root, the site key signed it, and it names that site.
func ReadPurchaseRequest(data []byte, root *x509.Certificate, now time.Time) (*PurchaseRequest, *pki.Site, error) {
	blk, err := armor.Decode(data, armor.TypePurchaseRequest)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "purchase request rejected")
	}
	if blk.Version > PurchaseRequestVersion {
		return nil, nil, errs.E(errs.Invalid, "purchase request format version %d is not supported (this licet reads up to %d); upgrade licet", blk.Version, PurchaseRequestVersion)
	}
	s, err := envelope.ParseSigned(blk.Body, TypePurchaseRequest, PurchaseRequestVersion)
	if err != nil {
		return nil, nil, err
	}
	site, err := pki.VerifySite(s.Certificates, root, now)
	if err != nil {
		return nil, nil, err
	}
	if err := s.Verify(site.PublicKey); err != nil {
		return nil, nil, err
	}
	var req PurchaseRequest
	if err := s.Decode(&req); err != nil {
		return nil, nil, err
	}
	if req.SiteID != site.SiteID {
		return nil, nil, errs.E(errs.Invalid, "purchase request names site %s but is signed by site %s", req.SiteID, site.SiteID)
	}
	if req.OrderID == "" {
		return nil, nil, errs.E(errs.Invalid, "purchase request names no order")
	}
	return &req, site, nil
}

// Seal signs p with the clearinghouse key (chain: the clearinghouse
// certificate) and encrypts it to the site's HPKE key, giving the armored pack file.
func Seal(p *Pack, clearinghouse *keys.Signer, chain [][]byte, siteHPKE []byte) ([]byte, error) {
	v := formatVersion(p)
	s, err := envelope.Sign(TypePack, v, p, clearinghouse, chain)
	if err != nil {
		return nil, err
	}
	sealed, err := envelope.Seal(TypePack, v, siteHPKE, s.Marshal())
	if err != nil {
		return nil, err
	}
	return armor.Encode(armor.Block{Type: armor.TypeLicensePack, Version: v, Body: sealed.Marshal()}), nil
}

// Open decrypts an armored pack file with the site's key, checks the
// clearinghouse signature against the vendor root, and checks that the pack is
// for this site and not expired.
func Open(data []byte, site *keys.Decrypter, siteID string, root *x509.Certificate, now time.Time) (*Pack, error) {
	blk, err := armor.Decode(data, armor.TypeLicensePack)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "license pack rejected")
	}
	if blk.Version > PackVersion {
		return nil, errs.E(errs.Invalid, "license pack format version %d is not supported (this licet reads up to %d); upgrade licet", blk.Version, PackVersion)
	}
	sealed, err := envelope.ParseSealed(blk.Body, TypePack, PackVersion)
	if err != nil {
		return nil, err
	}
	plain, err := sealed.Open(site)
	if err != nil {
		return nil, err
	}
	s, err := envelope.ParseSigned(plain, TypePack, PackVersion)
	if err != nil {
		return nil, err
	}
	if blk.Version != sealed.Version || sealed.Version != s.Version {
		return nil, errs.E(errs.Invalid, "license pack states format version %d in its armor, %d encrypted and %d signed: the layers were relabelled; ask the vendor for the original file",
			blk.Version, sealed.Version, s.Version)
	}
	chPub, err := pki.VerifyClearinghouse(s.Certificates, root, now)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "license pack is not signed by this vendor's clearinghouse")
	}
	if err := s.Verify(chPub); err != nil {
		return nil, err
	}
	var p Pack
	if err := s.Decode(&p); err != nil {
		return nil, err
	}
	if p.SiteID != siteID {
		return nil, errs.E(errs.Invalid, "license pack %s was issued to site %s, not to this site (%s)", p.PackID, p.SiteID, siteID)
	}
	if p.Expires != nil && !now.Before(*p.Expires) {
		return nil, errs.E(errs.Invalid, "license pack %s expired on %s; ask the vendor for a new one", p.PackID, p.Expires.Format(time.DateOnly))
	}
	if p.Quantity < 1 || p.PackID == "" {
		return nil, errs.E(errs.Invalid, "license pack has no ID or no seats")
	}
	if p.Upgrade != nil && s.Version < 2 {
		// Signatures bind the version (package envelope), so only a pack
		// signed this way by an older clearinghouse can get here.
		return nil, errs.E(errs.Invalid, "license pack %s is an upgrade pack labelled format version %d; upgrade packs are version 2: ask the vendor for the original file", p.PackID, s.Version)
	}
	if p.Upgrade != nil {
		if err := p.Upgrade.Check(p.Product.Version); err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "upgrade pack %s", p.PackID)
		}
	}
	return &p, nil
}
