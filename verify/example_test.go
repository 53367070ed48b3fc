package verify_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/licet/licet/verify"
)

// exampleFiles stands in for the two files an application has: the vendor
// root certificate it ships with, and the license file the client received
// from its license server, with the client's public key.
func exampleFiles() (rootPEM, licensePEM []byte, clientKey []byte) {
	f := newFixture(exampleTester{})
	return f.rootPEM, f.licPEM, f.clientPub
}

type exampleTester struct{}

func (exampleTester) Helper()           {}
func (exampleTester) Fatal(args ...any) { log.Fatal(args...) }

func Example() {
	rootPEM, licensePEM, clientKey := exampleFiles()

	// Once, at start: the vendor root is the only thing the verifier trusts.
	v, err := verify.New(rootPEM)
	if err != nil {
		log.Fatal(err)
	}

	// Per check: offline, no network.
	lic, err := v.Verify(licensePEM, verify.Options{
		Now:       time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), // zero: time.Now()
		Product:   "acme-cad",
		ClientKey: clientKey, // this machine's key: a copied license fails
	})
	switch {
	case errors.Is(err, verify.ErrExpired):
		log.Fatal("license expired; renew it at the license server: ", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println(lic.ProductID, lic.ProductVersion, lic.Features)
	fmt.Println("license", lic.LicenseID, "valid until", lic.NotAfter.Format(time.DateOnly))
	fmt.Println("export allowed:", lic.HasFeature("export"))

	// A license checked for another product fails with a message saying why.
	_, err = v.Verify(licensePEM, verify.Options{Now: lic.NotBefore, Product: "acme-cam"})
	fmt.Println(errors.Is(err, verify.ErrWrongProduct))
	// Output:
	// acme-cad 4.2 [render export]
	// license 1001 valid until 2026-04-30
	// export allowed: true
	// true
}
