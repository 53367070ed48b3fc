// Package envelope holds licet's two wrappers around a document: Signed, a
// canonical-JSON payload with Ed25519 signatures and the signer's certificate
// chain, and Sealed, a byte string encrypted with HPKE to one recipient key.
//
// Signatures cover the payload bytes exactly as they travel, prefixed by a
// domain-separation string that names the document type and its format
// version, so a signature on one type of document can never be replayed as
// another, nor a document of one format version relabelled as another (a
// version 2 upgrade pack presented as a version 1 seat pack to a site that
// predates upgrades). Version 1 documents keep the message they have always
// been signed with, "licet/v1 signed ", which stands for version 1 only;
// every later version signs "licet/v2 signed " with the version inside (see
// docs/formats.md, section 5).
package envelope

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

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

// signedMessage is the message a signature covers: for a version 1 document
// "licet/v1 signed " || type || 0x00 || payload, the message of the first
// format, which readers accept for version 1 only; for any later version
// "licet/v2 signed " || type || 0x00 || decimal version || 0x00 || payload.
// The two prefixes differ, so no signature made for one version verifies for
// another, whichever message it was made over.
func signedMessage(typ string, version int, payload []byte) []byte {
	msg := make([]byte, 0, len(typ)+len(payload)+32)
	if version == 1 {
		msg = append(msg, "licet/v1 signed "...)
		msg = append(msg, typ...)
		msg = append(msg, 0)
		return append(msg, payload...)
	}
	msg = append(msg, "licet/v2 signed "...)
	msg = append(msg, typ...)
	msg = append(msg, 0)
	msg = strconv.AppendInt(msg, int64(version), 10)
	msg = append(msg, 0)
	return append(msg, payload...)
}

// Sign encodes doc as canonical JSON and signs it with s, binding the
// document type and the format version into the signature.
func Sign(typ string, version int, doc any, s *keys.Signer, chain [][]byte) (*Signed, error) {
	if version < 1 {
		return nil, fmt.Errorf("sign %s: format version %d: versions start at 1", typ, version)
	}
	payload, err := canonjson.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return &Signed{
		Type: typ, Version: version, Payload: payload,
		Signatures:   []Signature{{KeyID: s.ID(), Alg: keys.AlgEd25519, Sig: s.Sign(signedMessage(typ, version, payload))}},
		Certificates: chain,
	}, nil
}

// Verify checks that one of the signatures was made by pub over the payload,
// the type and the format version as the envelope states them: a document
// relabelled with another type or version does not verify.
func (s *Signed) Verify(pub ed25519.PublicKey) error {
	kid := keys.SignerID(pub)
	for _, sig := range s.Signatures {
		if sig.KeyID != kid {
			continue
		}
		if sig.Alg != keys.AlgEd25519 {
			return errs.E(errs.Invalid, "%s signature uses unsupported algorithm %q", s.Type, sig.Alg)
		}
		if s.Version >= 1 && ed25519.Verify(pub, signedMessage(s.Type, s.Version, s.Payload), sig.Sig) {
			return nil
		}
		return errs.E(errs.Invalid, "%s (format version %d) signature by %s does not verify: the document, its type or its version was changed after it was signed; ask the issuer for the original file", s.Type, s.Version, kid)
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
	if s.Version <= maxVersion { // a newer version may have other fields: checkTypeVersion says to upgrade
		if err := requireFields(data, typ, "signed", signedFields, s.Type == "", s.Version == 0, len(s.Payload) == 0, len(s.Signatures) == 0); err != nil {
			return nil, err
		}
	}
	if err := checkTypeVersion(s.Type, s.Version, typ, maxVersion); err != nil {
		return nil, err
	}
	return &s, nil
}

// The fields of the two envelopes, required ones first (as their empty flags
// are given to requireFields).
var (
	signedFields = []string{"type", "version", "payload", "signatures", "certificates"}
	sealedFields = []string{"type", "version", "recipient", "ciphertext", "kem", "kdf", "aead"}
)

// requireFields refuses an envelope (of a document of type typ) whose
// required field fields[i] is empty (empty[i]): the file is damaged. Unknown
// fields are otherwise ignored (docs/formats.md, section 1), but the
// message names those the envelope has, as a renamed field is the likely
// cause: without it, a blank recipient would read as a file made for another
// server.
func requireFields(data []byte, typ, what string, fields []string, empty ...bool) error {
	for i, e := range empty {
		if !e {
			continue
		}
		msg := fmt.Sprintf("the %s file is damaged: its %s envelope has no %q (or an empty one)", typ, what, fields[i])
		if extra := unknownFields(data, fields); len(extra) > 0 {
			msg += fmt.Sprintf(" but has %s, which licet does not know (a renamed field?)", strings.Join(extra, ", "))
		}
		return errs.E(errs.Invalid, "%s; ask the sender for the original file", msg)
	}
	return nil
}

// unknownFields lists, quoted and sorted, the members of the JSON object
// data that are none of known (matched as encoding/json does, ignoring case).
func unknownFields(data []byte, known []string) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	var out []string
	for k := range m {
		if !slices.ContainsFunc(known, func(f string) bool { return strings.EqualFold(f, k) }) {
			out = append(out, strconv.Quote(k))
		}
	}
	slices.Sort(out)
	return out
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

// sealInfo is the HPKE info of a Sealed envelope: for version 1
// "licet/v1 sealed " || type || 0x00 || recipient, as the first format wrote
// it; for any later version "licet/v2 sealed " || type || 0x00 || decimal
// version || 0x00 || recipient, so that a ciphertext relabelled with another
// type, version or recipient does not decrypt.
func sealInfo(typ string, version int, recipient string) []byte {
	if version == 1 {
		return []byte("licet/v1 sealed " + typ + "\x00" + recipient)
	}
	return []byte("licet/v2 sealed " + typ + "\x00" + strconv.Itoa(version) + "\x00" + recipient)
}

// Seal encrypts plaintext to the HPKE public key recipientPub.
func Seal(typ string, version int, recipientPub, plaintext []byte) (*Sealed, error) {
	r, err := keys.ParseRecipient(recipientPub)
	if err != nil {
		return nil, fmt.Errorf("encrypt %s: %w", typ, err)
	}
	return SealTo(typ, version, r, plaintext)
}

// SealTo is Seal to a recipient key already parsed (keys.ParseRecipient),
// for a caller that checked the key first.
func SealTo(typ string, version int, r *keys.Recipient, plaintext []byte) (*Sealed, error) {
	if version < 1 {
		return nil, fmt.Errorf("encrypt %s: format version %d: versions start at 1", typ, version)
	}
	rid := r.ID()
	ct, err := r.Seal(sealInfo(typ, version, rid), plaintext)
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
	if s.Version < 1 {
		return nil, errs.E(errs.Invalid, "%s has format version %d; versions start at 1: the file is damaged", s.Type, s.Version)
	}
	pt, err := d.Open(sealInfo(s.Type, s.Version, s.Recipient), s.Ciphertext)
	if err != nil {
		return nil, errs.E(errs.Invalid, "%s (format version %d) cannot be decrypted: it, its type or its version was changed in transit, or it is damaged; ask the sender for the original file", s.Type, s.Version)
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
	if s.Version <= maxVersion { // a newer version may have other fields: checkTypeVersion says to upgrade
		if err := requireFields(data, typ, "encrypted", sealedFields, s.Type == "", s.Version == 0, s.Recipient == "", len(s.Ciphertext) == 0, s.KEM == 0, s.KDF == 0, s.AEAD == 0); err != nil {
			return nil, err
		}
	}
	if err := checkTypeVersion(s.Type, s.Version, typ, maxVersion); err != nil {
		return nil, err
	}
	return &s, nil
}
