package verify_test

import (
	"encoding/pem"
	"testing"

	"github.com/licet/licet/verify"
)

// FuzzNew feeds arbitrary root certificate files (PEM or DER) to verify.New,
// which reads the root an application is given: it must not panic, and a
// root it accepts must be usable to verify (and refuse) a license file.
func FuzzNew(f *testing.F) {
	root := newRoot(f, "Acme")
	f.Add(root.Cert.Raw)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := verify.New(data)
		if err != nil {
			return
		}
		if _, err := v.Verify([]byte("not a license"), verify.Options{Now: epoch}); err == nil {
			t.Fatal("a root from fuzz input accepted garbage as a license")
		}
	})
}
