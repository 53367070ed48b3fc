// Package verify checks licet client licenses offline, with nothing but the
// vendor's root certificate. Vendors embed it in their application; it
// imports the Go standard library only (a test enforces this).
//
// A licet client license is an X.509 certificate (Ed25519) issued to the
// client's Ed25519 key by the certificate of a customer's license server (the
// "site"), which the vendor root certified. The product attributes travel in
// the non-critical extension [OIDLicense]. The license file a client keeps is
// PEM: the license certificate, then the site certificate, each a CERTIFICATE
// block; the same file serves as a TLS client certificate chain for nginx,
// Envoy or Go's crypto/tls.
//
// Typical use, once at start and then per check:
//
//	v, err := verify.New(rootPEM) // the vendor root, shipped with the application
//	if err != nil { ... }
//	lic, err := v.Verify(licensePEM, verify.Options{Product: "acme-cad", ClientKey: myPublicKey})
//	switch {
//	case errors.Is(err, verify.ErrExpired):
//		// ask the license server for a renewed license
//	case err != nil:
//		// refuse to run
//	}
//	fmt.Println(lic.ProductID, lic.Features, lic.NotAfter)
//
// Verify checks that the site certificate chains to the root (cached once
// verified), that the site signed the license, that the license is valid at
// the given time and internally consistent (client ID and license ID), and,
// when asked, that it is for the expected product and bound to the expected
// client key. A Verifier is safe for concurrent use.
package verify

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The licet certificate extensions this package reads. Both are non-critical.
var (
	// OIDRole holds a UTF8String naming the certificate's role: RoleRoot,
	// RoleSite or RoleLicense (licet uses other roles for other certificates).
	OIDRole = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 1}
	// OIDLicense holds an OCTET STRING whose content is the JSON encoding of
	// the license's Attributes.
	OIDLicense = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 4}
)

// Roles, the values of the OIDRole extension.
const (
	RoleRoot    = "root"    // the vendor's self-signed root CA
	RoleSite    = "site"    // a customer's license server, a CA certified by the root or the issuing CA
	RoleLicense = "license" // a client license, issued by a site
	// RoleIssuing is the vendor's online CA, certified by the root, that
	// certifies sites so that the root key can stay offline.
	RoleIssuing = "issuing"
)

// CurrentDataVersion is the data version of the Attributes this package
// writes. Licenses of newer data versions still verify: unknown fields are
// ignored.
const CurrentDataVersion = 1

// Bits of Attributes.Flags.
const (
	// FlagTemporary marks a temporary license, granted while the site had no
	// free seat; it is replaced by a permanent one when seats appear.
	FlagTemporary uint32 = 1 << 0
	// FlagUpgraded marks a license obtained by upgrading an older or expired one.
	FlagUpgraded uint32 = 1 << 1
)

// Attributes are the product attributes of a license, carried as JSON in the
// OIDLicense extension of the license certificate.
type Attributes struct {
	DataVersion    int      `json:"data_version"`        // format version; CurrentDataVersion or newer
	LicenseID      int64    `json:"license_id"`          // serial from the pack's range; also the certificate serial number
	ClientID       string   `json:"client_id"`           // ClientID of the certificate's subject key
	SystemID       string   `json:"system_id,omitempty"` // the client's system, for temporary licenses
	PackID         string   `json:"pack_id"`             // the license pack the seat came from
	ProductID      string   `json:"product_id"`
	ProductVersion string   `json:"product_version"`
	Platform       string   `json:"platform"`
	Features       []string `json:"features"`
	Flags          uint32   `json:"flags"` // FlagTemporary, FlagUpgraded
	// PackStatement is the JSON of the pack statement's Signed envelope,
	// carried in its own extension (OIDPackStatement), not in this JSON.
	PackStatement []byte `json:"-"`
}

// Temporary reports whether FlagTemporary is set.
func (a Attributes) Temporary() bool { return a.Flags&FlagTemporary != 0 }

// Upgraded reports whether FlagUpgraded is set.
func (a Attributes) Upgraded() bool { return a.Flags&FlagUpgraded != 0 }

// HasFeature reports whether the license grants the named feature.
func (a Attributes) HasFeature(name string) bool {
	for _, f := range a.Features {
		if f == name {
			return true
		}
	}
	return false
}

// MarshalExtension encodes a as the OIDLicense certificate extension.
func (a Attributes) MarshalExtension() (pkix.Extension, error) {
	if a.Features == nil {
		a.Features = []string{}
	}
	js, err := json.Marshal(a)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("encode license attributes: %w", err)
	}
	v, err := asn1.Marshal(js)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("encode license attributes: %w", err)
	}
	return pkix.Extension{Id: OIDLicense, Value: v}, nil
}

// ParseAttributes decodes the value of an OIDLicense extension. Unknown JSON
// fields are ignored, so that licenses of newer data versions parse.
func ParseAttributes(extValue []byte) (Attributes, error) {
	var a Attributes
	js, ok := derContent(extValue, 0x04) // OCTET STRING
	if !ok {
		return a, fmt.Errorf("%w: license attributes extension is not a DER OCTET STRING", ErrMalformed)
	}
	if err := json.Unmarshal(js, &a); err != nil {
		return a, fmt.Errorf("%w: license attributes are not valid JSON: %v", ErrMalformed, err)
	}
	switch {
	case a.DataVersion < 1:
		return a, fmt.Errorf("%w: license attributes have data version %d; the first version is 1", ErrMalformed, a.DataVersion)
	case a.LicenseID <= 0:
		return a, fmt.Errorf("%w: license attributes have no license ID", ErrMalformed)
	case a.ClientID == "":
		return a, fmt.Errorf("%w: license attributes have no client ID", ErrMalformed)
	case a.ProductID == "":
		return a, fmt.Errorf("%w: license attributes have no product ID", ErrMalformed)
	}
	return a, nil
}

// ClientID derives a client's ID from its Ed25519 public key: "client-" and
// the first 8 bytes of its SHA-256 in hex.
func ClientID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	var b [7 + 16]byte
	copy(b[:], "client-")
	hex.Encode(b[7:], sum[:8])
	return string(b[:])
}

// The errors Verify returns, wrapped in a message that says what failed and
// what to do. Test for them with errors.Is.
var (
	// ErrMalformed: the license or root is not a well-formed licet certificate.
	ErrMalformed = errors.New("malformed license")
	// ErrUntrustedSite: the license server that issued the license is not
	// certified by this vendor's root.
	ErrUntrustedSite = errors.New("license server not certified by the vendor")
	// ErrBadSignature: a signature does not verify; the license was altered.
	ErrBadSignature = errors.New("bad license signature")
	// ErrExpired: the license (or its site or root certificate) has expired.
	ErrExpired = errors.New("license expired")
	// ErrNotYetValid: the license (or its site or root certificate) is not valid yet.
	ErrNotYetValid = errors.New("license not yet valid")
	// ErrWrongProduct: the license is for another product.
	ErrWrongProduct = errors.New("license is for another product")
	// ErrWrongClient: the license was issued to another client key.
	ErrWrongClient = errors.New("license belongs to another client")
)

// Options tune one verification.
type Options struct {
	// Now is the time at which the license must be valid; zero means time.Now().
	Now time.Time
	// Product, if set, must equal the license's ProductID.
	Product string
	// ClientKey, if set, must equal the license's subject key: the license is
	// bound to the client holding the matching private key.
	ClientKey ed25519.PublicKey
	// AllowExpired accepts a license whose own validity has ended (every other
	// check still applies, the site certificate's validity included). It is
	// for exchanging an expired license for an upgraded one, never for access.
	AllowExpired bool
	// AllowUnbound accepts a license that carries no pack statement (one
	// issued by a license server older than the statements), for a
	// transition until such licenses have been replaced. A license that
	// carries a statement is always checked against it. Without this option
	// a license without a statement fails with ErrNotSold: anything a site
	// signs alone, the vendor cannot tell from a forgery by the site.
	AllowUnbound bool
	// Revocations, if set, is the vendor's list of revoked license servers
	// (ParseRevocations): a license of a listed site fails with
	// ErrRevokedSite, and every license fails with ErrStaleRevocations once
	// the list is out of date (Revocations.Fresh). Nil: no revocation check.
	Revocations *Revocations
}

// License is a verified license.
type License struct {
	Attributes
	NotBefore time.Time         // first instant of validity
	NotAfter  time.Time         // the license is valid strictly before NotAfter
	SiteID    string            // the issuing site (Subject.SerialNumber of its certificate)
	ClientKey ed25519.PublicKey // the client's key the license is bound to
	Raw       []byte            // the license certificate, DER
	Site      *x509.Certificate // the site certificate that issued it
	// Issuing is the vendor's issuing CA certificate that certified the
	// site, or nil for a site the root certified directly.
	Issuing *x509.Certificate
	// CustomerID is the customer the vendor certified the site for (the
	// site certificate's customer extension).
	CustomerID string
	// Statement is the clearinghouse-signed statement of the pack the
	// license came from, which the license was checked against; nil for a
	// license without one, accepted with Options.AllowUnbound.
	Statement *Statement
}

// Certificate parses the license certificate with crypto/x509. Verify reads
// only what it checks, which is several microseconds faster; call this when
// the rest is needed.
func (l *License) Certificate() (*x509.Certificate, error) { return x509.ParseCertificate(l.Raw) }

// Chain returns the DER certificates of the license, license first, then the
// site's and (if the site has one) the issuing CA's, as used for a TLS client
// certificate.
func (l *License) Chain() [][]byte {
	if l.Issuing != nil {
		return [][]byte{l.Raw, l.Site.Raw, l.Issuing.Raw}
	}
	return [][]byte{l.Raw, l.Site.Raw}
}

// DefaultCacheSize is the number of verified site certificates a Verifier keeps.
const DefaultCacheSize = 1024

// Verifier checks licenses against one vendor root. It caches the site
// certificates it has verified against the root. It is safe for concurrent use.
type Verifier struct {
	root    *x509.Certificate
	rootPub ed25519.PublicKey

	mu         sync.Mutex                                 // serialises cache writers
	sites      atomic.Pointer[map[[32]byte]*siteCert]     // copy on write; readers never lock
	statements atomic.Pointer[map[string]*statementEntry] // verified pack statements by their bytes; copy on write
	max        int
}

type siteCert struct {
	cert     *x509.Certificate
	pub      ed25519.PublicKey
	issuing  *x509.Certificate // the issuing CA between root and site, or nil
	customer string            // the customer extension
}

// OIDCustomer holds a UTF8String: the customer a site certificate was
// certified for. Non-critical.
var OIDCustomer = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 3}

// New makes a Verifier for the vendor root certificate given as DER or PEM
// (a CERTIFICATE block). It checks that the
// certificate is a self-signed licet root CA.
func New(rootPEMorDER []byte) (*Verifier, error) {
	der := rootPEMorDER
	if blk, _ := pem.Decode(rootPEMorDER); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: root file holds a %s PEM block, not a CERTIFICATE; give the vendor root certificate", ErrMalformed, blk.Type)
		}
		der = blk.Bytes
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: root is not an X.509 certificate (%v); give the vendor root certificate in PEM or DER", ErrMalformed, err)
	}
	pub, ok := root.PublicKey.(ed25519.PublicKey)
	switch {
	case !ok || root.SignatureAlgorithm != x509.PureEd25519:
		return nil, fmt.Errorf("%w: root certificate %q is not an Ed25519 certificate", ErrMalformed, root.Subject.CommonName)
	case !root.IsCA || !root.BasicConstraintsValid || role(root) != RoleRoot || !bytes.Equal(root.RawIssuer, root.RawSubject):
		return nil, fmt.Errorf("%w: certificate %q is not a licet vendor root (a self-signed CA with role %q); give the vendor root certificate", ErrMalformed, root.Subject.CommonName, RoleRoot)
	case !ed25519.Verify(pub, root.RawTBSCertificate, root.Signature):
		return nil, fmt.Errorf("%w: root certificate %q self-signature does not verify; the file is damaged, get it from the vendor again", ErrBadSignature, root.Subject.CommonName)
	}
	v := &Verifier{root: root, rootPub: pub, max: DefaultCacheSize}
	m := make(map[[32]byte]*siteCert)
	v.sites.Store(&m)
	st := make(map[string]*statementEntry)
	v.statements.Store(&st)
	return v, nil
}

// SetCacheSize sets how many verified site certificates v keeps (at least
// one); the default, DefaultCacheSize, suits any vendor with fewer sites.
func (v *Verifier) SetCacheSize(n int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.max = max(n, 1)
}

// CachedSites returns the number of site certificates in v's cache.
func (v *Verifier) CachedSites() int { return len(*v.sites.Load()) }

// Root returns the vendor root certificate.
func (v *Verifier) Root() *x509.Certificate { return v.root }

// Verify checks a license file: PEM holding the license certificate, then the
// site certificate, then (for a site certified by the vendor's issuing CA)
// the issuing CA certificate, as CERTIFICATE blocks. Further blocks are
// ignored.
func (v *Verifier) Verify(license []byte, opts Options) (*License, error) {
	// The site certificate is decoded into a reused buffer: once cached, its
	// bytes are only hashed, and site copies them when it keeps them.
	buf := scratch.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= 64<<10 { // keep no giant buffer from an odd input
			scratch.Put(buf)
		}
	}()
	chain, n := decodeCerts(license, buf)
	switch n {
	case 0:
		return nil, fmt.Errorf("%w: no CERTIFICATE PEM block found; give the license file as the license server wrote it", ErrMalformed)
	case 1:
		return nil, fmt.Errorf("%w: the license file holds one certificate but needs two (the license, then the site certificate); get the whole file from the license server", ErrMalformed)
	}
	return v.VerifyChain(chain[:n], opts)
}

var (
	pemBegin = []byte("-----BEGIN CERTIFICATE-----")
	pemEnd   = []byte("-----END CERTIFICATE-----")
	scratch  = sync.Pool{New: func() any { return new([]byte) }}
)

// decodeCerts returns the first three CERTIFICATE blocks of a PEM file (the
// license, the site and the issuing CA), the second one decoded into *buf
// (grown as needed). The common case, blocks as
// PEM encoders write them (base64 lines, no headers), is decoded directly,
// several times faster than encoding/pem; anything else falls back to
// pem.Decode.
func decodeCerts(data []byte, buf *[]byte) (chain [3][]byte, n int) {
	rest := data
	for n < 3 {
		i := bytes.Index(rest, pemBegin)
		if i < 0 {
			return chain, n
		}
		rest = rest[i+len(pemBegin):]
		j := bytes.Index(rest, pemEnd)
		if j < 0 {
			break
		}
		body := rest[:j]
		size := base64.StdEncoding.DecodedLen(len(body))
		var der []byte
		if n != 1 {
			der = make([]byte, size)
		} else {
			if cap(*buf) < size {
				*buf = make([]byte, size)
			}
			der = (*buf)[:size]
		}
		m, err := base64.StdEncoding.Decode(der, body) // skips \r and \n
		if err != nil || m == 0 {
			break
		}
		chain[n] = der[:m]
		n++
		rest = rest[j+len(pemEnd):]
	}
	if n >= 2 {
		return chain, n
	}
	// Headers, blanks or something else unusual: let encoding/pem judge.
	chain, n = [3][]byte{}, 0
	rest = data
	for n < 3 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain[n] = blk.Bytes
			n++
		}
	}
	return chain, n
}

// VerifyChain checks a license given as DER certificates: chain[0] is the
// license, chain[1] the certificate of the site that issued it, and, for a
// site certified by the vendor's issuing CA, chain[2] that CA's certificate.
// Further certificates (such as a copy of the root sent by a TLS client) are
// ignored; trust comes from the Verifier's root only.
func (v *Verifier) VerifyChain(chain [][]byte, opts Options) (*License, error) {
	if len(chain) < 2 {
		return nil, fmt.Errorf("%w: %d certificates given, need the license and the site certificate", ErrMalformed, len(chain))
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := validAt(v.root, now, "the vendor root certificate", "update the application to get the vendor's new root"); err != nil {
		return nil, err
	}
	var issuing []byte
	if len(chain) > 2 {
		issuing = chain[2]
	}
	site, err := v.site(chain[1], issuing)
	if err != nil {
		return nil, err
	}
	if site.issuing != nil {
		if err := validAt(site.issuing, now, "the vendor's issuing certificate", "the license server must renew its certificate with the vendor"); err != nil {
			return nil, err
		}
	}
	if err := validAt(site.cert, now, "the certificate of license server "+site.cert.Subject.SerialNumber, "the license server must renew its certificate with the vendor ('licet site renew')"); err != nil {
		return nil, err
	}
	if opts.Revocations != nil {
		if err := opts.Revocations.Check(site.cert.Subject.SerialNumber, now); err != nil {
			return nil, err
		}
	}

	c, err := parseLicenseCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("%w: the license certificate does not parse (%v); get the license file from the license server again", ErrMalformed, err)
	}
	if !bytes.Equal(c.issuer, site.cert.RawSubject) {
		return nil, fmt.Errorf("%w: the license names an issuer other than the license server %s whose certificate came with it; get the license file from the license server again", ErrUntrustedSite, site.cert.Subject.SerialNumber)
	}
	if !ed25519.Verify(site.pub, c.tbs, c.sig) {
		return nil, fmt.Errorf("%w: the license signature does not verify with the key of license server %s; the license was altered, get it from the license server again", ErrBadSignature, site.cert.Subject.SerialNumber)
	}
	// From here on the content is what the site signed.
	if err := checkValidity(c.notBefore, c.notAfter, now, "the license", "ask the license server for a new license"); err != nil &&
		!(opts.AllowExpired && errors.Is(err, ErrExpired)) {
		if errors.Is(err, ErrExpired) && c.attrs != nil {
			if a, aerr := ParseAttributes(c.attrs); aerr == nil && a.Temporary() {
				return nil, fmt.Errorf("%w: temporary license %d of %s expired at %s, it is now %s; temporary licenses are not renewed (a machine gets one per product, "+
					"only while no seat is free): the license server's administrator must free a seat ('licet site license release') or buy more ('licet site pack buy'), "+
					"then a new request gets a permanent license", ErrExpired, a.LicenseID, a.ProductID,
					c.notAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
			}
		}
		return nil, err
	}
	if c.isCA || c.role != RoleLicense {
		return nil, fmt.Errorf("%w: the certificate is not a licet client license (role %q, CA %v)", ErrMalformed, c.role, c.isCA)
	}
	if c.critical {
		return nil, fmt.Errorf("%w: the license carries a critical extension this verifier does not know; update the application", ErrMalformed)
	}
	if c.attrs == nil {
		return nil, fmt.Errorf("%w: the license certificate carries no license attributes", ErrMalformed)
	}
	attrs, err := ParseAttributes(c.attrs)
	if err != nil {
		return nil, err
	}
	if id := ClientID(c.pub); attrs.ClientID != id {
		return nil, fmt.Errorf("%w: the license names client %s but is issued to the key of %s", ErrMalformed, attrs.ClientID, id)
	}
	if c.serial != attrs.LicenseID {
		return nil, fmt.Errorf("%w: license certificate serial %d differs from license ID %d", ErrMalformed, c.serial, attrs.LicenseID)
	}
	if opts.Product != "" && attrs.ProductID != opts.Product {
		return nil, fmt.Errorf("%w: license %d is for product %q, not %q; ask the license server for a license for %q", ErrWrongProduct, attrs.LicenseID, attrs.ProductID, opts.Product, opts.Product)
	}
	if opts.ClientKey != nil && !bytes.Equal(opts.ClientKey, c.pub) {
		return nil, fmt.Errorf("%w: license %d was issued to %s, this client is %s; a license cannot be copied, ask the license server for one", ErrWrongClient, attrs.LicenseID, attrs.ClientID, ClientID(opts.ClientKey))
	}
	var st *Statement
	attrs.PackStatement = c.statement
	switch {
	case c.statement != nil:
		st, err = v.bind(c.statement, &attrs, site.cert.Subject.SerialNumber, c.notBefore, c.notAfter, now)
		if err != nil {
			return nil, err
		}
	case !opts.AllowUnbound:
		return nil, fmt.Errorf("%w: license %d carries no pack statement from the vendor (a license server older than pack statements issued it, or it was made with the site key alone); ask the license server for a new license (it needs packs issued with statements)", ErrNotSold, attrs.LicenseID)
	}
	return &License{
		Statement:  st,
		CustomerID: site.customer,
		Attributes: attrs,
		NotBefore:  c.notBefore,
		NotAfter:   c.notAfter,
		SiteID:     site.cert.Subject.SerialNumber,
		ClientKey:  c.pub,
		Raw:        chain[0],
		Site:       site.cert,
		Issuing:    site.issuing,
	}, nil
}

// site returns the verified site certificate of der, from the cache or by
// checking it against the root, directly or through the issuing CA
// certificate issuing (nil if not given). A cached site certificate needs no
// issuing certificate again: its signature was checked once.
func (v *Verifier) site(der, issuing []byte) (*siteCert, error) {
	key := sha256.Sum256(der)
	if s := (*v.sites.Load())[key]; s != nil {
		return s, nil
	}
	s, err := v.checkSite(bytes.Clone(der), issuing) // the caller may reuse der
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	old := *v.sites.Load()
	if old[key] != nil {
		return s, nil // another goroutine got here first
	}
	m := make(map[[32]byte]*siteCert, len(old)+1)
	for k, e := range old {
		if len(m) >= v.max-1 {
			break // drop an arbitrary rest: map order is unspecified
		}
		m[k] = e
	}
	m[key] = s
	v.sites.Store(&m)
	return s, nil
}

// checkSite checks a site certificate: issued by the root, or by the
// issuing CA certificate issuingDER, which the root issued. Any other issuer
// (another site above all: a site certificate is a CA) is refused.
func (v *Verifier) checkSite(der, issuingDER []byte) (*siteCert, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: the site certificate in the license file does not parse (%v); get the license file from the license server again", ErrMalformed, err)
	}
	issuerPub, issuer := v.rootPub, v.root
	var issuing *x509.Certificate
	if !bytes.Equal(c.RawIssuer, v.root.RawSubject) && issuingDER != nil {
		if issuing, err = v.checkIssuing(issuingDER); err != nil {
			return nil, err
		}
		issuerPub, issuer = issuing.PublicKey.(ed25519.PublicKey), issuing
	}
	if !bytes.Equal(c.RawIssuer, issuer.RawSubject) || c.SignatureAlgorithm != x509.PureEd25519 ||
		!ed25519.Verify(issuerPub, c.RawTBSCertificate, c.Signature) {
		return nil, fmt.Errorf("%w: license server %q (%s) is not certified by vendor root %q; this license comes from a server the vendor does not know, use a license from your organisation's certified license server",
			ErrUntrustedSite, c.Subject.CommonName, c.Subject.SerialNumber, v.root.Subject.CommonName)
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok || !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 ||
		role(c) != RoleSite || len(c.UnhandledCriticalExtensions) > 0 {
		return nil, fmt.Errorf("%w: certificate %q is certified by the vendor but not as a license server (role %q); licenses must be issued by a site certificate",
			ErrUntrustedSite, c.Subject.CommonName, role(c))
	}
	var customer string
	if v, ok := findExt(c.Extensions, OIDCustomer); ok {
		if s, ok := derContent(v, 0x0c); ok { // UTF8String
			customer = string(s)
		}
	}
	return &siteCert{cert: c, pub: pub, issuing: issuing, customer: customer}, nil
}

// checkIssuing checks the vendor's issuing CA certificate: an Ed25519 CA of
// role issuing that the root signed directly.
func (v *Verifier) checkIssuing(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: the issuing certificate in the license file does not parse (%v); get the license file from the license server again", ErrMalformed, err)
	}
	if !bytes.Equal(c.RawIssuer, v.root.RawSubject) || c.SignatureAlgorithm != x509.PureEd25519 ||
		!ed25519.Verify(v.rootPub, c.RawTBSCertificate, c.Signature) {
		return nil, fmt.Errorf("%w: certificate %q that came with the license is not issued by vendor root %q; use a license from your organisation's certified license server",
			ErrUntrustedSite, c.Subject.CommonName, v.root.Subject.CommonName)
	}
	if _, ok := c.PublicKey.(ed25519.PublicKey); !ok || !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 ||
		role(c) != RoleIssuing || len(c.UnhandledCriticalExtensions) > 0 {
		return nil, fmt.Errorf("%w: certificate %q is certified by the vendor but not as its issuing CA (role %q); only the issuing CA certifies license servers",
			ErrUntrustedSite, c.Subject.CommonName, role(c))
	}
	return c, nil
}

func validAt(c *x509.Certificate, now time.Time, what, todo string) error {
	return checkValidity(c.NotBefore, c.NotAfter, now, what, todo)
}

// checkValidity checks notBefore <= now < notAfter.
func checkValidity(notBefore, notAfter, now time.Time, what, todo string) error {
	if now.Before(notBefore) {
		return fmt.Errorf("%w: %s is valid from %s, it is now %s; check the clock, or %s", ErrNotYetValid, what,
			notBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), todo)
	}
	if !now.Before(notAfter) {
		return fmt.Errorf("%w: %s expired at %s, it is now %s; %s", ErrExpired, what,
			notAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), todo)
	}
	return nil
}

func findExt(exts []pkix.Extension, oid asn1.ObjectIdentifier) ([]byte, bool) {
	for i := range exts {
		if exts[i].Id.Equal(oid) {
			return exts[i].Value, true
		}
	}
	return nil, false
}

// role returns the OIDRole extension of c, or "".
func role(c *x509.Certificate) string {
	v, ok := findExt(c.Extensions, OIDRole)
	if !ok {
		return ""
	}
	s, ok := derContent(v, 0x0c) // UTF8String
	if !ok {
		return ""
	}
	return string(s)
}

// derContent returns the content of b if b is exactly one DER element with
// the given (single-byte) tag and a minimally encoded definite length.
func derContent(b []byte, tag byte) ([]byte, bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, false
	}
	n, b := int(b[1]), b[2:]
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(b) < k || b[0] == 0 {
			return nil, false
		}
		n = 0
		for _, x := range b[:k] {
			n = n<<8 | int(x)
		}
		b = b[k:]
		if n < 0x80 {
			return nil, false // not minimal
		}
	}
	if n != len(b) {
		return nil, false
	}
	return b, true
}
