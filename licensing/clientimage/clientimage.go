// Package clientimage is the vendor's signature over a client executable
// image: the reference a license server keeps to check platform challenges.
// The vendor signs the image's SHA-256, size and software ID with the
// clearinghouse key; a site registers an image only with a valid signature.
package clientimage

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// Document type and version of an image signature.
const (
	Type    = "licet.client-image"
	Version = 1
)

// Manifest is the signed description of a client image.
type Manifest struct {
	SoftwareID uint32    `json:"software_id"`
	Name       string    `json:"name"`
	SHA256     string    `json:"sha256"` // hex
	Size       int64     `json:"size"`
	Signed     time.Time `json:"signed"`
}

// Hash returns the hex SHA-256 and size of an image, streaming it.
func Hash(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", 0, errs.Wrap(errs.Invalid, err, "read image")
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Sign writes the armored image signature file for m.
func Sign(m *Manifest, clearinghouse *keys.Signer, chain [][]byte) ([]byte, error) {
	if len(m.SHA256) != 64 {
		return nil, errs.E(errs.Invalid, "sha256 must be 64 hex digits")
	}
	if _, err := hex.DecodeString(m.SHA256); err != nil {
		return nil, errs.E(errs.Invalid, "sha256 is not hex")
	}
	if m.Size <= 0 {
		return nil, errs.E(errs.Invalid, "image size must be positive")
	}
	s, err := envelope.Sign(Type, Version, m, clearinghouse, chain)
	if err != nil {
		return nil, err
	}
	return armor.Encode(armor.Block{Type: armor.TypeImageSignature, Version: Version, Body: s.Marshal()}), nil
}

// Read checks an image signature file against the vendor root and returns its manifest.
func Read(data []byte, root *x509.Certificate, now time.Time) (*Manifest, error) {
	blk, err := armor.Decode(data, armor.TypeImageSignature)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "image signature rejected")
	}
	s, err := envelope.ParseSigned(blk.Body, Type, Version)
	if err != nil {
		return nil, err
	}
	pub, err := pki.VerifyClearinghouse(s.Certificates, root, now)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "image signature is not by this vendor's clearinghouse")
	}
	if err := s.Verify(pub); err != nil {
		return nil, err
	}
	var m Manifest
	if err := s.Decode(&m); err != nil {
		return nil, err
	}
	return &m, nil
}
