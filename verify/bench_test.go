package verify_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"testing"

	"github.com/licet/licet/verify"
)

// The target (DESIGN.md section 6): Verify within 1.3x of a bare
// ed25519.Verify over the same bytes, BenchmarkBareEd25519Verify.
//
//	go test -run='^$' -bench=. -benchtime=2s -count=3 ./verify

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	v := f.verifier(b)
	opts := verify.Options{Now: epoch, Product: "acme-cad", ClientKey: f.clientPub}
	if _, err := v.Verify(f.licPEM, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(f.licPEM, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyChain is Verify without the PEM decoding, as a gateway
// checking a TLS peer's certificates calls it.
func BenchmarkVerifyChain(b *testing.B) {
	f := newFixture(b)
	v := f.verifier(b)
	chain := [][]byte{f.licDER, f.site.Cert.Raw}
	opts := verify.Options{Now: epoch, Product: "acme-cad", ClientKey: f.clientPub}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyChain(chain, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareEd25519Verify is the floor: the license signature checked
// over the license's TBS bytes and nothing else.
func BenchmarkBareEd25519Verify(b *testing.B) {
	f := newFixture(b)
	c, err := x509.ParseCertificate(f.licDER)
	if err != nil {
		b.Fatal(err)
	}
	pub := f.site.Signer.Public()
	tbs, sig := c.RawTBSCertificate, c.Signature
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, tbs, sig) {
			b.Fatal("signature does not verify")
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	f := newFixture(b)
	v := f.verifier(b)
	opts := verify.Options{Now: epoch, Product: "acme-cad", ClientKey: f.clientPub}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(f.licPEM, opts); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkBareEd25519VerifyParallel(b *testing.B) {
	f := newFixture(b)
	c, err := x509.ParseCertificate(f.licDER)
	if err != nil {
		b.Fatal(err)
	}
	pub := f.site.Signer.Public()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !ed25519.Verify(pub, c.RawTBSCertificate, c.Signature) {
				b.Error("signature does not verify")
				return
			}
		}
	})
}
