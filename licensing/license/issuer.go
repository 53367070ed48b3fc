package license

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Issuer issues the licenses of one site like Issue, byte for byte, but
// without x509.CreateCertificate's verification of every signature it makes
// (an Ed25519 verification costs about twice the signing), and without
// encoding/asn1's reflection: it writes the DER itself around the
// extensions of a reference license that Issue made for the same site.
// NewIssuer checks once, by issuing a license both ways, that the two agree
// and that the signature verifies; if they do not (another Go release
// changed its encoding), the Issuer uses Issue for every license.
type Issuer struct {
	site     *pki.Authority
	fallback bool // use Issue: the self-check failed
	// The DER of the reference license's extensions before the role
	// extension and after the attributes, and of the role extension: the
	// same in every license of the site.
	extsBefore, extsAfter, roleExt []byte
}

// NewIssuer prepares the issuing of licenses by site and checks it (see Issuer).
func NewIssuer(site *pki.Authority) (*Issuer, error) {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "make the key of the reference license")
	}
	nb := site.Cert.NotBefore.Add(time.Minute)
	attrs := verify.Attributes{LicenseID: 1, ProductID: "reference", PackID: "pk_reference", Platform: "non-windows", Features: []string{"a", "b"}}
	ref, err := Issue(site, pub, attrs, nb, site.Cert.NotAfter)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(ref)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the reference license")
	}
	is := &Issuer{site: site}
	attrsAt := -1
	for i, e := range cert.Extensions {
		if e.Id.Equal(verify.OIDLicense) {
			attrsAt = i
		}
	}
	// The template's extensions (role, attributes) follow the standard ones
	// in one run; Issue writes them in that order.
	if attrsAt < 1 || !cert.Extensions[attrsAt-1].Id.Equal(verify.OIDRole) {
		is.fallback = true
		return is, nil
	}
	for i, e := range cert.Extensions {
		der, err := asn1.Marshal(e)
		if err != nil {
			is.fallback = true
			return is, nil
		}
		switch {
		case i < attrsAt-1:
			is.extsBefore = append(is.extsBefore, der...)
		case i == attrsAt-1:
			is.roleExt = der
		case i > attrsAt:
			is.extsAfter = append(is.extsAfter, der...)
		}
	}
	own, err := is.Issue(pub, attrs, nb, site.Cert.NotAfter)
	if err != nil || !bytes.Equal(own, ref) || cert.CheckSignatureFrom(site.Cert) != nil {
		is.fallback = true
	}
	return is, nil
}

// IssueWith returns an Issuer that uses Issue for every license of site.
func IssueWith(site *pki.Authority) *Issuer { return &Issuer{site: site, fallback: true} }

// Fast reports whether the Issuer builds certificates itself (its self-check
// passed) rather than through x509.CreateCertificate.
func (is *Issuer) Fast() bool { return !is.fallback }

// DER pieces of a license that do not depend on the site or the license.
var (
	derVersion3 = []byte{0xa0, 0x03, 0x02, 0x01, 0x02}                                           // [0] EXPLICIT INTEGER 2
	derAlg      = []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}                               // AlgorithmIdentifier Ed25519
	derSPKI     = []byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00} // SPKI Ed25519, up to the key
	derOU       = []byte{0x06, 0x03, 0x55, 0x04, 0x0b}                                           // OID 2.5.4.11
	derCN       = []byte{0x06, 0x03, 0x55, 0x04, 0x03}                                           // OID 2.5.4.3
	derSerial   = []byte{0x06, 0x03, 0x55, 0x04, 0x05}                                           // OID 2.5.4.5
	derOIDStmt  = mustMarshal(verify.OIDPackStatement)
	derOIDAttrs = mustMarshal(verify.OIDLicense)
)

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Issue is license.Issue for the Issuer's site.
func (is *Issuer) Issue(clientPub ed25519.PublicKey, attrs verify.Attributes, notBefore, notAfter time.Time) ([]byte, error) {
	if is.fallback {
		return Issue(is.site, clientPub, attrs, notBefore, notAfter)
	}
	attrs, notAfter, err := check(is.site, clientPub, attrs, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	ext, err := attrs.MarshalExtension()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license")
	}
	subject, ok := appendSubject(nil, attrs.ClientID, attrs.ProductID)
	if !ok { // a product ID that is not PrintableString: encoding/asn1 chooses
		name := pkix.Name{CommonName: attrs.ClientID, SerialNumber: attrs.ClientID, OrganizationalUnit: []string{attrs.ProductID}}
		if subject, err = asn1.Marshal(name.ToRDNSequence()); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "issue license %d", attrs.LicenseID)
		}
	}
	nb, okB := appendTime(nil, notBefore)
	na, okA := appendTime(nil, notAfter)
	if !okB || !okA {
		return Issue(is.site, clientPub, attrs, notBefore, notAfter) // a year outside 0-9999: Issue says why
	}
	serial := appendSerial(nil, attrs.LicenseID)

	// Extensions: the standard ones, role, pack statement (an OCTET STRING
	// in the extension's OCTET STRING), attributes, then the rest.
	stmtExt, stmtLen := 0, 0
	if len(attrs.PackStatement) > 0 {
		stmtLen = tlvLen(len(attrs.PackStatement))
		stmtExt = tlvLen(len(derOIDStmt) + tlvLen(stmtLen))
	}
	attrsExt := tlvLen(len(derOIDAttrs) + tlvLen(len(ext.Value)))
	extsSeq := len(is.extsBefore) + len(is.roleExt) + stmtExt + attrsExt + len(is.extsAfter)
	tbsLen := len(derVersion3) + len(serial) + len(derAlg) + len(is.site.Cert.RawSubject) +
		tlvLen(len(nb)+len(na)) + len(subject) + len(derSPKI) + len(clientPub) + tlvLen(tlvLen(extsSeq))
	certLen := tlvLen(tbsLen) + len(derAlg) + tlvLen(1+ed25519.SignatureSize)
	if certLen > maxDERLen { // lengths appendHeader cannot write: Issue can
		return Issue(is.site, clientPub, attrs, notBefore, notAfter)
	}

	der := make([]byte, 0, tlvLen(certLen))
	der = appendHeader(der, 0x30, certLen)
	tbsAt := len(der)
	der = appendHeader(der, 0x30, tbsLen)
	der = append(der, derVersion3...)
	der = append(der, serial...)
	der = append(der, derAlg...)
	der = append(der, is.site.Cert.RawSubject...)
	der = appendHeader(der, 0x30, len(nb)+len(na))
	der = append(append(der, nb...), na...)
	der = append(der, subject...)
	der = append(append(der, derSPKI...), clientPub...)
	der = appendHeader(der, 0xa3, tlvLen(extsSeq))
	der = appendHeader(der, 0x30, extsSeq)
	der = append(der, is.extsBefore...)
	der = append(der, is.roleExt...)
	if stmtExt > 0 {
		der = appendHeader(der, 0x30, len(derOIDStmt)+tlvLen(stmtLen))
		der = append(der, derOIDStmt...)
		der = appendHeader(der, 0x04, stmtLen)
		der = appendHeader(der, 0x04, len(attrs.PackStatement))
		der = append(der, attrs.PackStatement...)
	}
	der = appendHeader(der, 0x30, len(derOIDAttrs)+tlvLen(len(ext.Value)))
	der = append(der, derOIDAttrs...)
	der = appendHeader(der, 0x04, len(ext.Value))
	der = append(der, ext.Value...)
	der = append(der, is.extsAfter...)
	sig := ed25519.Sign(is.site.Signer.Private(), der[tbsAt:])
	der = append(der, derAlg...)
	der = appendHeader(der, 0x03, 1+len(sig))
	der = append(append(der, 0), sig...)
	if len(der) != cap(der) {
		return nil, errs.E(errs.Internal, "issue license %d: the certificate is %d bytes, %d were computed", attrs.LicenseID, len(der), cap(der))
	}
	return der, nil
}

// maxDERLen is the longest content, in bytes, whose length tlvLen and
// appendHeader write (in three bytes): 16 MiB, far more than a license
// holds; a longer license goes through Issue.
const maxDERLen = 0xffffff

// tlvLen is the length of a DER element whose content is n bytes long
// (n at most maxDERLen).
func tlvLen(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n <= 0xff:
		return 3 + n
	case n <= 0xffff:
		return 4 + n
	default:
		return 5 + n
	}
}

// appendHeader appends the tag and the definite length n (at most
// maxDERLen) of a DER element.
func appendHeader(dst []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, tag, byte(n))
	case n <= 0xff:
		return append(dst, tag, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, tag, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, tag, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendSerial appends the INTEGER of a positive serial number.
func appendSerial(dst []byte, n int64) []byte {
	var b [9]byte
	i := len(b)
	for v := uint64(n); v > 0; v >>= 8 {
		i--
		b[i] = byte(v)
	}
	if b[i]&0x80 != 0 { // a leading 1 bit would make it negative
		i--
		b[i] = 0
	}
	return append(appendHeader(dst, 0x02, len(b)-i), b[i:]...)
}

// appendTime appends t (UTC, whole seconds) as encoding/asn1 writes a
// time.Time: UTCTime from 1950 to 2049, GeneralizedTime otherwise; false
// for a year GeneralizedTime cannot hold.
func appendTime(dst []byte, t time.Time) ([]byte, bool) {
	t = t.UTC()
	year := t.Year()
	two := func(dst []byte, v int) []byte { return append(dst, byte('0'+v/10), byte('0'+v%10)) }
	switch {
	case 1950 <= year && year < 2050:
		dst = appendHeader(dst, 0x17, 13)
		dst = two(dst, year%100)
	case 0 <= year && year <= 9999:
		dst = appendHeader(dst, 0x18, 15)
		dst = two(two(dst, year/100), year%100)
	default:
		return nil, false
	}
	_, month, day := t.Date()
	hour, minute, sec := t.Clock()
	dst = two(two(two(two(two(dst, int(month)), day), hour), minute), sec)
	return append(dst, 'Z'), true
}

// appendSubject appends a license's subject (OU product, CN client ID,
// serialNumber client ID), as encoding/asn1 writes pkix.Name's RDN sequence
// when every value is a PrintableString; false if one is not.
func appendSubject(dst []byte, clientID, product string) ([]byte, bool) {
	if !printable(clientID) || !printable(product) {
		return nil, false
	}
	atv := func(oid []byte, v string) int { return tlvLen(tlvLen(len(oid) + tlvLen(len(v)))) }
	n := atv(derOU, product) + 2*atv(derCN, clientID)
	dst = appendHeader(dst, 0x30, n)
	for _, a := range []struct {
		oid []byte
		v   string
	}{{derOU, product}, {derCN, clientID}, {derSerial, clientID}} {
		seq := len(a.oid) + tlvLen(len(a.v))
		dst = appendHeader(dst, 0x31, tlvLen(seq))
		dst = appendHeader(dst, 0x30, seq)
		dst = append(dst, a.oid...)
		dst = appendHeader(dst, 0x13, len(a.v))
		dst = append(dst, a.v...)
	}
	return dst, true
}

// printable reports whether encoding/asn1 writes s as a PrintableString
// (without '*' and '&', which it admits only when reading).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || '\'' <= b && b <= ')' ||
			'+' <= b && b <= '/' || b == ' ' || b == ':' || b == '=' || b == '?') {
			return false
		}
	}
	return true
}
