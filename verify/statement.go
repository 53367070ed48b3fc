package verify

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// This file checks a license against the pack statement it carries: what the
// vendor's clearinghouse signed about the pack the license's seat came from
// (docs/formats.md, section 9.4.1). Everything else in a license is signed by
// the customer's own site key; the statement is what keeps a site from
// licensing a product, feature, serial or time the vendor never sold.

// OIDPackStatement holds an OCTET STRING whose content is the JSON of a
// Signed envelope (docs/formats.md, section 5) of type StatementType: the
// pack statement. Non-critical.
var OIDPackStatement = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 6}

// The pack statement's Signed envelope type and the newest format version
// this package reads.
const (
	StatementType    = "licet.pack-statement"
	StatementVersion = 1
)

// RoleClearinghouse is the role of the vendor's clearinghouse certificate,
// which signs packs and pack statements.
const RoleClearinghouse = "clearinghouse"

// ErrNotSold: the license is not inside a pack the vendor sold (no pack
// statement, or one it does not fit: another product, feature, serial range,
// site or time).
var ErrNotSold = errors.New("license not covered by a pack the vendor sold")

// Statement is the clearinghouse-signed statement of a license pack: what
// the vendor sold to one site. Licenses issued from the pack must lie inside it.
type Statement struct {
	PackID         string     `json:"pack_id"`
	OrderID        string     `json:"order_id"`
	SiteID         string     `json:"site_id"`
	CustomerID     string     `json:"customer_id"`
	Issued         time.Time  `json:"issued"`
	FirstActive    *time.Time `json:"first_active,omitempty"`
	Expires        *time.Time `json:"expires,omitempty"` // absent: the licenses may run to the end of the site certificate
	ProductID      string     `json:"product_id"`
	ProductVersion string     `json:"product_version"`
	Platform       string     `json:"platform"`
	Features       []string   `json:"features"`
	BeginSerial    int64      `json:"begin_serial"` // license IDs BeginSerial … BeginSerial+Quantity-1
	Quantity       int64      `json:"quantity"`
	// Temporary is how many temporary licenses the site may issue under
	// this pack, for how long, with which license IDs; nil: none.
	Temporary *TemporaryAllowance `json:"temporary,omitempty"`
	// Upgrade is set for an upgrade pack: the product versions its seats
	// upgrade from (to ProductVersion); its licenses are upgrades only.
	Upgrade *StatementUpgrade `json:"upgrade,omitempty"`
}

// TemporaryAllowance is the part of a pack statement about temporary licenses.
type TemporaryAllowance struct {
	Count       int64 `json:"count"`        // at most this many temporary licenses
	MaxDays     int   `json:"max_days"`     // each valid for at most this many days
	BeginSerial int64 `json:"begin_serial"` // their license IDs: BeginSerial … BeginSerial+Count-1
}

// StatementUpgrade is the version range of an upgrade pack's statement.
type StatementUpgrade struct {
	FromMin string `json:"from_min"`
	FromMax string `json:"from_max"`
}

// MaxBackdate is how far before its issue a license's validity may start
// (the site backdates licenses for clients with slow clocks); a temporary
// license may last its pack's MaxDays plus this.
const MaxBackdate = 5 * time.Minute

// signedEnvelope is the JSON of a Signed envelope (docs/formats.md, section 5).
type signedEnvelope struct {
	Type       string `json:"type"`
	Version    int    `json:"version"`
	Payload    []byte `json:"payload"`
	Signatures []struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
		Sig []byte `json:"sig"`
	} `json:"signatures"`
	Certificates [][]byte `json:"certificates"`
}

// statementEntry is a verified statement, cached by its bytes.
type statementEntry struct {
	st            *Statement
	chNotBefore   time.Time // the clearinghouse certificate's validity
	chNotAfter    time.Time
	clearinghouse string // its subject CN, for messages
}

// ParseStatement checks a pack statement (the JSON of its Signed envelope)
// against the vendor root at now: signed by a clearinghouse certificate the
// root issued directly, valid at now. It does not check it against a license.
func (v *Verifier) ParseStatement(raw []byte, now time.Time) (*Statement, error) {
	e, err := v.statement(raw)
	if err != nil {
		return nil, err
	}
	if err := checkValidity(e.chNotBefore, e.chNotAfter, now, "the vendor's clearinghouse certificate "+e.clearinghouse, "the license server must install packs the vendor issued with its current clearinghouse certificate"); err != nil {
		return nil, err
	}
	return e.st, nil
}

// statement returns the verified statement of raw, from the cache or by
// checking its signature and clearinghouse certificate.
func (v *Verifier) statement(raw []byte) (*statementEntry, error) {
	if e := (*v.statements.Load())[string(raw)]; e != nil {
		return e, nil
	}
	e, err := v.checkStatement(raw)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	old := *v.statements.Load()
	m := make(map[string]*statementEntry, len(old)+1)
	for k, x := range old {
		if len(m) >= v.max-1 {
			break
		}
		m[k] = x
	}
	m[string(raw)] = e
	v.statements.Store(&m)
	return e, nil
}

func (v *Verifier) checkStatement(raw []byte) (*statementEntry, error) {
	payload, ch, err := v.checkVendorSigned(raw, StatementType, StatementVersion, "the pack statement in the license", ErrNotSold)
	if err != nil {
		return nil, err
	}
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("%w: the signed pack statement is not valid JSON (%v)", ErrMalformed, err)
	}
	if st.PackID == "" || st.SiteID == "" || st.ProductID == "" || st.Quantity < 1 || st.BeginSerial < 1 {
		return nil, fmt.Errorf("%w: the signed pack statement lacks its pack, site, product or serial range", ErrMalformed)
	}
	return &statementEntry{st: &st, chNotBefore: ch.NotBefore, chNotAfter: ch.NotAfter, clearinghouse: ch.Subject.CommonName}, nil
}

// bind checks a license (its attributes and validity, issued by site siteID)
// against its pack statement raw, at now.
func (v *Verifier) bind(raw []byte, a *Attributes, siteID string, notBefore, notAfter, now time.Time) (*Statement, error) {
	st, err := v.ParseStatement(raw, now)
	if err != nil {
		return nil, err
	}
	if err := st.Covers(a, siteID, notBefore, notAfter); err != nil {
		return nil, err
	}
	return st, nil
}

// Covers checks that a license of attributes a, issued by site siteID and
// valid from notBefore to notAfter, lies inside the statement: the pack's
// site, pack, product, version and platform; features a subset of the
// pack's; license ID in the pack's serial range (a temporary license: in the
// temporary range, no longer than the allowed days); not beyond the pack's
// expiry; an upgrade license only from an upgrade pack and the reverse.
// The error wraps ErrNotSold.
func (st *Statement) Covers(a *Attributes, siteID string, notBefore, notAfter time.Time) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: license %d: %s; the vendor sold nothing that covers it, ask your license server for a license of a pack it bought", ErrNotSold, a.LicenseID, fmt.Sprintf(format, args...))
	}
	switch {
	case st.SiteID != siteID:
		return fail("license server %s issued it under pack %s, which the vendor sold to license server %s", siteID, st.PackID, st.SiteID)
	case a.PackID != st.PackID:
		return fail("it names pack %q but carries the statement of pack %s", a.PackID, st.PackID)
	case a.ProductID != st.ProductID:
		return fail("it is for product %q, pack %s was sold for %q", a.ProductID, st.PackID, st.ProductID)
	case a.ProductVersion != st.ProductVersion:
		return fail("it is for version %q, pack %s was sold for version %q", a.ProductVersion, st.PackID, st.ProductVersion)
	case a.Platform != st.Platform:
		return fail("it is for platform %q, pack %s was sold for %q", a.Platform, st.PackID, st.Platform)
	case a.Upgraded() != (st.Upgrade != nil):
		return fail("an upgrade license must come from an upgrade pack and a new license from a seat pack (pack %s)", st.PackID)
	}
	for _, f := range a.Features {
		if !slices.Contains(st.Features, f) {
			return fail("it grants feature %q, pack %s was sold with %q only", f, st.PackID, st.Features)
		}
	}
	if a.Temporary() {
		t := st.Temporary
		if t == nil || t.Count < 1 {
			return fail("it is temporary, pack %s allows no temporary license", st.PackID)
		}
		if a.LicenseID < t.BeginSerial || a.LicenseID-t.BeginSerial >= t.Count {
			return fail("temporary license IDs of pack %s run from %d to %d", st.PackID, t.BeginSerial, t.BeginSerial+t.Count-1)
		}
		if max := time.Duration(t.MaxDays)*24*time.Hour + MaxBackdate; notAfter.Sub(notBefore) > max {
			return fail("it is valid for %s, pack %s allows temporary licenses of %d days", notAfter.Sub(notBefore).Round(time.Minute), st.PackID, t.MaxDays)
		}
	} else if a.LicenseID < st.BeginSerial || a.LicenseID-st.BeginSerial >= st.Quantity {
		return fail("pack %s's license IDs run from %d to %d", st.PackID, st.BeginSerial, st.BeginSerial+st.Quantity-1)
	}
	if st.Expires != nil && notAfter.After(*st.Expires) {
		return fail("it runs to %s, pack %s expires %s", notAfter.UTC().Format(time.RFC3339), st.PackID, st.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkVendorSigned checks a Signed envelope (docs/formats.md, section 5)
// of type typ, format version 1 to maxVersion, signed by a clearinghouse
// certificate that the root issued directly, and returns its payload and
// that certificate (whose validity the caller checks). what names the
// document in messages; notOurs is the error of a document signed by
// anyone else.
func (v *Verifier) checkVendorSigned(raw []byte, typ string, maxVersion int, what string, notOurs error) ([]byte, *x509.Certificate, error) {
	var env signedEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, nil, fmt.Errorf("%w: %s is not a signed envelope (%v)", ErrMalformed, what, err)
	}
	if env.Type != typ || env.Version < 1 || env.Version > maxVersion {
		return nil, nil, fmt.Errorf("%w: %s is a %q version %d, this verifier reads %q up to version %d; update the application",
			ErrMalformed, what, env.Type, env.Version, typ, maxVersion)
	}
	if len(env.Certificates) == 0 {
		return nil, nil, fmt.Errorf("%w: %s carries no clearinghouse certificate", notOurs, what)
	}
	ch, err := x509.ParseCertificate(env.Certificates[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the clearinghouse certificate of %s does not parse (%v)", ErrMalformed, what, err)
	}
	pub, ok := ch.PublicKey.(ed25519.PublicKey)
	if !ok || !bytes.Equal(ch.RawIssuer, v.root.RawSubject) || ch.SignatureAlgorithm != x509.PureEd25519 ||
		!ed25519.Verify(v.rootPub, ch.RawTBSCertificate, ch.Signature) {
		return nil, nil, fmt.Errorf("%w: %s is signed by %q, which vendor root %q did not certify: it does not come from this vendor",
			notOurs, what, ch.Subject.CommonName, v.root.Subject.CommonName)
	}
	if ch.IsCA || role(ch) != RoleClearinghouse || len(ch.UnhandledCriticalExtensions) > 0 {
		return nil, nil, fmt.Errorf("%w: %s is signed by certificate %q of role %q, not by the vendor's clearinghouse",
			notOurs, what, ch.Subject.CommonName, role(ch))
	}
	sum := sha256.Sum256(pub)
	kid := "ed25519:" + hex.EncodeToString(sum[:8])
	msg := signedMessage(env.Type, env.Version, env.Payload)
	signed := false
	for _, s := range env.Signatures {
		if s.KID == kid {
			signed = s.Alg == "ed25519" && ed25519.Verify(pub, msg, s.Sig)
			break
		}
	}
	if !signed {
		return nil, nil, fmt.Errorf("%w: the signature of %s by clearinghouse key %s does not verify: it was altered, or relabelled with another type or version", ErrBadSignature, what, kid)
	}
	return env.Payload, ch, nil
}

// signedMessage is the message a Signed envelope's signature covers
// (docs/formats.md, section 5): for version 1 "licet/v1 signed " || type ||
// 0x00 || payload; for a later version "licet/v2 signed " || type || 0x00 ||
// decimal version || 0x00 || payload. The format version is inside the
// signature either way.
func signedMessage(typ string, version int, payload []byte) []byte {
	msg := make([]byte, 0, 40+len(typ)+len(payload))
	if version == 1 {
		msg = append(msg, "licet/v1 signed "...)
		msg = append(msg, typ...)
		msg = append(msg, 0)
		return append(msg, payload...)
	}
	msg = append(msg, "licet/v2 signed "...)
	msg = append(msg, typ...)
	msg = append(msg, 0)
	msg = strconv.AppendInt(msg, int64(version), 10)
	msg = append(msg, 0)
	return append(msg, payload...)
}
