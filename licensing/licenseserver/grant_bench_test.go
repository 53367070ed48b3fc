package licenseserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/challenge"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/clientimage"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/licensing/softid"
	"github.com/licet/licet/store"
)

// newSite makes a vendor and a certified site with a pack of seats of
// product "app" for non-windows clients and a registered 64 KiB image.
func newSite(tb testing.TB, seats int) (*licenseserver.Server, softid.ID, []byte) {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	if _, err := clearinghouse.Init(ctx, filepath.Join(dir, "vendor"), "Bench", "", store.OpenVendor); err != nil {
		tb.Fatal(err)
	}
	vs, err := clearinghouse.Open(ctx, filepath.Join(dir, "vendor"), "", store.OpenVendor)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { vs.Close() })
	must(tb, vs.AddProduct(ctx, &clearinghouse.Product{ID: "app", Version: "1.0"}))
	must(tb, vs.AddCustomer(ctx, &clearinghouse.Customer{ID: "acme"}))
	code, _, err := vs.CreateEnrollment(ctx, "acme")
	must(tb, err)
	id, _, err := licenseserver.Init(ctx, filepath.Join(dir, "site"), licenseserver.InitOptions{
		Enroll: func(ctx context.Context, req []byte) ([]byte, error) {
			chain, err := vs.EnrollSite(ctx, code, mustDecode(tb, req))
			return licenseserver.EncodeCertificate(chain), err
		}}, store.OpenSite)
	must(tb, err)
	st, err := id.OpenStore(ctx, "", store.OpenSite)
	must(tb, err)
	tb.Cleanup(func() { st.Close() })
	srv := &licenseserver.Server{ID: id, Store: st, Now: time.Now}
	o := &clearinghouse.Order{CustomerID: "acme", ProductID: "app", Platform: "non-windows", Quantity: seats}
	must(tb, vs.AddOrder(ctx, o))
	preq, err := srv.PurchaseRequest(o.ID)
	must(tb, err)
	file, _, err := vs.IssuePack(ctx, preq)
	must(tb, err)
	_, err = srv.InstallPack(ctx, file)
	must(tb, err)
	image := make([]byte, 64<<10)
	rand.Read(image)
	sid, _ := softid.Make("non-windows", 1, 1)
	sum, size, _ := clientimage.Hash(bytes.NewReader(image))
	sig, err := clientimage.Sign(&clientimage.Manifest{SoftwareID: uint32(sid), Name: "app", SHA256: sum, Size: size}, vs.Clearinghouse, vs.ClearinghouseChain)
	must(tb, err)
	_, err = srv.AddImage(ctx, sig, bytes.NewReader(image))
	must(tb, err)
	return srv, sid, image
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func mustDecode(tb testing.TB, armored []byte) []byte {
	tb.Helper()
	blk, err := decodeRequest(armored)
	must(tb, err)
	return blk
}

// grant runs one client's whole grant in-process.
func grant(tb testing.TB, srv *licenseserver.Server, sid softid.ID, image []byte, sig *keys.Signer, dec *keys.Decrypter) *licenseserver.Grant {
	ctx := context.Background()
	ch, err := srv.NewChallenge(ctx, licenseserver.ChallengeRequest{SoftwareID: uint32(sid), ProductID: "app", ClientKey: sig.Public()})
	must(tb, err)
	answer, err := challenge.Answer(ch.Nonce, bytes.NewReader(image))
	must(tb, err)
	req := &licenseserver.GrantRequest{ChallengeID: ch.ChallengeID, Answer: answer, ClientKey: sig.Public(),
		ClientHPKEKey: dec.PublicBytes(), SystemID: "sys-bench", ProductID: "app"}
	req.Signature = sig.Sign(licenseserver.GrantMessage(req))
	g, err := srv.Grant(ctx, req)
	must(tb, err)
	return g
}

// newBenchSite makes a site with seats for b.N clients, and their keys.
func newBenchSite(b *testing.B) (*licenseserver.Server, softid.ID, []byte, []*keys.Signer, *keys.Decrypter) {
	srv, sid, image := newSite(b, b.N+10)
	sigs := make([]*keys.Signer, b.N)
	for i := range sigs {
		sigs[i], _ = keys.GenerateSigner()
	}
	dec, _ := keys.GenerateDecrypter()
	return srv, sid, image, sigs, dec
}

// BenchmarkGrantSQLite measures whole durable grants (challenge, answer,
// seat assignment, signed and encrypted license) in-process on SQLite.
func BenchmarkGrantSQLite(b *testing.B) {
	srv, sid, image, sigs, dec := newBenchSite(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		grant(b, srv, sid, image, sigs[i], dec)
	}
}

// BenchmarkGrantSQLiteParallel is BenchmarkGrantSQLite with 64 clients at
// once (b.SetParallelism), as the site serves them: their transactions share
// group commits, and what each grant does while the single writer is held
// decides the rate.
func BenchmarkGrantSQLiteParallel(b *testing.B) {
	srv, sid, image, sigs, dec := newBenchSite(b)
	var next atomic.Int64
	b.SetParallelism(32) // 64 goroutines on the two cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			grant(b, srv, sid, image, sigs[next.Add(1)-1], dec)
		}
	})
}
