package keypadvendor

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/payg/openpaygo"
)

// SealKeyFile is the file in the vendor data directory that holds the keypad
// sealing key: 64 hexadecimal digits (32 bytes), mode 0600. Every vendor
// process sharing one database needs the same file; losing it loses every
// device key stored.
const SealKeyFile = "keypad.key"

// sealVersion starts every sealed key: the format's version.
const sealVersion = 1

// sealAAD starts the additional data of every sealed key; the header and the
// serial number follow, so a sealed key moved to another device's row does
// not open.
const sealAAD = "licet keypad device key v1\x00"

// Sealer encrypts device keys at rest with AES-256-GCM.
type Sealer struct {
	aead cipher.AEAD
	id   [8]byte // the first bytes of the sealing key's SHA-256, stored with each sealed key
}

// NewSealer returns a sealer under a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, errs.E(errs.Internal, "keypad sealing key has %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "keypad sealing key")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "keypad sealing key")
	}
	s := &Sealer{aead: aead}
	sum := sha256.Sum256(key)
	copy(s.id[:], sum[:])
	return s, nil
}

// CreateSealKey writes a new sealing key into the vendor data directory dir
// unless one is there already; 'licet vendor init' calls it, and LoadSealer
// does on first use.
func CreateSealKey(dir string) error {
	path := filepath.Join(dir, SealKeyFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	key := make([]byte, 32)
	rand.Read(key)
	err := fsutil.CreateExclusive(path, []byte(hex.EncodeToString(key)+"\n"), 0o600)
	if err != nil {
		if _, serr := os.Stat(path); serr == nil {
			return nil // another process made it meanwhile: use theirs
		}
		return errs.Wrap(errs.Internal, err, "create the keypad sealing key %s; check that the data directory is writable", path)
	}
	return nil
}

// LoadSealer reads the sealing key of the vendor data directory dir, making
// it first if it does not exist.
func LoadSealer(dir string) (*Sealer, error) {
	path := filepath.Join(dir, SealKeyFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := CreateSealKey(dir); err != nil {
			return nil, err
		}
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the keypad sealing key %s", path)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		return nil, errs.E(errs.Internal, "%s is damaged: it must hold 64 hexadecimal digits; restore it from a backup", path)
	}
	return NewSealer(key)
}

func (s *Sealer) header() []byte { return append([]byte{sealVersion}, s.id[:]...) }

func (s *Sealer) aad(serial string) []byte {
	return append(append([]byte(sealAAD), s.header()...), serial...)
}

// Seal encrypts the key of the device serial: version, sealing key ID,
// nonce, ciphertext and tag.
func (s *Sealer) Seal(serial string, k openpaygo.Key) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	out := append(s.header(), nonce...)
	return s.aead.Seal(out, nonce, k[:], s.aad(serial)), nil
}

// Open decrypts the sealed key of the device serial.
func (s *Sealer) Open(serial string, sealed []byte) (openpaygo.Key, error) {
	var k openpaygo.Key
	h := s.header()
	n := len(h) + s.aead.NonceSize()
	if len(sealed) < n || sealed[0] != sealVersion {
		return k, errs.E(errs.Internal, "the stored key of device %s is damaged", serial)
	}
	if !bytes.Equal(sealed[:len(h)], h) {
		return k, errs.E(errs.Internal, "the stored key of device %s was sealed under another %s than this data directory's; use the data directory the device was registered with", serial, SealKeyFile)
	}
	plain, err := s.aead.Open(nil, sealed[len(h):n], sealed[n:], s.aad(serial))
	if err != nil || len(plain) != openpaygo.KeySize {
		return k, errs.E(errs.Internal, "the stored key of device %s does not open: it was altered or belongs to another device", serial)
	}
	copy(k[:], plain)
	return k, nil
}
