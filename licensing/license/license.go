// Package license issues licet client licenses; the license server (site)
// uses it when it grants a seat. A client license is an X.509 certificate
// (Ed25519) issued by the site certificate to the client's Ed25519 key: its
// serial number is the license ID, its subject names the client ID, and the
// product attributes travel in the non-critical extension verify.OIDLicense.
// It verifies offline with the vendor root alone (package verify) and is also
// a TLS client certificate (client auth, digital signature).
//
// The license file is PEM: the license certificate, then the site
// certificate, as CERTIFICATE blocks (EncodePEM). Clients cache it as is, and
// nginx, Envoy, openssl or Go's crypto/tls take it as a certificate chain.
package license

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/verify"
)

// Issue makes the license certificate (DER) for the client key clientPub with
// the given attributes, signed by the site. attrs.ClientID may be left empty
// (it is derived from clientPub) and attrs.DataVersion zero (it becomes
// verify.CurrentDataVersion). notAfter is clamped to the site certificate's
// NotAfter, since a license cannot outlive its issuer.
func Issue(site *pki.Authority, clientPub ed25519.PublicKey, attrs verify.Attributes, notBefore, notAfter time.Time) ([]byte, error) {
	tmpl, err := template(site, clientPub, attrs, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, site.Cert, clientPub, site.Signer.Private())
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license %d for %s", tmpl.SerialNumber, tmpl.Subject.CommonName)
	}
	return der, nil
}

// check checks Issue's arguments and returns the attributes completed
// (client ID, data version) and notAfter clamped to the site certificate.
func check(site *pki.Authority, clientPub ed25519.PublicKey, attrs verify.Attributes, notBefore, notAfter time.Time) (verify.Attributes, time.Time, error) {
	if site == nil || site.Cert == nil || site.Signer == nil {
		return attrs, notAfter, errs.E(errs.Internal, "issue license: no site certificate and key")
	}
	if r := pki.Role(site.Cert); r != pki.RoleSite {
		return attrs, notAfter, errs.E(errs.Internal, "issue license: certificate %q has role %q; only a site certificate issues licenses", site.Cert.Subject.CommonName, r)
	}
	if pub, ok := site.Cert.PublicKey.(ed25519.PublicKey); !ok || !bytes.Equal(site.Signer.Public(), pub) {
		return attrs, notAfter, errs.E(errs.Internal, "issue license: the site key does not match the site certificate %s", site.Cert.Subject.SerialNumber)
	}
	if len(clientPub) != ed25519.PublicKeySize {
		return attrs, notAfter, errs.E(errs.Invalid, "client key is %d bytes, not an Ed25519 public key", len(clientPub))
	}
	id := verify.ClientID(clientPub)
	if attrs.ClientID == "" {
		attrs.ClientID = id
	} else if attrs.ClientID != id {
		return attrs, notAfter, errs.E(errs.Invalid, "license for client %s cannot carry the key of client %s", attrs.ClientID, id)
	}
	if attrs.DataVersion == 0 {
		attrs.DataVersion = verify.CurrentDataVersion
	}
	if attrs.LicenseID <= 0 {
		return attrs, notAfter, errs.E(errs.Invalid, "license ID %d is not a positive serial from a pack", attrs.LicenseID)
	}
	if attrs.ProductID == "" {
		return attrs, notAfter, errs.E(errs.Invalid, "license has no product ID")
	}
	if notAfter.After(site.Cert.NotAfter) {
		notAfter = site.Cert.NotAfter
	}
	if !notBefore.Before(notAfter) {
		return attrs, notAfter, errs.E(errs.Invalid, "license would be valid from %s to %s, which is no time at all (the site certificate expires %s)",
			notBefore.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339), site.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return attrs, notAfter, nil
}

// template checks Issue's arguments and returns the license's certificate
// template.
func template(site *pki.Authority, clientPub ed25519.PublicKey, attrs verify.Attributes, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	attrs, notAfter, err := check(site, clientPub, attrs, notBefore, notAfter)
	if err != nil {
		return nil, err
	}
	ext, err := attrs.MarshalExtension()
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license")
	}
	roleExt, err := asn1.MarshalWithParams(verify.RoleLicense, "utf8")
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "issue license")
	}
	extra := []pkix.Extension{{Id: verify.OIDRole, Value: roleExt}}
	if len(attrs.PackStatement) > 0 {
		st, err := asn1.Marshal(attrs.PackStatement)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "issue license")
		}
		extra = append(extra, pkix.Extension{Id: verify.OIDPackStatement, Value: st})
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(attrs.LicenseID),
		Subject:               pkix.Name{CommonName: attrs.ClientID, SerialNumber: attrs.ClientID, OrganizationalUnit: []string{attrs.ProductID}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		// The attributes come last: Issuer relies on it.
		ExtraExtensions: append(extra, ext),
	}
	return tmpl, nil
}

// EncodePEM writes a certificate chain (the license certificate, then the
// site certificate) as CERTIFICATE PEM blocks: the license file, byte for
// byte as encoding/pem writes it.
func EncodePEM(chain [][]byte) []byte {
	n := 0
	for _, der := range chain {
		n += len(pemBegin) + len(pemEnd) + (len(der)+2)/3*4 + len(der)/48 + 1
	}
	b := make([]byte, 0, n)
	for _, der := range chain {
		b = append(b, pemBegin...)
		b = armor.AppendBase64Lines(b, der)
		b = append(b, pemEnd...)
	}
	return b
}

const (
	pemBegin = "-----BEGIN CERTIFICATE-----\n"
	pemEnd   = "-----END CERTIFICATE-----\n"
)
