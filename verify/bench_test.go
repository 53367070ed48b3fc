package verify_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/internal/testpki"
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
	defer reportCPU(b)()
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

// BenchmarkVerifyRevocations is BenchmarkVerify with the vendor's list of
// revoked sites (1,000 other sites) given in the options, as a gateway
// with --revocations checks every license: the list's freshness and one map
// lookup per verification.
func BenchmarkVerifyRevocations(b *testing.B) {
	f := newFixture(b)
	v := f.verifier(b)
	l := &verify.Revocations{Vendor: "Acme", Number: 1000, Issued: epoch.Add(-time.Hour), NextUpdate: epoch.Add(7 * 24 * time.Hour)}
	for i := range 1000 {
		l.Sites = append(l.Sites, verify.RevokedSite{SiteID: fmt.Sprintf("site-%016x", i), CustomerID: "cust", Revoked: epoch.Add(-2 * time.Hour), Reason: "bench"})
	}
	ch := testpki.Clearinghouse(b, f.root, epoch.Add(-24*time.Hour))
	s, err := envelope.Sign(verify.RevokedSitesType, verify.RevokedSitesVersion, l, ch.Signer, [][]byte{ch.Cert.Raw})
	if err != nil {
		b.Fatal(err)
	}
	parsed, err := v.ParseRevocations(s.Marshal(), epoch)
	if err != nil {
		b.Fatal(err)
	}
	opts := verify.Options{Now: epoch, Product: "acme-cad", ClientKey: f.clientPub, Revocations: parsed}
	if _, err := v.Verify(f.licPEM, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := v.Verify(f.licPEM, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU reports the process's CPU time (user and system) per operation
// as cpu-ns/op when the returned function is called: steadier than ns/op on
// cores shared with other work.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
