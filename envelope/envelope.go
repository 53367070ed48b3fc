// Package envelope holds licet's two wrappers around a document: Signed, a
// canonical-JSON payload with Ed25519 signatures and the signer's certificate
// chain, and Sealed, a byte string encrypted with HPKE to one recipient key.
//
// Signatures cover the payload bytes exactly as they travel, prefixed by a
// domain-separation string that names the document type, so a signature on
// one type of document can never be replayed as another.
package envelope

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"github.com/licet/licet/canonjson"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
)

// Signature is one signature over a Signed payload.
type Signature struct {
	KeyID string `json:"kid"` // keys.SignerID of the public key
	Alg   string `json:"alg"` // keys.AlgEd25519
	Sig   []byte `json:"sig"`
}

// Signed is a signed document.
type Signed struct {
	Type         string      `json:"type"`    // e.g. "licet.pack"
	Version      int         `json:"version"` // format version of the payload
	Payload      []byte      `json:"payload"` // canonical JSON of the document
	Signatures   []Signature `json:"signatures"`
	Certificates [][]byte    `json:"certificates,omitempty"` // DER, the signer's first
}

func signedMessage(typ string, payload []byte) []byte {
	msg := make([]byte, 0, len(typ)+len(payload)+24)
	msg = append(msg, "licet/v1 signed "...)
	msg = append(msg, typ...)
	msg = append(msg, 0)
	return append(msg, payload...)
}

// Sign encodes doc as canonical JSON and signs it with s.
func Sign(typ string, version int, doc any, s *keys.Signer, chain [][]byte) (*Signed, error) {
	payload, err := canonjson.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return &Signed{
		Type: typ, Version: version, Payload: payload,
		Signatures:   []Signature{{KeyID: s.ID(), Alg: keys.AlgEd25519, Sig: s.Sign(signedMessage(typ, payload))}},
		Certificates: chain,
	}, nil
}

// Verify checks that one of the signatures was made by pub over the payload.
func (s *Signed) Verify(pub ed25519.PublicKey) error {
	kid := keys.SignerID(pub)
	for _, sig := range s.Signatures {
		if sig.KeyID != kid {
			continue
		}
		if sig.Alg != keys.AlgEd25519 {
			return errs.E(errs.Invalid, "%s signature uses unsupported algorithm %q", s.Type, sig.Alg)
		}
		if ed25519.Verify(pub, signedMessage(s.Type, s.Payload), sig.Sig) {
			return nil
		}
		return errs.E(errs.Invalid, "%s signature by %s does not verify: the document was changed after it was signed", s.Type, kid)
	}
	return errs.E(errs.Invalid, "%s is not signed by key %s", s.Type, kid)
}

// Decode parses the payload into v. Call it only after Verify.
func (s *Signed) Decode(v any) error {
	if err := canonjson.UnmarshalStrict(s.Payload, v); err != nil {
		return errs.Wrap(errs.Invalid, err, "%s payload is not valid JSON", s.Type)
	}
	return nil
}

// Marshal returns the JSON encoding of s.
func (s *Signed) Marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // only []byte, string and int fields: cannot fail
	}
	return b
}

// ParseSigned decodes a Signed document and checks that it has the expected
// type and a version no newer than maxVersion.
func ParseSigned(data []byte, typ string, maxVersion int) (*Signed, error) {
	var s Signed
	if err := canonjson.UnmarshalStrict(data, &s); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "not a signed licet document")
	}
	if err := checkTypeVersion(s.Type, s.Version, typ, maxVersion); err != nil {
		return nil, err
	}
	if len(s.Payload) == 0 || len(s.Signatures) == 0 {
		return nil, errs.E(errs.Invalid, "%s has no payload or no signature", typ)
	}
	return &s, nil
}

func checkTypeVersion(gotType string, gotVersion int, typ string, maxVersion int) error {
	if gotType != typ {
		return errs.E(errs.Invalid, "document is of type %q, expected %q", gotType, typ)
	}
	if gotVersion < 1 || gotVersion > maxVersion {
		return errs.E(errs.Invalid, "%s format version %d is not supported (this licet reads up to %d); upgrade licet", typ, gotVersion, maxVersion)
	}
	return nil
}

// Sealed is a document encrypted to one HPKE recipient key.
type Sealed struct {
	Type       string `json:"type"`
	Version    int    `json:"version"`
	Recipient  string `json:"recipient"` // keys.RecipientID of the recipient's public key
	KEM        uint16 `json:"kem"`
	KDF        uint16 `json:"kdf"`
	AEAD       uint16 `json:"aead"`
	Ciphertext []byte `json:"ciphertext"` // encapsulated key, then AEAD ciphertext
}

func sealInfo(typ, recipient string) []byte {
	return []byte("licet/v1 sealed " + typ + "\x00" + recipient)
}

// Seal encrypts plaintext to the HPKE public key recipientPub.
func Seal(typ string, version int, recipientPub, plaintext []byte) (*Sealed, error) {
	rid := keys.RecipientID(recipientPub)
	ct, err := keys.Seal(recipientPub, sealInfo(typ, rid), plaintext)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", typ, err)
	}
	return &Sealed{
		Type: typ, Version: version, Recipient: rid,
		KEM: keys.SuiteKEM.ID(), KDF: keys.SuiteKDF.ID(), AEAD: keys.SuiteAEAD.ID(),
		Ciphertext: ct,
	}, nil
}

// Open decrypts s with d. A document for another recipient, or one changed in
// transit, is an Invalid error that says which.
func (s *Sealed) Open(d *keys.Decrypter) ([]byte, error) {
	if s.Recipient != d.ID() {
		return nil, errs.E(errs.Invalid, "this %s is encrypted to key %s, but this machine's key is %s: it was made for another server", s.Type, s.Recipient, d.ID())
	}
	if s.KEM != keys.SuiteKEM.ID() || s.KDF != keys.SuiteKDF.ID() || s.AEAD != keys.SuiteAEAD.ID() {
		return nil, errs.E(errs.Invalid, "%s uses an unsupported HPKE suite (kem %d, kdf %d, aead %d)", s.Type, s.KEM, s.KDF, s.AEAD)
	}
	pt, err := d.Open(sealInfo(s.Type, s.Recipient), s.Ciphertext)
	if err != nil {
		return nil, errs.E(errs.Invalid, "%s cannot be decrypted: it was changed in transit or damaged", s.Type)
	}
	return pt, nil
}

// Marshal returns the JSON encoding of s.
func (s *Sealed) Marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}

// ParseSealed decodes a Sealed document of the expected type and version.
func ParseSealed(data []byte, typ string, maxVersion int) (*Sealed, error) {
	var s Sealed
	if err := canonjson.UnmarshalStrict(data, &s); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "not an encrypted licet document")
	}
	if err := checkTypeVersion(s.Type, s.Version, typ, maxVersion); err != nil {
		return nil, err
	}
	return &s, nil
}
