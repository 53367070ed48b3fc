package catalog

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/licet/licet/distribution/tufmeta"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/pki"
)

// Files of the distribution key in the vendor data directory.
const (
	FileKey  = "distribution.key" // the distribution key, mode 0600
	FileCert = "distribution.crt" // its certificate, issued by the root
)

// Authority returns the distribution key and certificate of the vendor data
// directory dir (pki.RoleDistribution), making them (certified by root) if
// the directory has none: at 'licet vendor init', and at the first start of
// a directory made before the distribution key existed, which needs the root
// key in the directory that once.
func Authority(dir string, root *pki.Authority, vendorName string, now time.Time) (*pki.Authority, error) {
	var issue func(pub ed25519.PublicKey) ([]byte, error)
	if root.Signer != nil {
		issue = func(pub ed25519.PublicKey) ([]byte, error) { return root.IssueDistribution(pub, vendorName, now) }
	}
	return pki.LoadOrIssue(filepath.Join(dir, FileKey), filepath.Join(dir, FileCert), issue, func(der []byte) (*x509.Certificate, error) {
		if _, err := pki.VerifyDistribution([][]byte{der}, root.Cert, now); err != nil {
			return nil, err
		}
		return x509.ParseCertificate(der)
	})
}

// AnchorMessage is what the distribution key (before it existed: the vendor
// root key) signs to anchor root version 1.
func AnchorMessage(root1 []byte) []byte {
	sum := sha256.Sum256(root1)
	return []byte("licet distribution root v1\n" + hex.EncodeToString(sum[:]))
}

// Anchor makes root metadata version 1 trusted from the vendor root
// certificate alone: Signature is an Ed25519 signature of AnchorMessage(root
// v1) by the key that Chain's first certificate (role distribution, issued by
// the root) certifies. An anchor without Chain was made before the
// distribution key existed: its signature is the vendor root key's own, and
// it stays accepted.
type Anchor struct {
	Signature []byte   `json:"signature"`
	Chain     [][]byte `json:"chain,omitempty"` // DER, the distribution certificate first
}

// SignAnchor returns a function that anchors root metadata with the
// distribution key a.
func SignAnchor(a *pki.Authority) func(msg []byte) Anchor {
	return func(msg []byte) Anchor {
		return Anchor{Signature: a.Signer.Sign(msg), Chain: [][]byte{a.Cert.Raw}}
	}
}

// Verify checks that a anchors root1 under the vendor root certificate at
// time at; the error wraps tufmeta.ErrRejected.
func (a Anchor) Verify(root1 []byte, vendorRoot *x509.Certificate, at time.Time) error {
	msg := AnchorMessage(root1)
	if len(a.Chain) == 0 {
		pub, ok := vendorRoot.PublicKey.(ed25519.PublicKey)
		if !ok || !ed25519.Verify(pub, msg, a.Signature) {
			return errs.Wrap(errs.Invalid, tufmeta.ErrRejected, "root metadata version 1 is not signed by this vendor root (fingerprint %s) nor by a distribution key it certified: check the vendor root certificate, or the source is not genuine", rootPrint(vendorRoot))
		}
		return nil
	}
	pub, err := pki.VerifyDistribution(a.Chain, vendorRoot, at)
	if err != nil {
		return errs.Wrap(errs.Invalid, fmt.Errorf("%w: %w", tufmeta.ErrRejected, err),
			"root metadata version 1 is anchored by a distribution key that this vendor root does not certify: check the vendor root certificate, or the source is not genuine")
	}
	if !ed25519.Verify(pub, msg, a.Signature) {
		return errs.Wrap(errs.Invalid, tufmeta.ErrRejected, "root metadata version 1 is not signed by the vendor's distribution key: the metadata was altered or the source is not genuine")
	}
	return nil
}

func rootPrint(c *x509.Certificate) string {
	if len(c.Raw) == 0 {
		return "unknown"
	}
	return pki.Fingerprint(c.Raw)[:16]
}

// Encode returns the anchor as stored beside root version 1: an anchor of
// the vendor root key (no chain) as its bare 64-byte signature, as licet
// stored it before the distribution key existed; any other as JSON, which is
// never 64 bytes long.
func (a Anchor) Encode() []byte {
	if len(a.Chain) == 0 {
		return a.Signature
	}
	b, _ := json.Marshal(a)
	return b
}

// DecodeAnchor reads an anchor made by Encode.
func DecodeAnchor(b []byte) (Anchor, error) {
	if len(b) == ed25519.SignatureSize {
		return Anchor{Signature: b}, nil
	}
	var a Anchor
	if err := json.Unmarshal(b, &a); err != nil || len(a.Chain) == 0 {
		return Anchor{}, errs.E(errs.Invalid, "the stored anchor of root metadata version 1 is damaged: sync the site again from a fresh data directory")
	}
	return a, nil
}
