package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"time"

	"github.com/licet/licet/errs"
)

// RoleDistribution is the vendor's online software distribution key: an
// end-entity certificate (not a CA) issued by the root directly. Its key
// signs the anchor of the update metadata's first root version and its seed
// derives the TUF role keys (docs/distribution.md), so the root key can stay
// offline while the vendor distributes software.
const RoleDistribution = "distribution"

// DistributionValidity is how long a distribution certificate is valid (at
// most as long as the root).
const DistributionValidity = 10 * 365 * 24 * time.Hour

// IssueDistribution certifies the vendor's distribution key. a must be the root.
func (a *Authority) IssueDistribution(pub ed25519.PublicKey, vendorName string, now time.Time) ([]byte, error) {
	if Role(a.Cert) != RoleRoot {
		return nil, errs.E(errs.Internal, "the distribution key is certified by the root, not by %q", Role(a.Cert))
	}
	return a.issueSigner(pub, vendorName, RoleDistribution, DistributionValidity, now)
}

// VerifyDistribution checks a distribution certificate (first in chain)
// against the vendor root at time at: role distribution, issued by the root
// itself (never by an issuing CA or a site, which are CAs a customer's site
// sits under), not a CA, with an Ed25519 key. It returns that key.
func VerifyDistribution(chain [][]byte, root *x509.Certificate, at time.Time) (ed25519.PublicKey, error) {
	c, err := verifyLeaf(chain, root, at, RoleDistribution)
	if err != nil {
		return nil, err
	}
	pub, ok := c.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errs.E(errs.Invalid, "distribution key of %q is not Ed25519", c.Subject.CommonName)
	}
	if c.IsCA || !bytes.Equal(c.RawIssuer, root.RawSubject) || c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, errs.E(errs.Invalid, "distribution certificate %q is not a signing certificate issued by the root directly", c.Subject.CommonName)
	}
	return pub, nil
}
