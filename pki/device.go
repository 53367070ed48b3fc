package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"time"

	"github.com/licet/licet/errs"
)

// Pay-as-you-go roles and extensions. The provisioning certificate is a CA
// one level below the root (path length 0): it certifies devices and signs
// provisioning packets, so the root can stay offline while devices register.
const (
	RoleProvisioning = "provisioning"
	RoleDevice       = "device"
)

// OIDDevice carries a device certificate's identity: the DER of
// SEQUENCE { deviceID UTF8String, systemID UTF8String, accountID UTF8String }.
var OIDDevice = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 58888, 1, 5}

// Validity periods of the pay-as-you-go certificates.
const (
	ProvisioningValidity = 5 * 365 * 24 * time.Hour
	DeviceValidity       = 10 * 365 * 24 * time.Hour
)

// deviceExt is the ASN.1 form of OIDDevice's value.
type deviceExt struct {
	DeviceID  string `asn1:"utf8"`
	SystemID  string `asn1:"utf8"`
	AccountID string `asn1:"utf8"`
}

// IssueProvisioning certifies the vendor's provisioning key: a CA that may
// certify devices only (path length 0) and signs provisioning packets.
func (a *Authority) IssueProvisioning(pub ed25519.PublicKey, vendorName string, now time.Time) ([]byte, error) {
	return a.issueSubCA(pub, vendorName, RoleProvisioning, 0, ProvisioningValidity, now)
}

// Device is what a device certificate says.
type Device struct {
	DeviceID  string
	SystemID  string // the hwid system ID the device registered with
	AccountID string // the billing account that owns it
	PublicKey ed25519.PublicKey
	HPKEKey   []byte
	Cert      *x509.Certificate
}

// IssueDevice certifies a device key. a must be the provisioning authority.
func (a *Authority) IssueDevice(d Device, now time.Time) ([]byte, error) {
	if Role(a.Cert) != RoleProvisioning {
		return nil, errs.E(errs.Internal, "device certificates are issued by the provisioning key, not by %q", Role(a.Cert))
	}
	if d.DeviceID == "" || d.SystemID == "" || d.AccountID == "" || len(d.PublicKey) != ed25519.PublicKeySize || len(d.HPKEKey) == 0 {
		return nil, errs.E(errs.Invalid, "a device certificate needs a device ID, system ID, account, Ed25519 key and HPKE key")
	}
	ext, err := asn1.Marshal(deviceExt{d.DeviceID, d.SystemID, d.AccountID})
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: d.DeviceID, SerialNumber: d.SystemID},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              minTime(now.Add(DeviceValidity), a.Cert.NotAfter),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{
			utf8Ext(OIDRole, RoleDevice),
			{Id: OIDDevice, Value: ext},
			bytesExt(OIDHPKEKey, d.HPKEKey),
		},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, a.Cert, d.PublicKey, a.Signer.Private())
}

// VerifyProvisioning checks a provisioning certificate chain (provisioning
// certificate first) against the vendor root and returns the certificate,
// whose Ed25519 key signs packets.
func VerifyProvisioning(chain [][]byte, root *x509.Certificate, at time.Time) (*x509.Certificate, error) {
	leaf, err := verifySubCA(chain, root, at, RoleProvisioning)
	if err != nil {
		return nil, err
	}
	if leaf.MaxPathLen != 0 {
		return nil, errs.E(errs.Invalid, "provisioning certificate %q is not a path-length-0 CA under the root", leaf.Subject.CommonName)
	}
	return leaf, nil
}

// VerifyDevice checks a device certificate chain (device certificate, then
// the provisioning certificate that issued it) against the vendor root.
func VerifyDevice(chain [][]byte, root *x509.Certificate, at time.Time) (*Device, error) {
	if len(chain) < 2 {
		return nil, errs.E(errs.Invalid, "a device certificate chain is the device certificate and the provisioning certificate; got %d certificate(s)", len(chain))
	}
	prov, err := VerifyProvisioning(chain[1:], root, at)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "device certificate is not valid X.509")
	}
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		return nil, errs.E(errs.Invalid, "device certificate %q is valid from %s to %s, not on %s", leaf.Subject.CommonName,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	if err := leaf.CheckSignatureFrom(prov); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "device certificate %q was not issued by this vendor's provisioning key", leaf.Subject.CommonName)
	}
	if leaf.IsCA || Role(leaf) != RoleDevice {
		return nil, errs.E(errs.Invalid, "certificate %q is for role %q, not a device", leaf.Subject.CommonName, Role(leaf))
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errs.E(errs.Invalid, "device key is not Ed25519")
	}
	e, ok := findExt(leaf.Extensions, OIDDevice)
	var de deviceExt
	if !ok {
		return nil, errs.E(errs.Invalid, "device certificate %q has no device identity extension", leaf.Subject.CommonName)
	}
	if rest, err := asn1.Unmarshal(e.Value, &de); err != nil || len(rest) > 0 || de.DeviceID == "" || de.DeviceID != leaf.Subject.CommonName {
		return nil, errs.E(errs.Invalid, "device certificate %q has a malformed device identity", leaf.Subject.CommonName)
	}
	return &Device{DeviceID: de.DeviceID, SystemID: de.SystemID, AccountID: de.AccountID, PublicKey: pub,
		HPKEKey: extBytes(leaf.Extensions, OIDHPKEKey), Cert: leaf}, nil
}
