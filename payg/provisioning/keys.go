package provisioning

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/pki"
)

// Files in the vendor data directory.
const (
	FileKey  = "provisioning.key" // the provisioning key, mode 0600
	FileCert = "provisioning.crt" // its certificate, issued by the root
	// FileDataKey is the vendor's data key (64 hex digits), shared with
	// the keypad device keys (payg/keypadvendor's keypad.key): secrets of
	// PAYG devices (initialization keys, webhook secrets, answers holding
	// registration codes) are sealed under a key derived from it.
	FileDataKey = keypadvendor.SealKeyFile
)

// Authority returns the provisioning key and certificate of the vendor data
// directory dir, making them first (certified by root) if the directory
// has none: at 'licet vendor init', and at the first start of a directory
// made before pay-as-you-go existed. Processes starting together make one:
// the key file is created exclusively, and a loser uses the winner's.
func Authority(dir string, root *pki.Authority, vendorName string, now time.Time) (*pki.Authority, error) {
	var issue func(ed25519.PublicKey) ([]byte, error)
	if root != nil && root.Signer != nil {
		issue = func(pub ed25519.PublicKey) ([]byte, error) { return root.IssueProvisioning(pub, vendorName, now) }
	}
	return pki.LoadOrIssue(filepath.Join(dir, FileKey), filepath.Join(dir, FileCert), issue, func(der []byte) (*x509.Certificate, error) {
		if root == nil {
			return x509.ParseCertificate(der)
		}
		return pki.VerifyProvisioning([][]byte{der}, root.Cert, now)
	})
}

// AESSealer seals secrets with AES-256-GCM; the label is the additional
// data, so a sealed value moved to another row does not open.
type AESSealer struct {
	aead cipher.AEAD
}

// sealerInfo separates this sealer's key from other uses of the data key.
const sealerInfo = "licet payg secrets v1"

// NewAESSealer derives the sealing key from a 32-byte data key.
func NewAESSealer(dataKey []byte) (*AESSealer, error) {
	if len(dataKey) != 32 {
		return nil, errs.E(errs.Internal, "data key has %d bytes, want 32", len(dataKey))
	}
	m := hmac.New(sha256.New, dataKey)
	m.Write([]byte(sealerInfo))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "data key")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "data key")
	}
	return &AESSealer{aead: aead}, nil
}

// LoadSealer returns the sealer of the vendor data directory dir, making
// the data key first if the directory has none (keypadvendor.CreateSealKey).
func LoadSealer(dir string) (*AESSealer, error) {
	if err := keypadvendor.CreateSealKey(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileDataKey)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read the data key %s", path)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) != 32 {
		return nil, errs.E(errs.Internal, "%s is damaged: it must hold 64 hexadecimal digits; restore it from a backup", path)
	}
	return NewAESSealer(key)
}

const sealedVersion = 1

// Seal encrypts plain: version byte, nonce, ciphertext and tag.
func (s *AESSealer) Seal(label string, plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	out := append([]byte{sealedVersion}, nonce...)
	return s.aead.Seal(out, nonce, plain, []byte(label)), nil
}

// Open decrypts what Seal made under the same label.
func (s *AESSealer) Open(label string, sealed []byte) ([]byte, error) {
	n := 1 + s.aead.NonceSize()
	if len(sealed) < n || sealed[0] != sealedVersion {
		return nil, errs.E(errs.Internal, "sealed secret %s is damaged", label)
	}
	plain, err := s.aead.Open(nil, sealed[1:n], sealed[n:], []byte(label))
	if err != nil {
		return nil, errs.E(errs.Internal, "sealed secret %s does not open: it was altered, moved, or sealed under another %s", label, FileDataKey)
	}
	return plain, nil
}
