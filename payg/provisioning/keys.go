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
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/fsutil"
	"github.com/licet/licet/keys"
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
	keyPath, certPath := filepath.Join(dir, FileKey), filepath.Join(dir, FileCert)
	signer, err := keys.LoadSigner(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		fresh, gerr := keys.GenerateSigner()
		if gerr != nil {
			return nil, gerr
		}
		if serr := fresh.Save(keyPath); serr != nil {
			if signer, err = keys.LoadSigner(keyPath); err != nil { // another process saved one
				return nil, errs.Wrap(errs.Internal, serr, "create the provisioning key %s; check that the data directory is writable", keyPath)
			}
		} else {
			signer, err = fresh, nil
		}
	}
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "load the provisioning key %s", keyPath)
	}
	der, err := readCert(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		if root == nil || root.Signer == nil {
			return nil, errs.E(errs.Internal, "%s is missing and the root key is not available to certify the provisioning key", certPath)
		}
		if der, err = root.IssueProvisioning(signer.Public(), vendorName, now); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "certify the provisioning key")
		}
		if err := fsutil.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "write %s", certPath)
		}
	} else if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "read %s", certPath)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "%s is damaged; remove it to have it issued again", certPath)
	}
	if pub, ok := cert.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(signer.Public()) {
		return nil, errs.E(errs.Internal, "%s does not certify %s; remove the certificate to have it issued again", certPath, keyPath)
	}
	if root != nil {
		if _, err := pki.VerifyProvisioning([][]byte{der}, root.Cert, now); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "%s is not a provisioning certificate of this root; remove it to have it issued again", certPath)
		}
	}
	return &pki.Authority{Cert: cert, Signer: signer}, nil
}

func readCert(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(data); blk != nil {
		return blk.Bytes, nil
	}
	return data, nil
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
