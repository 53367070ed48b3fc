// Package pki is licet's certificate hierarchy. The vendor root (a
// self-signed Ed25519 CA) certifies the clearinghouse key that signs license
// packs and the license servers (sites) of customers; a site's certificate is
// itself a CA, so that client licenses (X.509 certificates) chain to the root.
//
// licet-specific facts travel in non-critical extensions under the arc
// 1.3.6.1.4.1.58888.1 (provisional, see docs/formats.md): the role of a
// certificate, the HPKE public key of its subject, and the customer it belongs to.
package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
)

// The licet certificate extensions.
var (
	OIDRole     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 1} // UTF8String: Role*
	OIDHPKEKey  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 2} // OCTET STRING: subject's HPKE public key
	OIDCustomer = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 3} // UTF8String: customer ID
)

// Roles a licet certificate can carry.
const (
	RoleRoot          = "root"
	RoleClearinghouse = "clearinghouse"
	RoleSite          = "site"
)

// Validity periods of the certificates licet issues.
const (
	RootValidity          = 20 * 365 * 24 * time.Hour
	ClearinghouseValidity = 5 * 365 * 24 * time.Hour
	SiteValidity          = 5 * 365 * 24 * time.Hour
)

// SiteID derives a site's ID from its Ed25519 public key.
func SiteID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "site-" + hex.EncodeToString(sum[:8])
}

// Fingerprint is the SHA-256 of a certificate's DER, in hex, for people to compare.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func utf8Ext(oid asn1.ObjectIdentifier, s string) pkix.Extension {
	v, _ := asn1.MarshalWithParams(s, "utf8")
	return pkix.Extension{Id: oid, Value: v}
}

func bytesExt(oid asn1.ObjectIdentifier, b []byte) pkix.Extension {
	v, _ := asn1.Marshal(b)
	return pkix.Extension{Id: oid, Value: v}
}

func findExt(exts []pkix.Extension, oid asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range exts {
		if e.Id.Equal(oid) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

func extString(exts []pkix.Extension, oid asn1.ObjectIdentifier) string {
	e, ok := findExt(exts, oid)
	if !ok {
		return ""
	}
	var s string
	if rest, err := asn1.UnmarshalWithParams(e.Value, &s, "utf8"); err != nil || len(rest) > 0 {
		return ""
	}
	return s
}

func extBytes(exts []pkix.Extension, oid asn1.ObjectIdentifier) []byte {
	e, ok := findExt(exts, oid)
	if !ok {
		return nil
	}
	var b []byte
	if rest, err := asn1.Unmarshal(e.Value, &b); err != nil || len(rest) > 0 {
		return nil
	}
	return b
}

// Role returns the licet role a certificate carries, or "".
func Role(c *x509.Certificate) string { return extString(c.Extensions, OIDRole) }

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

// Authority is a certificate together with its private key, able to issue.
type Authority struct {
	Cert   *x509.Certificate
	Signer *keys.Signer
}

// NewRoot makes the vendor's self-signed root certificate for s.
func NewRoot(s *keys.Signer, vendorName string, now time.Time) (*Authority, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: vendorName + " licet root", Organization: []string{vendorName}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(RootValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtraExtensions:       []pkix.Extension{utf8Ext(OIDRole, RoleRoot)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s.Private())
	if err != nil {
		return nil, fmt.Errorf("create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Signer: s}, nil
}

// IssueClearinghouse certifies the clearinghouse key that signs license packs.
func (a *Authority) IssueClearinghouse(pub ed25519.PublicKey, vendorName string, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: vendorName + " licet clearinghouse", Organization: []string{vendorName}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(ClearinghouseValidity), a.Cert.NotAfter),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{utf8Ext(OIDRole, RoleClearinghouse)},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Signer.Private())
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// NewSiteRequest makes a site's certification request: an X.509 CSR signed by
// the site key (proof of possession) that carries the site's HPKE key.
func NewSiteRequest(s *keys.Signer, hpkePub []byte, siteName string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: siteName, SerialNumber: SiteID(s.Public())},
		ExtraExtensions: []pkix.Extension{bytesExt(OIDHPKEKey, hpkePub), utf8Ext(OIDRole, RoleSite)},
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, s.Private())
}

// SiteRequest is a parsed and self-verified site certification request.
type SiteRequest struct {
	SiteID    string
	Name      string
	PublicKey ed25519.PublicKey
	HPKEKey   []byte
}

// ParseSiteRequest parses a CSR made by NewSiteRequest and checks its
// self-signature and contents.
func ParseSiteRequest(der []byte) (*SiteRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "certification request is not a valid X.509 CSR")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "certification request signature does not verify")
	}
	pub, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errs.E(errs.Invalid, "certification request key is not Ed25519")
	}
	hp := extBytes(csr.Extensions, OIDHPKEKey)
	if len(hp) == 0 {
		return nil, errs.E(errs.Invalid, "certification request carries no HPKE key")
	}
	if _, err := keys.SuiteKEM.NewPublicKey(hp); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "certification request HPKE key is not an MLKEM768-X25519 key")
	}
	id := SiteID(pub)
	if csr.Subject.SerialNumber != id {
		return nil, errs.E(errs.Invalid, "certification request names site %q but its key belongs to %q", csr.Subject.SerialNumber, id)
	}
	name := csr.Subject.CommonName
	if name == "" {
		name = id
	}
	return &SiteRequest{SiteID: id, Name: name, PublicKey: pub, HPKEKey: hp}, nil
}

// CertifySite issues the certificate of a site for a customer.
func (a *Authority) CertifySite(req *SiteRequest, customerID string, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: req.Name, SerialNumber: req.SiteID},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(SiteValidity), a.Cert.NotAfter),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{
			utf8Ext(OIDRole, RoleSite),
			bytesExt(OIDHPKEKey, req.HPKEKey),
			utf8Ext(OIDCustomer, customerID),
		},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, a.Cert, req.PublicKey, a.Signer.Private())
}

// Site is a site identity proven by a certificate chain to the vendor root.
type Site struct {
	SiteID     string
	Name       string
	CustomerID string
	PublicKey  ed25519.PublicKey
	HPKEKey    []byte
	Cert       *x509.Certificate
}

// ParseRoot parses and checks a vendor root certificate.
func ParseRoot(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "root certificate is not valid X.509")
	}
	if !c.IsCA || Role(c) != RoleRoot || !bytes.Equal(c.RawIssuer, c.RawSubject) {
		return nil, errs.E(errs.Invalid, "certificate %q is not a licet vendor root", c.Subject.CommonName)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "root certificate self-signature does not verify")
	}
	return c, nil
}

// verifyLeaf parses the first certificate of chain, checks that the root
// itself issued it and that it is valid at time at, and that it carries the
// wanted role.
//
// Clearinghouse and site certificates are always issued by the root directly,
// so the rest of chain is not used: a site certificate is a CA (it issues
// client licenses), and accepting it as an intermediate would let a site mint
// itself a clearinghouse certificate and sign its own license packs.
func verifyLeaf(chain [][]byte, root *x509.Certificate, at time.Time, role string) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, errs.E(errs.Invalid, "no certificate given for the %s", role)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s certificate is not valid X.509", role)
	}
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		return nil, errs.E(errs.Invalid, "%s certificate %q is valid from %s to %s, so not on %s: it has expired or is not valid yet", role, leaf.Subject.CommonName,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s certificate %q was not issued by this vendor's root (fingerprint %s)", role, leaf.Subject.CommonName, Fingerprint(root.Raw)[:16])
	}
	if got := Role(leaf); got != role {
		return nil, errs.E(errs.Invalid, "certificate %q is for role %q, not %q", leaf.Subject.CommonName, got, role)
	}
	return leaf, nil
}

// VerifyClearinghouse checks a clearinghouse certificate chain against the
// vendor root and returns the clearinghouse public key.
func VerifyClearinghouse(chain [][]byte, root *x509.Certificate, at time.Time) (ed25519.PublicKey, error) {
	leaf, err := verifyLeaf(chain, root, at, RoleClearinghouse)
	if err != nil {
		return nil, err
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errs.E(errs.Invalid, "clearinghouse key is not Ed25519")
	}
	return pub, nil
}

// VerifySite checks a site certificate chain against the vendor root.
func VerifySite(chain [][]byte, root *x509.Certificate, at time.Time) (*Site, error) {
	leaf, err := verifyLeaf(chain, root, at, RoleSite)
	if err != nil {
		return nil, err
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errs.E(errs.Invalid, "site key is not Ed25519")
	}
	s := &Site{
		SiteID: SiteID(pub), Name: leaf.Subject.CommonName,
		CustomerID: extString(leaf.Extensions, OIDCustomer),
		PublicKey:  pub, HPKEKey: extBytes(leaf.Extensions, OIDHPKEKey), Cert: leaf,
	}
	if s.CustomerID == "" || len(s.HPKEKey) == 0 || leaf.Subject.SerialNumber != s.SiteID {
		return nil, errs.E(errs.Invalid, "site certificate %q lacks its customer, HPKE key or site ID", s.Name)
	}
	return s, nil
}
