// Package pki is licet's certificate hierarchy. The vendor root (a
// self-signed Ed25519 CA, kept offline) certifies the clearinghouse key that
// signs license packs and the online issuing CA that certifies the license
// servers (sites) of customers; a site's certificate is itself a CA, so that
// client licenses (X.509 certificates) chain to the root:
// root → issuing → site → license. Sites certified by the root directly (before
// the issuing CA existed) stay valid. The root also certifies the online
// provisioning CA (devices, packets) and the distribution key that anchors
// software update metadata (VerifyDistribution).
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
	// RoleIssuing is the vendor's online CA: certified by the root, it
	// certifies sites, so that the root key can be kept offline.
	RoleIssuing = "issuing"
)

// Validity periods of the certificates licet issues. SiteValidity is the
// default life of a site certificate; the vendor chooses another between
// MinSiteValidity and MaxSiteValidity ('licet vendor serve --site-validity'),
// and sites renew theirs before it ends ('licet site renew').
const (
	RootValidity          = 20 * 365 * 24 * time.Hour
	ClearinghouseValidity = 5 * 365 * 24 * time.Hour
	SiteValidity          = 365 * 24 * time.Hour
	MinSiteValidity       = time.Hour
	MaxSiteValidity       = 5 * 365 * 24 * time.Hour
	IssuingValidity       = 10 * 365 * 24 * time.Hour
)

// CheckSiteValidity returns a Usage error naming the bounds if d is not a
// site certificate life the vendor may choose.
func CheckSiteValidity(d time.Duration) error {
	if d < MinSiteValidity || d > MaxSiteValidity {
		return errs.E(errs.Usage, "--site-validity %s is out of range: give %s to %s (e.g. 8760h, one year)", d, MinSiteValidity, MaxSiteValidity)
	}
	return nil
}

// RootPathLen is the path length of the roots licet makes: a root may have
// two CAs below it, the issuing CA and the site (which issues licenses).
// Roots made before the issuing CA existed have path length 1; see
// CanHoldIssuing.
const RootPathLen = 2

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
		MaxPathLen:            RootPathLen,
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
	return a.issueSigner(pub, vendorName, RoleClearinghouse, ClearinghouseValidity, now)
}

// issueSigner certifies pub as a signing key (not a CA) of role, for at most
// validity and never past a's own expiry.
func (a *Authority) issueSigner(pub ed25519.PublicKey, vendorName, role string, validity time.Duration, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: vendorName + " licet " + role, Organization: []string{vendorName}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(validity), a.Cert.NotAfter),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{utf8Ext(OIDRole, role)},
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

// CertifySite issues the certificate of a site for a customer, valid for
// SiteValidity.
func (a *Authority) CertifySite(req *SiteRequest, customerID string, now time.Time) ([]byte, error) {
	return a.CertifySiteFor(req, customerID, now, SiteValidity)
}

// CertifySiteFor issues the certificate of a site for a customer, valid from
// an hour before now for validity (never past a's own expiry).
func (a *Authority) CertifySiteFor(req *SiteRequest, customerID string, now time.Time, validity time.Duration) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: req.Name, SerialNumber: req.SiteID},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(validity), a.Cert.NotAfter),
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
// Clearinghouse (and provisioning) certificates are always issued by the root
// directly, so the rest of chain is not used: a site certificate is a CA (it
// issues client licenses), and accepting it as an intermediate would let a
// site mint itself a clearinghouse certificate and sign its own license packs.
// Site certificates use verifyIssued, which also accepts the issuing CA.
func verifyLeaf(chain [][]byte, root *x509.Certificate, at time.Time, role string) (*x509.Certificate, error) {
	return verifyIssued(chain, root, at, role, "")
}

// verifyIssued is verifyLeaf that also accepts a leaf issued by an
// intermediate of role via, given as chain[1], when that intermediate is a CA
// issued by the root directly and valid at time at. An intermediate of any
// other role (a site above all) is refused, whatever its constraints say.
func verifyIssued(chain [][]byte, root *x509.Certificate, at time.Time, role, via string) (*x509.Certificate, error) {
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
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if via != "" && len(chain) > 1 && !bytes.Equal(leaf.RawIssuer, root.RawSubject) {
		ca, err := verifySubCA(chain[1:], root, at, via)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "%s certificate %q was not issued by this vendor's root or %s CA", role, leaf.Subject.CommonName, via)
		}
		opts.Intermediates = x509.NewCertPool()
		opts.Intermediates.AddCert(ca)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "%s certificate %q was not issued by this vendor's root (fingerprint %s)", role, leaf.Subject.CommonName, Fingerprint(root.Raw)[:16])
	}
	if got := Role(leaf); got != role {
		return nil, errs.E(errs.Invalid, "certificate %q is for role %q, not %q", leaf.Subject.CommonName, got, role)
	}
	return leaf, nil
}

// verifySubCA checks the first certificate of chain as a CA of role that the
// root issued directly (the provisioning and issuing CAs), valid at time at,
// with an Ed25519 key.
func verifySubCA(chain [][]byte, root *x509.Certificate, at time.Time, role string) (*x509.Certificate, error) {
	c, err := verifyLeaf(chain, root, at, role)
	if err != nil {
		return nil, err
	}
	if _, ok := c.PublicKey.(ed25519.PublicKey); !ok {
		return nil, errs.E(errs.Invalid, "%s key is not Ed25519", role)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 || !bytes.Equal(c.RawIssuer, root.RawSubject) {
		return nil, errs.E(errs.Invalid, "%s certificate %q is not a CA issued by the root directly", role, c.Subject.CommonName)
	}
	return c, nil
}

// issueSubCA certifies pub as a CA of role one level below a (the root), with
// path length pathLen: the provisioning CA (0: it certifies devices) and the
// issuing CA (1: it certifies sites, which issue licenses).
func (a *Authority) issueSubCA(pub ed25519.PublicKey, vendorName, role string, pathLen int, validity time.Duration, now time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: vendorName + " licet " + role, Organization: []string{vendorName}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(validity), a.Cert.NotAfter),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{utf8Ext(OIDRole, role)},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Signer.Private())
}

// CanHoldIssuing reports whether root admits an issuing CA below it: the
// issuing CA and the site are two CAs on a license's path, so the root's path
// length must be at least 2 (or unlimited). Roots made by licet before the
// issuing CA existed have path length 1: an issuing CA under them would make
// every license fail RFC 5280 path validation (nginx, Go's crypto/tls).
func CanHoldIssuing(root *x509.Certificate) bool {
	return root.BasicConstraintsValid && (root.MaxPathLen < 0 || (root.MaxPathLen == 0 && !root.MaxPathLenZero) || root.MaxPathLen >= RootPathLen)
}

// IssueIssuing certifies the vendor's online issuing CA, which certifies
// sites in the root's place. a must be the root.
func (a *Authority) IssueIssuing(pub ed25519.PublicKey, vendorName string, now time.Time) ([]byte, error) {
	if Role(a.Cert) != RoleRoot {
		return nil, errs.E(errs.Internal, "the issuing CA is certified by the root, not by %q", Role(a.Cert))
	}
	if !CanHoldIssuing(a.Cert) {
		return nil, errs.E(errs.Invalid, "root %q has path length %d and cannot hold an issuing CA above sites; it was made by an older licet", a.Cert.Subject.CommonName, a.Cert.MaxPathLen)
	}
	return a.issueSubCA(pub, vendorName, RoleIssuing, 1, IssuingValidity, now)
}

// VerifyIssuing checks an issuing CA certificate (first in chain) against the
// vendor root: a CA of role issuing issued by the root directly.
func VerifyIssuing(chain [][]byte, root *x509.Certificate, at time.Time) (*x509.Certificate, error) {
	return verifySubCA(chain, root, at, RoleIssuing)
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

// VerifySite checks a site certificate chain against the vendor root: the
// site certificate first, issued by the root directly (sites certified before
// the issuing CA existed) or by the issuing CA that follows it in chain.
func VerifySite(chain [][]byte, root *x509.Certificate, at time.Time) (*Site, error) {
	leaf, err := verifyIssued(chain, root, at, RoleSite, RoleIssuing)
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
