// Package packet is the pay-as-you-go provisioning packet: one sale's credit
// for one device. The vendor's provisioning key (certified by the root, see
// pki.IssueProvisioning) signs the packet, the packet is sealed to the one
// device, and the result travels as armored text
// (-----BEGIN LICET PAYG PACKET-----), over the API or on a USB stick.
//
// Two format versions exist (docs/formats.md, "PAYG packet"):
//
//   - Version 1 (Make) seals each packet to the device's HPKE key
//     (MLKEM768-X25519): a key encapsulation per packet, about 15 times the
//     cost of the signature.
//   - Version 2 (MakeV2, what the vendor makes) seals it with AES-256-GCM
//     under a key derived (HKDF-SHA256, a label and the device ID) from the
//     device's 32-byte initialization key, the secret the vendor and the
//     device already share: made at registration and delivered once, sealed
//     to the device's HPKE key. The post-quantum confidentiality of a
//     version 2 packet therefore rests on that one HPKE delivery. The
//     additional data binds the ciphertext to its type, version, device and
//     sequence; the nonce is random (a packet may be made twice for one
//     sequence, see payg/provisioning, so a nonce derived from the sequence
//     could repeat under one key).
//
// Agents open both versions (OpenWith, given the device's HPKE key and its
// initialization key). Both carry the same signed document, signed with the
// format version inside the signature, so neither layer can be relabelled
// as the other version.
//
// A device accepts a packet only if it is for its own device ID, the
// signature chains to the vendor root, and its sequence number is the next
// one it expects (the agent keeps that state; see payg/meter). A packet
// changed in transit does not decrypt; one re-signed by anyone but the
// provisioning key does not verify; one for another device does not decrypt
// on this one and names another device inside.
package packet

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"strconv"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/canonjson"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// Format names and versions.
const (
	SignedType = "licet.payg.packet"        // the signed document's type
	SealedType = "licet.payg.packet.sealed" // the encrypted envelope's type
	// Version is format version 1, sealed to the device's HPKE key: what
	// Make writes (the name predates version 2).
	Version = 1
	// VersionHPKE is Version by a name that says what it is.
	VersionHPKE = Version
	// MaxVersion is the highest format version this package reads.
	MaxVersion = VersionShared
	// VersionShared is the format sealed under a key derived from the
	// device's initialization key (MakeV2).
	VersionShared = 2
	// AEADShared names version 2's cipher.
	AEADShared = "AES-256-GCM"
	// InitKeySize is the size of a device's initialization key.
	InitKeySize = 32
)

// Labels of version 2's key derivation and additional data.
const (
	keyLabel = "licet/v2 payg packet key\x00"
	adLabel  = "licet/v2 payg packet\x00"
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

// canonicalPacket is Packet with its fields in the order of their JSON
// keys, canonjson's order.
type canonicalPacket struct {
	DeviceID   string     `json:"device_id"`
	Sale       string     `json:"sale"`
	Seconds    int64      `json:"seconds,omitempty"`
	Sequence   uint64     `json:"sequence"`
	ServerTime time.Time  `json:"server_time"`
	Until      *time.Time `json:"until,omitempty"`
}

// CanonicalJSON implements canonjson.Canonical: the packet's canonical JSON
// in one pass, the bytes the vendor signs (TestCanonicalJSON shows they are
// canonjson's).
func (p Packet) CanonicalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(canonicalPacket{DeviceID: p.DeviceID, Sale: p.Sale, Seconds: p.Seconds, Sequence: p.Sequence, ServerTime: p.ServerTime, Until: p.Until}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
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

// Make makes a version 1 packet: signs p with the provisioning key (chain:
// the provisioning certificate), seals it to the device's HPKE public key
// and returns the armored file. Agents of every licet release open it;
// MakeV2 is the faster format.
func Make(p Packet, prov *keys.Signer, chain [][]byte, deviceHPKE []byte) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	signed, err := envelope.Sign(SignedType, VersionHPKE, p, prov, chain)
	if err != nil {
		return nil, err
	}
	sealed, err := envelope.Seal(SealedType, VersionHPKE, deviceHPKE, signed.Marshal())
	if err != nil {
		return nil, err
	}
	return armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: VersionHPKE, Body: sealed.Marshal()}), nil
}

// Shared is the body of a version 2 packet: the signed packet encrypted
// with AES-256-GCM under SharedKey(initialization key, DeviceID), with
// AdditionalData(Type, Version, DeviceID, Sequence) as additional data.
// DeviceID and Sequence are in clear so that a device can refuse a packet
// of another device by name, and are bound to the ciphertext.
type Shared struct {
	Type       string `json:"type"`    // SealedType
	Version    int    `json:"version"` // VersionShared
	DeviceID   string `json:"device_id"`
	Sequence   uint64 `json:"sequence"`
	AEAD       string `json:"aead"`       // AEADShared
	Nonce      []byte `json:"nonce"`      // 12 random bytes
	Ciphertext []byte `json:"ciphertext"` // with the 16-byte GCM tag
}

// SharedKey derives a device's version 2 packet key from its
// initialization key: HKDF-SHA256 with no salt, info
// "licet/v2 payg packet key" || 0x00 || deviceID, 32 bytes.
func SharedKey(initKey []byte, deviceID string) ([]byte, error) {
	if len(initKey) != InitKeySize {
		return nil, errs.E(errs.Invalid, "initialization key is %d bytes, want %d: the device's init key is damaged; register the device again", len(initKey), InitKeySize)
	}
	return hkdf.Key(sha256.New, initKey, nil, keyLabel+deviceID, 32)
}

// AdditionalData is version 2's AEAD additional data:
// "licet/v2 payg packet" || 0x00 || type || 0x00 || decimal version || 0x00
// || deviceID || 0x00 || decimal sequence.
func AdditionalData(typ string, version int, deviceID string, seq uint64) []byte {
	ad := make([]byte, 0, len(adLabel)+len(typ)+len(deviceID)+32)
	ad = append(ad, adLabel...)
	ad = append(ad, typ...)
	ad = append(ad, 0)
	ad = strconv.AppendInt(ad, int64(version), 10)
	ad = append(ad, 0)
	ad = append(ad, deviceID...)
	ad = append(ad, 0)
	return strconv.AppendUint(ad, seq, 10)
}

func sharedAEAD(initKey []byte, deviceID string) (cipher.AEAD, error) {
	key, err := SharedKey(initKey, deviceID)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "packet cipher")
	}
	return cipher.NewGCM(block)
}

// MakeV2 makes a version 2 packet: signs p with the provisioning key
// (chain: the provisioning certificate), encrypts it with AES-256-GCM under
// the key derived from the device's initialization key initKey, and
// returns the armored file. Agents before format version 2 refuse it and
// say to upgrade.
func MakeV2(p Packet, prov *keys.Signer, chain [][]byte, initKey []byte) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	aead, err := sharedAEAD(initKey, p.DeviceID)
	if err != nil {
		return nil, err
	}
	signed, err := envelope.Sign(SignedType, VersionShared, p, prov, chain)
	if err != nil {
		return nil, err
	}
	sh := Shared{Type: SealedType, Version: VersionShared, DeviceID: p.DeviceID, Sequence: p.Sequence, AEAD: AEADShared, Nonce: make([]byte, aead.NonceSize())}
	rand.Read(sh.Nonce)
	sh.Ciphertext = aead.Seal(nil, sh.Nonce, signed.Marshal(), AdditionalData(sh.Type, sh.Version, sh.DeviceID, sh.Sequence))
	body, err := json.Marshal(sh) // struct fields: a fixed order
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encode packet")
	}
	return armor.Encode(armor.Block{Type: armor.TypePAYGPacket, Version: VersionShared, Body: body}), nil
}

// Keys are what a device opens its packets with: its HPKE key (version 1)
// and its initialization key (version 2). A key left out only refuses the
// version that needs it.
type Keys struct {
	Decrypter *keys.Decrypter
	InitKey   []byte
}

// Open is OpenWith with the device's HPKE key only: it opens version 1
// packets, and refuses a version 2 packet, which needs the initialization
// key.
func Open(text []byte, dev *keys.Decrypter, root *x509.Certificate, deviceID string, at time.Time) (*Packet, error) {
	return OpenWith(text, Keys{Decrypter: dev}, root, deviceID, at)
}

// OpenWith decrypts and verifies an armored packet of either version for
// the device deviceID holding k, against the vendor root at time at. It
// checks everything the packet itself can prove; the sequence is the
// caller's to check (a replayed packet opens: the agent refuses it by its
// sequence).
func OpenWith(text []byte, k Keys, root *x509.Certificate, deviceID string, at time.Time) (*Packet, error) {
	b, err := armor.Decode(text, armor.TypePAYGPacket)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "not a licet pay-as-you-go packet")
	}
	var plain []byte
	var outerSeq uint64
	switch b.Version {
	case VersionHPKE:
		if k.Decrypter == nil {
			return nil, errs.E(errs.Internal, "opening a version 1 packet needs the device's HPKE key")
		}
		sealed, err := envelope.ParseSealed(b.Body, SealedType, VersionHPKE)
		if err != nil {
			return nil, err
		}
		if plain, err = sealed.Open(k.Decrypter); err != nil {
			return nil, err
		}
	case VersionShared:
		if plain, outerSeq, err = openShared(b.Body, k.InitKey, deviceID); err != nil {
			return nil, err
		}
	default:
		return nil, errs.E(errs.Invalid, "packet format version %d is not supported (this licet reads up to %d); upgrade licet", b.Version, MaxVersion)
	}
	signed, err := envelope.ParseSigned(plain, SignedType, MaxVersion)
	if err != nil {
		return nil, err
	}
	if signed.Version != b.Version {
		return nil, errs.E(errs.Invalid, "packet of format version %d holds a signed packet of version %d: it was relabelled; ask the vendor for the original", b.Version, signed.Version)
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
	if b.Version == VersionShared && p.Sequence != outerSeq {
		return nil, errs.E(errs.Invalid, "packet is labelled sequence %d but signed for sequence %d: it was relabelled; ask the vendor for the original", outerSeq, p.Sequence)
	}
	return &p, nil
}

// openShared parses and decrypts a version 2 body for deviceID; it returns
// the signed packet's bytes and the sequence the body is labelled with.
func openShared(body, initKey []byte, deviceID string) ([]byte, uint64, error) {
	var sh Shared
	if err := canonjson.UnmarshalStrict(body, &sh); err != nil {
		return nil, 0, errs.Wrap(errs.Invalid, err, "packet (format version 2) is damaged: not an encrypted packet")
	}
	switch {
	case sh.Type != SealedType:
		return nil, 0, errs.E(errs.Invalid, "packet body is a %q, not a %q: the file is damaged or is another kind of document", sh.Type, SealedType)
	case sh.Version != VersionShared:
		return nil, 0, errs.E(errs.Invalid, "packet is armored as format version %d but its body says version %d: it was relabelled; ask the vendor for the original", VersionShared, sh.Version)
	case sh.AEAD != AEADShared:
		return nil, 0, errs.E(errs.Invalid, "packet uses cipher %q; format version 2 uses %s", sh.AEAD, AEADShared)
	case sh.DeviceID != deviceID:
		return nil, 0, errs.E(errs.Invalid, "packet %d is for device %s, not this device (%s)", sh.Sequence, sh.DeviceID, deviceID)
	case len(initKey) == 0:
		return nil, 0, errs.E(errs.Internal, "opening a version 2 packet needs the device's initialization key; register the device first")
	}
	aead, err := sharedAEAD(initKey, deviceID)
	if err != nil {
		return nil, 0, err
	}
	if len(sh.Nonce) != aead.NonceSize() {
		return nil, 0, errs.E(errs.Invalid, "packet nonce is %d bytes, want %d: the file is damaged", len(sh.Nonce), aead.NonceSize())
	}
	plain, err := aead.Open(nil, sh.Nonce, sh.Ciphertext, AdditionalData(sh.Type, sh.Version, sh.DeviceID, sh.Sequence))
	if err != nil {
		return nil, 0, errs.E(errs.Invalid, "packet %d (format version 2) cannot be decrypted with this device's initialization key: it was changed in transit, relabelled, or made for another device's key; ask the vendor for the original file", sh.Sequence)
	}
	return plain, sh.Sequence, nil
}
