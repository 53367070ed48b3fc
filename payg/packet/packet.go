// Package packet is the pay-as-you-go provisioning packet: one sale's credit
// for one device. The vendor's provisioning key (certified by the root, see
// pki.IssueProvisioning) signs the packet, the packet is sealed to the
// device's HPKE key, and the result travels as armored text
// (-----BEGIN LICET PAYG PACKET-----), over the API or on a USB stick.
//
// A device accepts a packet only if it is for its own device ID, the
// signature chains to the vendor root, and its sequence number is the next
// one it expects (the agent keeps that state; see payg/meter). A packet
// changed in transit does not decrypt; one re-signed by anyone but the
// provisioning key does not verify; one for another device does not decrypt
// on this one and names another device inside.
package packet

import (
	"crypto/ed25519"
	"crypto/x509"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// Format names and version.
const (
	SignedType = "licet.payg.packet"        // the signed document's type
	SealedType = "licet.payg.packet.sealed" // the encrypted envelope's type
	Version    = 1
)

// Packet is one credit grant. Exactly one of Seconds and Until is set.
type Packet struct {
	DeviceID string `json:"device_id"`
	// Sequence numbers a device's packets 1, 2, 3, ... with no gaps; the
	// device applies them in order and refuses one it has seen.
	Sequence uint64 `json:"sequence"`
	// Seconds of use this packet adds to the balance.
	Seconds int64 `json:"seconds,omitempty"`
	// Until, for a plan sold up to a date: the device may be used until then.
	Until *time.Time `json:"until,omitempty"`
	// ServerTime is the vendor's clock when it made the packet; the agent's
	// clock re-anchors on it (it never moves the device's time backwards).
	ServerTime time.Time `json:"server_time"`
	// Sale is the billing reference of the sale that paid for the packet.
	Sale string `json:"sale"`
}

// Validate checks the fields a packet must have.
func (p *Packet) Validate() error {
	switch {
	case p.DeviceID == "":
		return errs.E(errs.Invalid, "packet has no device ID")
	case p.Sequence == 0:
		return errs.E(errs.Invalid, "packet %s has sequence 0; sequences start at 1", p.DeviceID)
	case (p.Seconds > 0) == (p.Until != nil):
		return errs.E(errs.Invalid, "packet %s/%d must carry either seconds of use (above 0) or an until-date", p.DeviceID, p.Sequence)
	case p.Seconds < 0:
		return errs.E(errs.Invalid, "packet %s/%d carries negative seconds", p.DeviceID, p.Sequence)
	case p.ServerTime.IsZero() || p.Sale == "":
		return errs.E(errs.Invalid, "packet %s/%d lacks its server time or sale", p.DeviceID, p.Sequence)
	}
	return nil
}

// Make signs p with the provisioning key (chain: the provisioning
// certificate), seals it to the device's HPKE public key and returns the
// armored file.
func Make(p Packet, prov *keys.Signer, chain [][]byte, deviceHPKE []byte) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	signed, err := envelope.Sign(SignedType, Version, p, prov, chain)
	if err != nil {
		return nil, err
	}
	sealed, err := envelope.Seal(SealedType, Version, deviceHPKE, signed.Marshal())
	if err != nil {
		return nil, err
	}
	return armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: Version, Body: sealed.Marshal()}), nil
}

// Open decrypts and verifies an armored packet for the device deviceID
// holding dev, against the vendor root at time at. It checks everything the
// packet itself can prove; the sequence is the caller's to check.
func Open(text []byte, dev *keys.Decrypter, root *x509.Certificate, deviceID string, at time.Time) (*Packet, error) {
	b, err := armor.Decode(text, armor.TypePAYGPacket)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "not a licet pay-as-you-go packet")
	}
	if b.Version < 1 || b.Version > Version {
		return nil, errs.E(errs.Invalid, "packet format version %d is not supported (this licet reads up to %d); upgrade licet", b.Version, Version)
	}
	sealed, err := envelope.ParseSealed(b.Body, SealedType, Version)
	if err != nil {
		return nil, err
	}
	plain, err := sealed.Open(dev)
	if err != nil {
		return nil, err
	}
	signed, err := envelope.ParseSigned(plain, SignedType, Version)
	if err != nil {
		return nil, err
	}
	provCert, err := pki.VerifyProvisioning(signed.Certificates, root, at)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "packet is not signed by this vendor's provisioning key")
	}
	if err := signed.Verify(provCert.PublicKey.(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	var p Packet
	if err := signed.Decode(&p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.DeviceID != deviceID {
		return nil, errs.E(errs.Invalid, "packet %d is for device %s, not this device (%s)", p.Sequence, p.DeviceID, deviceID)
	}
	return &p, nil
}
