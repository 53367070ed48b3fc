package pki_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/pki"
)

// newProvisioning certifies a provisioning key under root.
func newProvisioning(t *testing.T, root *pki.Authority, at time.Time) (*pki.Authority, []byte) {
	t.Helper()
	k, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	der, err := root.IssueProvisioning(k.Public(), "ACME", at)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.Authority{Cert: c, Signer: k}, der
}

func newDevice(t *testing.T, id string) pki.Device {
	t.Helper()
	k, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	return pki.Device{DeviceID: id, SystemID: "sys-" + id, AccountID: "acct-1", PublicKey: k.Public(), HPKEKey: d.PublicBytes()}
}

func TestDeviceCertificate(t *testing.T) {
	root := newRoot(t, "ACME", now)
	prov, provDER := newProvisioning(t, root, now)
	want := newDevice(t, "dev-1")
	der, err := prov.IssueDevice(want, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pki.VerifyDevice([][]byte{der, provDER}, root.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.DeviceID != "dev-1" || got.SystemID != "sys-dev-1" || got.AccountID != "acct-1" || !got.PublicKey.Equal(want.PublicKey) || string(got.HPKEKey) != string(want.HPKEKey) {
		t.Fatalf("device certificate says %+v", got)
	}
	_, err = pki.VerifyDevice([][]byte{der, provDER}, root.Cert, now.Add(pki.DeviceValidity+time.Hour))
	wantInvalid(t, "expired device certificate", err, "valid from")
	_, err = pki.VerifyDevice([][]byte{der}, root.Cert, now)
	wantInvalid(t, "device certificate without its issuer", err, "provisioning certificate")
}

func TestDeviceCertificateForgeries(t *testing.T) {
	root := newRoot(t, "ACME", now)
	_, provDER := newProvisioning(t, root, now)

	// A device certified by another vendor's provisioning key, presented
	// with this vendor's provisioning certificate.
	other := newRoot(t, "Other", now)
	otherProv, otherProvDER := newProvisioning(t, other, now)
	der, err := otherProv.IssueDevice(newDevice(t, "dev-x"), now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.VerifyDevice([][]byte{der, provDER}, root.Cert, now)
	wantInvalid(t, "device of another provisioning key", err, "not issued by this vendor's provisioning key")
	_, err = pki.VerifyDevice([][]byte{der, otherProvDER}, root.Cert, now)
	wantInvalid(t, "device under another root", err, "was not issued by this vendor's root")

	// A site (a CA under the root) cannot act as provisioning.
	s := newSite(t, root, "cust-1", now)
	if _, err := s.authority(t).IssueDevice(newDevice(t, "dev-s"), now); err == nil {
		t.Fatal("a site authority issued a device certificate")
	}
	evil, _ := keys.GenerateSigner()
	fakeProv, err := s.authority(t).IssueProvisioning(evil.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.VerifyProvisioning([][]byte{fakeProv, s.der}, root.Cert, now)
	wantInvalid(t, "provisioning certified by a site", err, "was not issued by this vendor's root")

	// A clearinghouse certificate is not a provisioning certificate.
	ch, err := root.IssueClearinghouse(evil.Public(), "ACME", now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pki.VerifyProvisioning([][]byte{ch}, root.Cert, now)
	wantInvalid(t, "clearinghouse as provisioning", err, "not \"provisioning\"")
}
