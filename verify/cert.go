package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/asn1"
	"errors"
	"time"
)

// This file parses license certificates. crypto/x509.ParseCertificate costs
// about as much as a seventh of an Ed25519 verification, so the hot path reads
// only what Verify needs, strictly (DER, Ed25519 only, X.509 v3, no unique
// IDs, no duplicate extensions); License.Certificate gives the full parse on
// demand. Site certificates are parsed with crypto/x509, once, and cached.

// licenseCert is what Verify reads from a license certificate.
type licenseCert struct {
	tbs       []byte // the signed bytes, TBSCertificate with its header
	sig       []byte // the 64-byte Ed25519 signature
	serial    int64
	issuer    []byte // raw issuer Name
	notBefore time.Time
	notAfter  time.Time
	pub       ed25519.PublicKey
	isCA      bool
	role      string
	attrs     []byte // value of the OIDLicense extension, nil if absent
	statement []byte // content of the OIDPackStatement extension, nil if absent
	critical  bool   // an unknown extension is marked critical
}

var (
	errDER        = errors.New("not DER")
	errExtensions = errors.New("bad extensions")
	errSerial     = errors.New("serial number is not a positive 63-bit integer")
	errTime       = errors.New("bad validity time")

	// AlgorithmIdentifier of Ed25519 (RFC 8410): SEQUENCE { OID 1.3.101.112 }.
	algEd25519 = []byte{0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}
	// SubjectPublicKeyInfo of an Ed25519 key, up to the key's 32 bytes.
	spkiEd25519 = []byte{0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00}

	oidRoleDER             = oidContent(OIDRole)
	oidLicenseDER          = oidContent(OIDLicense)
	oidPackStatementDER    = oidContent(OIDPackStatement)
	oidBasicConstraintsDER = []byte{0x55, 0x1d, 0x13} // 2.5.29.19
	oidKeyUsageDER         = []byte{0x55, 0x1d, 0x0f} // 2.5.29.15
	oidExtKeyUsageDER      = []byte{0x55, 0x1d, 0x25} // 2.5.29.37
)

func oidContent(oid asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return b[2:]
}

// DER tags used below.
const (
	tagBoolean     = 0x01
	tagInteger     = 0x02
	tagBitString   = 0x03
	tagOctetString = 0x04
	tagOID         = 0x06
	tagUTF8String  = 0x0c
	tagUTCTime     = 0x17
	tagGenTime     = 0x18
	tagSequence    = 0x30
	tagVersion     = 0xa0 // [0] EXPLICIT
	tagExtensions  = 0xa3 // [3] EXPLICIT
)

// derReader reads DER elements with single-byte tags and minimal definite
// lengths, which is all a certificate uses.
type derReader []byte

// next reads one element and returns its tag, its content and the whole
// element.
func (r *derReader) next() (tag byte, content, full []byte, err error) {
	b := *r
	if len(b) < 2 || b[0]&0x1f == 0x1f {
		return 0, nil, nil, errDER
	}
	tag = b[0]
	n, hdr := int(b[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(b) < 2+k || b[2] == 0 {
			return 0, nil, nil, errDER
		}
		n = 0
		for _, x := range b[2 : 2+k] {
			n = n<<8 | int(x)
		}
		if n < 0x80 {
			return 0, nil, nil, errDER
		}
		hdr += k
	}
	if len(b)-hdr < n {
		return 0, nil, nil, errDER
	}
	*r = b[hdr+n:]
	return tag, b[hdr : hdr+n], b[:hdr+n], nil
}

// read reads one element that must have the given tag.
func (r *derReader) read(want byte) (content, full []byte, err error) {
	tag, content, full, err := r.next()
	if err != nil || tag != want {
		return nil, nil, errDER
	}
	return content, full, nil
}

// peek reports whether the next element has the given tag.
func (r derReader) peek(tag byte) bool { return len(r) > 0 && r[0] == tag }

// parseLicenseCert reads a license certificate.
func parseLicenseCert(der []byte) (*licenseCert, error) {
	c := new(licenseCert)
	in := derReader(der)
	cert, _, err := in.read(tagSequence)
	if err != nil || len(in) != 0 {
		return nil, errors.New("not a DER certificate")
	}
	r := derReader(cert)
	tbsContent, tbs, err1 := r.read(tagSequence)
	_, outerAlg, err2 := r.read(tagSequence)
	sig, _, err3 := r.read(tagBitString)
	if err := errors.Join(err1, err2, err3); err != nil || len(r) != 0 {
		return nil, errors.New("not a DER certificate")
	}
	if !bytes.Equal(outerAlg, algEd25519) {
		return nil, errors.New("not signed with Ed25519")
	}
	if len(sig) != 1+ed25519.SignatureSize || sig[0] != 0 {
		return nil, errors.New("signature is not 64 bytes")
	}
	c.tbs, c.sig = tbs, sig[1:]

	t := derReader(tbsContent)
	version, _, err := t.read(tagVersion)
	if err != nil || !bytes.Equal(version, []byte{tagInteger, 1, 2}) {
		return nil, errors.New("not an X.509 v3 certificate")
	}
	serial, _, err := t.read(tagInteger)
	if err != nil {
		return nil, errors.New("bad serial number")
	}
	if c.serial, err = positiveInt64(serial); err != nil {
		return nil, err
	}
	if _, alg, err := t.read(tagSequence); err != nil || !bytes.Equal(alg, algEd25519) {
		return nil, errors.New("not signed with Ed25519")
	}
	if _, c.issuer, err = t.read(tagSequence); err != nil {
		return nil, errors.New("bad issuer name")
	}
	validity, _, err := t.read(tagSequence)
	if err != nil {
		return nil, errors.New("bad validity")
	}
	v := derReader(validity)
	if c.notBefore, err = readTime(&v); err != nil {
		return nil, err
	}
	if c.notAfter, err = readTime(&v); err != nil {
		return nil, err
	}
	if len(v) != 0 {
		return nil, errors.New("bad validity")
	}
	if _, _, err := t.read(tagSequence); err != nil {
		return nil, errors.New("bad subject name")
	}
	_, spki, err := t.read(tagSequence)
	if err != nil || len(spki) != len(spkiEd25519)+ed25519.PublicKeySize || !bytes.HasPrefix(spki, spkiEd25519) {
		return nil, errors.New("subject key is not Ed25519")
	}
	c.pub = ed25519.PublicKey(spki[len(spkiEd25519):])
	exts, _, err := t.read(tagExtensions)
	if err != nil || len(t) != 0 {
		return nil, errors.New("unexpected fields (unique IDs) or no extensions")
	}
	if err := c.readExtensions(exts); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *licenseCert) readExtensions(exts []byte) error {
	bad := errExtensions
	outer := derReader(exts)
	list, _, err := outer.read(tagSequence)
	if err != nil || len(outer) != 0 || len(list) == 0 {
		return bad
	}
	seen := make([][]byte, 0, 8) // on the stack for up to 8 extensions
	l := derReader(list)
	for len(l) > 0 {
		ext, _, err := l.read(tagSequence)
		if err != nil {
			return bad
		}
		e := derReader(ext)
		oid, _, err := e.read(tagOID)
		if err != nil || len(oid) == 0 {
			return bad
		}
		for _, s := range seen {
			if bytes.Equal(s, oid) {
				return errors.New("duplicate extension")
			}
		}
		seen = append(seen, oid)
		critical := false
		if e.peek(tagBoolean) {
			b, _, err := e.read(tagBoolean)
			if err != nil || len(b) != 1 || b[0] != 0xff { // DER: FALSE is not encoded
				return bad
			}
			critical = true
		}
		val, _, err := e.read(tagOctetString)
		if err != nil || len(e) != 0 {
			return bad
		}
		switch {
		case bytes.Equal(oid, oidRoleDER):
			s, ok := derContent(val, tagUTF8String)
			if !ok {
				return errors.New("bad role extension")
			}
			c.role = string(s)
		case bytes.Equal(oid, oidLicenseDER):
			c.attrs = val
		case bytes.Equal(oid, oidPackStatementDER):
			st, ok := derContent(val, tagOctetString)
			if !ok || len(st) == 0 {
				return errors.New("bad pack statement extension")
			}
			c.statement = st
		case bytes.Equal(oid, oidBasicConstraintsDER):
			bc := derReader(val)
			seq, _, err := bc.read(tagSequence)
			if err != nil || len(bc) != 0 {
				return errors.New("bad basic constraints")
			}
			s := derReader(seq)
			if s.peek(tagBoolean) {
				b, _, err := s.read(tagBoolean)
				if err != nil || len(b) != 1 || (b[0] != 0xff && b[0] != 0) {
					return errors.New("bad basic constraints")
				}
				c.isCA = b[0] == 0xff
			}
		case bytes.Equal(oid, oidKeyUsageDER), bytes.Equal(oid, oidExtKeyUsageDER):
			// For TLS peers; Verify does not use them.
		default:
			c.critical = c.critical || critical
		}
	}
	return nil
}

// positiveInt64 decodes a DER INTEGER that must be positive and fit an int64.
func positiveInt64(b []byte) (int64, error) {
	bad := errSerial
	if len(b) == 0 || b[0]&0x80 != 0 || (len(b) > 1 && b[0] == 0 && b[1]&0x80 == 0) {
		return 0, bad // empty, negative or not minimal
	}
	if b[0] == 0 {
		b = b[1:]
	}
	if len(b) > 8 || (len(b) == 8 && b[0]&0x80 != 0) {
		return 0, bad
	}
	var n int64
	for _, x := range b {
		n = n<<8 | int64(x)
	}
	if n <= 0 {
		return 0, bad
	}
	return n, nil
}

// readTime reads a UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime
// (YYYYMMDDHHMMSSZ), the two forms RFC 5280 allows.
func readTime(r *derReader) (time.Time, error) {
	bad := errTime
	tag, s, _, err := r.next()
	if err != nil {
		return time.Time{}, bad
	}
	var year int
	switch {
	case tag == tagUTCTime && len(s) == 13:
		yy, ok := digits(s[:2])
		if !ok {
			return time.Time{}, bad
		}
		year = 2000 + yy
		if yy >= 50 {
			year = 1900 + yy
		}
		s = s[2:]
	case tag == tagGenTime && len(s) == 15:
		y, ok := digits(s[:4])
		if !ok {
			return time.Time{}, bad
		}
		year = y
		s = s[4:]
	default:
		return time.Time{}, bad
	}
	if s[10] != 'Z' {
		return time.Time{}, bad
	}
	var f [5]int
	for i := range f {
		n, ok := digits(s[2*i : 2*i+2])
		if !ok {
			return time.Time{}, bad
		}
		f[i] = n
	}
	t := time.Date(year, time.Month(f[0]), f[1], f[2], f[3], f[4], 0, time.UTC)
	if t.Year() != year || int(t.Month()) != f[0] || t.Day() != f[1] || t.Hour() != f[2] || t.Minute() != f[3] || t.Second() != f[4] {
		return time.Time{}, bad // out of range: 2026-02-30, 25:00
	}
	return t, nil
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
