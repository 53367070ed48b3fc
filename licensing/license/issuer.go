package license

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Issuer issues the licenses of one site like Issue, byte for byte, but
// without x509.CreateCertificate's verification of every signature it makes
// (an Ed25519 verification costs about twice the signing). It builds the
// to-be-signed certificate itself from the extensions of a reference license
// that Issue made for the same site, and NewIssuer checks once, by issuing a
// license both ways, that the two agree and that the signature verifies;
// if they do not (another Go release changed its encoding), the Issuer uses
// Issue for every license.
type Issuer struct {
	site     *pki.Authority
	fallback bool // use Issue: the self-check failed
	exts     []pkix.Extension
	attrsAt  int // index in exts of the license attributes extension
	spkiAlg  pkix.AlgorithmIdentifier
}

// oidEd25519 identifies Ed25519 signatures and keys (RFC 8410).
var oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}

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
	ext, err := attrs.MarshalExtension()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license")
	}
	is := &Issuer{site: site, exts: cert.Extensions, attrsAt: -1, spkiAlg: pkix.AlgorithmIdentifier{Algorithm: oidEd25519}}
	for i, e := range is.exts {
		if e.Id.Equal(ext.Id) {
			is.attrsAt = i
		}
	}
	if is.attrsAt < 1 || !is.exts[is.attrsAt-1].Id.Equal(verify.OIDRole) {
		is.fallback = true
		return is, nil
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

// tbsCertificate is RFC 5280's TBSCertificate, as encoding/asn1 writes it.
type tbsCertificate struct {
	Version            int `asn1:"optional,explicit,default:0,tag:0"`
	SerialNumber       *big.Int
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Issuer             asn1.RawValue
	Validity           validity
	Subject            asn1.RawValue
	PublicKey          publicKeyInfo
	Extensions         []pkix.Extension `asn1:"omitempty,optional,explicit,tag:3"`
}

type validity struct{ NotBefore, NotAfter time.Time }

type publicKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

type certificate struct {
	TBS                asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
}

// Issue is license.Issue for the Issuer's site.
func (is *Issuer) Issue(clientPub ed25519.PublicKey, attrs verify.Attributes, notBefore, notAfter time.Time) ([]byte, error) {
	if is.fallback {
		return Issue(is.site, clientPub, attrs, notBefore, notAfter)
	}
	tmpl, err := template(is.site, clientPub, attrs, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	subject, err := asn1.Marshal(tmpl.Subject.ToRDNSequence())
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license %d", attrs.LicenseID)
	}
	// The reference's extra extensions (role, attributes: the two at
	// attrsAt-1 and attrsAt) give way to the template's (role, pack
	// statement if any, attributes), in the order Issue writes them.
	exts := make([]pkix.Extension, 0, len(is.exts)+1)
	exts = append(exts, is.exts[:is.attrsAt-1]...)
	exts = append(exts, tmpl.ExtraExtensions...)
	exts = append(exts, is.exts[is.attrsAt+1:]...)
	tbs, err := asn1.Marshal(tbsCertificate{
		Version: 2, SerialNumber: tmpl.SerialNumber, SignatureAlgorithm: is.spkiAlg,
		Issuer:     asn1.RawValue{FullBytes: is.site.Cert.RawSubject},
		Validity:   validity{tmpl.NotBefore.UTC().Truncate(time.Second), tmpl.NotAfter.UTC().Truncate(time.Second)},
		Subject:    asn1.RawValue{FullBytes: subject},
		PublicKey:  publicKeyInfo{Algorithm: is.spkiAlg, PublicKey: asn1.BitString{Bytes: clientPub, BitLength: 8 * len(clientPub)}},
		Extensions: exts,
	})
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license %d", attrs.LicenseID)
	}
	sig := ed25519.Sign(is.site.Signer.Private(), tbs)
	der, err := asn1.Marshal(certificate{TBS: asn1.RawValue{FullBytes: tbs}, SignatureAlgorithm: is.spkiAlg,
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license %d", attrs.LicenseID)
	}
	return der, nil
}
