package pki_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// forgeDistribution has ca certify a key with the distribution role, as a
// site (or another CA) that wants to sign update metadata would.
func forgeDistribution(t *testing.T, ca *pki.Authority) []byte {
	t.Helper()
	k, _ := keys.GenerateSigner()
	role, _ := asn1.MarshalWithParams(pki.RoleDistribution, "utf8")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "forged distribution"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtraExtensions: []pkix.Extension{{Id: pki.OIDRole, Value: role}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, k.Public(), ca.Signer.Private())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestDistribution: the root certifies the distribution key (a signing
// certificate, not a CA); a distribution certificate from another root, the
// issuing CA or a site under it, one of another role, or one outside its
// validity is refused; only the root issues one.
func TestDistribution(t *testing.T) {
	root := newRoot(t, "ACME", now)
	k, _ := keys.GenerateSigner()
	der, err := root.IssueDistribution(k.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.VerifyDistribution([][]byte{der}, root.Cert, now)
	if err != nil || !pub.Equal(k.Public()) {
		t.Fatalf("genuine distribution certificate: %v", err)
	}
	c, _ := x509.ParseCertificate(der)
	if c.IsCA || pki.Role(c) != pki.RoleDistribution {
		t.Fatalf("distribution certificate: CA %v role %q", c.IsCA, pki.Role(c))
	}
	iss := newIssuing(t, root)
	site := newSite(t, iss, "cust-1", now)
	other := newRoot(t, "Other", now)
	otherDER, _ := other.IssueDistribution(k.Public(), "Other", now)
	chK, _ := keys.GenerateSigner()
	chDER, _ := root.IssueClearinghouse(chK.Public(), "ACME", now)
	for what, chain := range map[string][][]byte{
		"from another root":         {otherDER},
		"from the issuing CA":       {forgeDistribution(t, iss), iss.Cert.Raw},
		"from a site":               {forgeDistribution(t, site.authority(t)), site.der, iss.Cert.Raw},
		"of the clearinghouse role": {chDER},
		"none":                      {},
		"the root itself":           {root.Cert.Raw},
		"root-issued but not X.509": {der[:len(der)-1]},
	} {
		if _, err := pki.VerifyDistribution(chain, root.Cert, now); err == nil {
			t.Errorf("distribution certificate %s: accepted", what)
		}
	}
	if _, err := pki.VerifyDistribution([][]byte{der}, root.Cert, now.Add(pki.DistributionValidity+time.Hour)); err == nil {
		t.Error("expired distribution certificate accepted")
	}
	if _, err := iss.IssueDistribution(k.Public(), "ACME", now); err == nil {
		t.Error("the issuing CA issued a distribution certificate")
	}
}
