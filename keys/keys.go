// Package keys holds licet's key types: Ed25519 signing keys and HPKE
// encryption keys (hybrid post-quantum MLKEM768-X25519), each with a key ID
// derived from its public half, a prefixed text form, and file storage with
// mode 0600. Private keys are never printed or logged: their String methods
// show only the key ID.
package keys

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/licet/licet/internal/fsutil"
)

// AlgEd25519 is the algorithm name written beside every Ed25519 signature.
const AlgEd25519 = "ed25519"

// SignerID returns the key ID of an Ed25519 public key: "ed25519:" and the
// first 8 bytes of its SHA-256 in hex.
func SignerID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// Signer is an Ed25519 private key with its key ID.
type Signer struct {
	priv ed25519.PrivateKey
	id   string
}

// GenerateSigner makes a new Ed25519 key.
func GenerateSigner() (*Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	return NewSigner(priv), nil
}

// NewSigner wraps an existing Ed25519 private key.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	return &Signer{priv: priv, id: SignerID(priv.Public().(ed25519.PublicKey))}
}

// ID returns the key ID.
func (s *Signer) ID() string { return s.id }

// Public returns the public key.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Private returns the private key, for x509 certificate creation.
func (s *Signer) Private() ed25519.PrivateKey { return s.priv }

// Sign signs msg.
func (s *Signer) Sign(msg []byte) []byte { return ed25519.Sign(s.priv, msg) }

// String shows the key ID only, so that a key in a log line leaks nothing.
func (s *Signer) String() string { return "signer " + s.id }

// GoString is String, so that %#v leaks nothing either.
func (s *Signer) GoString() string { return s.String() }

const pemSigner = "PRIVATE KEY"

// Save writes the key as PKCS#8 PEM with mode 0600, refusing to overwrite a file.
func (s *Signer) Save(path string) error {
	der, err := x509.MarshalPKCS8PrivateKey(s.priv)
	if err != nil {
		return fmt.Errorf("encode signing key: %w", err)
	}
	return fsutil.CreateExclusive(path, pem.EncodeToMemory(&pem.Block{Type: pemSigner, Bytes: der}), 0o600)
}

// LoadSigner reads a key written by Save.
func LoadSigner(path string) (*Signer, error) {
	blk, err := readPEM(path, pemSigner)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS#8 private key: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return NewSigner(priv), nil
}

func readPEM(path, typ string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no PEM block of type %q", path, typ)
	}
	return blk, nil
}

// The HPKE suite licet encrypts with. The IDs travel in every sealed object so
// that other suites can be added later.
var (
	SuiteKEM  = hpke.MLKEM768X25519()
	SuiteKDF  = hpke.HKDFSHA256()
	SuiteAEAD = hpke.AES256GCM()
)

// RecipientID returns the key ID of an HPKE public key: "hpke:" and the first
// 8 bytes of the SHA-256 of its serialisation in hex.
func RecipientID(pub []byte) string {
	sum := sha256.Sum256(pub)
	return "hpke:" + hex.EncodeToString(sum[:8])
}

// Decrypter is an HPKE private key with its key ID.
type Decrypter struct {
	priv hpke.PrivateKey
	pub  []byte
	id   string
}

// GenerateDecrypter makes a new HPKE key of the licet suite.
func GenerateDecrypter() (*Decrypter, error) {
	priv, err := SuiteKEM.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate HPKE key: %w", err)
	}
	return newDecrypter(priv), nil
}

func newDecrypter(priv hpke.PrivateKey) *Decrypter {
	pub := priv.PublicKey().Bytes()
	return &Decrypter{priv: priv, pub: pub, id: RecipientID(pub)}
}

// ID returns the key ID.
func (d *Decrypter) ID() string { return d.id }

// PublicBytes returns the serialised public key.
func (d *Decrypter) PublicBytes() []byte { return append([]byte(nil), d.pub...) }

// String shows the key ID only.
func (d *Decrypter) String() string { return "decrypter " + d.id }

// GoString is String, so that %#v leaks nothing either.
func (d *Decrypter) GoString() string { return d.String() }

// Open decrypts a ciphertext made by Seal for this key with the same info.
func (d *Decrypter) Open(info, ciphertext []byte) ([]byte, error) {
	return hpke.Open(d.priv, SuiteKDF, SuiteAEAD, info, ciphertext)
}

// Seal encrypts plaintext to the serialised HPKE public key pub. The result is
// the encapsulated key followed by the AEAD ciphertext.
func Seal(pub, info, plaintext []byte) ([]byte, error) {
	r, err := ParseRecipient(pub)
	if err != nil {
		return nil, err
	}
	return r.Seal(info, plaintext)
}

// Recipient is a parsed HPKE public key of the licet suite: parsing one
// (expanding its ML-KEM matrix) costs about a fifth of a seal, so a caller
// that checks a key and then seals to it parses it once.
type Recipient struct {
	pk hpke.PublicKey
	id string
}

// ParseRecipient parses the serialised HPKE public key pub.
func ParseRecipient(pub []byte) (*Recipient, error) {
	pk, err := SuiteKEM.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("recipient key is not an MLKEM768-X25519 public key: %w", err)
	}
	return &Recipient{pk: pk, id: RecipientID(pub)}, nil
}

// ID returns the key ID (RecipientID of the serialised key).
func (r *Recipient) ID() string { return r.id }

// Seal encrypts plaintext to the key, like the function Seal.
func (r *Recipient) Seal(info, plaintext []byte) ([]byte, error) {
	return hpke.Seal(r.pk, SuiteKDF, SuiteAEAD, info, plaintext)
}

const pemDecrypter = "LICET HPKE PRIVATE KEY"

// Save writes the key with mode 0600, refusing to overwrite a file.
func (d *Decrypter) Save(path string) error {
	raw, err := d.priv.Bytes()
	if err != nil {
		return fmt.Errorf("encode HPKE key: %w", err)
	}
	blk := &pem.Block{Type: pemDecrypter, Headers: map[string]string{"KEM": fmt.Sprint(SuiteKEM.ID())}, Bytes: raw}
	return fsutil.CreateExclusive(path, pem.EncodeToMemory(blk), 0o600)
}

// LoadDecrypter reads a key written by Save.
func LoadDecrypter(path string) (*Decrypter, error) {
	blk, err := readPEM(path, pemDecrypter)
	if err != nil {
		return nil, err
	}
	if blk.Headers["KEM"] != fmt.Sprint(SuiteKEM.ID()) {
		return nil, fmt.Errorf("%s: HPKE key of unsupported KEM %q", path, blk.Headers["KEM"])
	}
	priv, err := SuiteKEM.NewPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: bad HPKE private key: %w", path, err)
	}
	return newDecrypter(priv), nil
}
