package provisioning_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/pki"
)

// TestAuthority: the provisioning key and certificate are made once, kept
// across starts, made for a directory that lacks them (an older vendor),
// and a certificate of another key is refused.
func TestAuthority(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	root := testpki.Root(t, "Vendor", now)
	a, err := provisioning.Authority(dir, root, "Vendor", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.VerifyProvisioning([][]byte{a.Cert.Raw}, root.Cert, now); err != nil {
		t.Fatalf("provisioning certificate: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, provisioning.FileKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("provisioning key must have mode 0600: %v %v", fi, err)
	}
	b, err := provisioning.Authority(dir, root, "Vendor", now)
	if err != nil || !bytes.Equal(a.Cert.Raw, b.Cert.Raw) || !a.Signer.Public().Equal(b.Signer.Public()) {
		t.Fatalf("second start made another authority: %v", err)
	}
	os.Remove(filepath.Join(dir, provisioning.FileCert))
	c, err := provisioning.Authority(dir, root, "Vendor", now)
	if err != nil || !c.Signer.Public().Equal(a.Signer.Public()) {
		t.Fatalf("certificate issued again for the same key: %v", err)
	}
	other := t.TempDir()
	if _, err := provisioning.Authority(other, root, "Vendor", now); err != nil {
		t.Fatal(err)
	}
	crt, _ := os.ReadFile(filepath.Join(other, provisioning.FileCert))
	os.WriteFile(filepath.Join(dir, provisioning.FileCert), crt, 0o644)
	if _, err := provisioning.Authority(dir, root, "Vendor", now); err == nil {
		t.Fatal("a certificate of another key was accepted")
	}
	if _, err := provisioning.Authority(t.TempDir(), testpki.Root(t, "Other", now), "Vendor", now); err != nil {
		t.Fatal(err)
	}
}

// TestSealer: sealed secrets open under their label only.
func TestSealer(t *testing.T) {
	dir := t.TempDir()
	s, err := provisioning.LoadSealer(dir)
	if err != nil || s == nil {
		t.Fatalf("sealer: %v", err)
	}
	sealed, _ := s.Seal("initkey:dev-1", []byte("secret"))
	if bytes.Contains(sealed, []byte("secret")) {
		t.Fatal("sealed value holds the plaintext")
	}
	if got, err := s.Open("initkey:dev-1", sealed); err != nil || string(got) != "secret" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.Open("initkey:dev-2", sealed); err == nil {
		t.Fatal("a sealed value moved to another row opened")
	}
	s2, _ := provisioning.LoadSealer(dir)
	if got, err := s2.Open("initkey:dev-1", sealed); err != nil || string(got) != "secret" {
		t.Fatalf("reloaded sealer: %q %v", got, err)
	}
}
