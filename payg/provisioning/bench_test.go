package provisioning_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store/sqlite"
	"github.com/licet/licet/store/sqlstore"
	"github.com/licet/licet/store/storetest"
)

// benchVendor is a vendor on a SQLite file with one account, one plan and
// n registered devices.
type benchVendor struct {
	prov    *provisioning.Service
	devices []*storetest.TestDevice
	ids     []string // every device: devices', then addBenchDevices'
	root    *x509.Certificate
}

func newBenchVendor(b *testing.B, n int) *benchVendor {
	b.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "vendor.db"))
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlstore.NewVendor(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(st.CreateCustomer(ctx, &clearinghouse.Customer{ID: "cust", Name: "Cust", Created: time.Now()}))
	bill := billing.New(st, nil)
	_, _, err = bill.AddAccount(ctx, billing.AccountRequest{ID: "acct", Customer: "cust", Currency: "EUR"}, "")
	must(err)
	_, _, err = bill.AddPlan(ctx, billing.PlanRequest{ID: "hour", Hours: 1, Price: "100", Currency: "EUR"}, "")
	must(err)
	now := time.Now()
	root := testpki.Root(b, "Vendor", now.Add(-time.Hour))
	pk, err := keys.GenerateSigner()
	must(err)
	der, err := root.IssueProvisioning(pk.Public(), "Vendor", now.Add(-time.Hour))
	must(err)
	cert, err := x509.ParseCertificate(der)
	must(err)
	sealer, err := provisioning.NewAESSealer(make([]byte, 32))
	must(err)
	v := &benchVendor{prov: provisioning.New(st, &pki.Authority{Cert: cert, Signer: pk}, root.Cert, sealer), root: root.Cert}
	for i := range n {
		sale, _, err := v.prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "hour", NewDevice: true}, "")
		must(err)
		d := storetest.NewTestDevice(b, fmt.Sprint("m", i), fmt.Sprint("s", i), storetest.Hardware(fmt.Sprint("m", i)))
		ans, err := v.prov.Register(ctx, d.RegisterRequest(sale.Code))
		must(err)
		d.Accept(b, ans)
		v.devices = append(v.devices, d)
	}
	return v
}

// addBenchDevices registers n more devices of account "acct" directly in
// the store (not through Register, whose keys, certificate and sealed
// initialization key per device would take most of the setup): each has
// the HPKE key and certificate of the first real device and its own
// initialization key, sealed under the vendor's data key as Register seals
// it, so its packets are made as any device's.
func (v *benchVendor) addBenchDevices(b *testing.B, n int) {
	b.Helper()
	ctx := context.Background()
	first, err := v.prov.Store.PaygDevice(ctx, v.devices[0].ID)
	if err != nil {
		b.Fatal(err)
	}
	_, _, err = v.prov.Store.ProvisionWrite(ctx, billing.Idempotency{}, func(tx provisioning.Tx) ([]byte, error) {
		for i := range n {
			d := *first
			d.ID, d.SystemID, d.Salt, d.Registered = fmt.Sprintf("dev-bench-%06d", i), fmt.Sprint("sys-bench-", i), fmt.Sprint("salt-bench-", i), time.Now()
			initKey := make([]byte, provisioning.InitKeySize)
			rand.Read(initKey)
			if d.InitKey, err = v.prov.Secrets.Seal("initkey:"+d.ID, initKey); err != nil {
				return nil, err
			}
			if err := tx.InsertDevice(ctx, &d); err != nil {
				return nil, err
			}
			v.ids = append(v.ids, d.ID)
		}
		return nil, nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPackets measures packets per second on SQLite, beside the
// baseline of bare Ed25519 signatures in the same run:
//   - make-packet-v2: a packet generated, signed by the provisioning key and
//     sealed (format version 2: AES-256-GCM under the device's
//     initialization key), what the vendor makes;
//   - make-packet-v1: the same sealed to the device's HPKE key
//     (MLKEM768-X25519, format version 1), for comparison;
//   - sell-batch-N-sqlite: batch sales (SellBatch) of N devices each, every
//     sale a ledger posting, a sequence allocated, a packet made and
//     stored, one durable transaction per batch; an op is a batch;
//   - sell-sqlite: single sales, one durable transaction each (Sell).
//
// Run: go test ./payg/provisioning -run '^$' -bench Packets -benchtime 3s
func BenchmarkPackets(b *testing.B) {
	b.Run("ed25519-sign", func(b *testing.B) {
		s, _ := keys.GenerateSigner()
		msg := make([]byte, 200)
		cpu := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ed25519.Sign(s.Private(), msg)
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signs/s")
		b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/sign")
	})
	v := newBenchVendor(b, 1000)
	plan := &billing.Plan{ID: "hour", Kind: billing.PlanHours, Quantity: 1}
	var devs []*provisioning.Device
	for _, d := range v.devices {
		dev, err := v.prov.Store.PaygDevice(context.Background(), d.ID)
		if err != nil {
			b.Fatal(err)
		}
		devs = append(devs, dev)
	}
	for _, version := range []int{2, 1} {
		b.Run(fmt.Sprintf("make-packet-v%d", version), func(b *testing.B) {
			prov := provisioning.New(v.prov.Store, v.prov.Authority, v.prov.Root, v.prov.Secrets)
			prov.PacketVersion = version
			var seq atomic.Uint64
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					if _, err := prov.MakePacket(devs[n%uint64(len(devs))], n, plan, "sale-x", time.Now()); err != nil {
						b.Fatal(err)
					}
				}
			})
			reportPackets(b, b.N, cpu)
		})
	}
	for _, d := range v.devices {
		v.ids = append(v.ids, d.ID)
	}
	v.addBenchDevices(b, 9000)
	batched := false // a batch of 10,000 ran: the bulk-loaded devices have packets
	for _, size := range []int{1000, 10000} {
		var req provisioning.BatchRequest
		for _, id := range v.ids[:size] {
			req.Sales = append(req.Sales, provisioning.BatchItem{Account: "acct", Plan: "hour", Device: id})
		}
		b.Run(fmt.Sprintf("sell-batch-%d-sqlite", size), func(b *testing.B) {
			cpu := processCPU()
			for b.Loop() {
				ans, _, err := v.prov.SellBatch(context.Background(), req, "")
				if err != nil {
					b.Fatal(err)
				}
				if len(ans.Sales) != size {
					b.Fatalf("a batch of %d recorded %d sales", size, len(ans.Sales))
				}
			}
			reportPackets(b, b.N*size, cpu)
			batched = batched || size == len(v.ids)
		})
	}
	b.Run("sell-sqlite", func(b *testing.B) {
		var i atomic.Uint64
		b.SetParallelism(32) // 64 callers on 2 cores: group commit batches them
		cpu := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				d := v.devices[i.Add(1)%uint64(len(v.devices))]
				if _, _, err := v.prov.Sell(context.Background(), provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d.ID}, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
		reportPackets(b, b.N, cpu)
	})
	// The packets are real: the first device's and a bulk-loaded one's are
	// gapless, and the last of each opens.
	check := func(id string, keys packet.Keys) {
		ps, err := v.prov.Store.Packets(context.Background(), id, 0)
		if err != nil || len(ps) == 0 {
			b.Fatalf("packets of %s: %d, %v", id, len(ps), err)
		}
		for i, p := range ps {
			if p.Sequence != uint64(i+1) {
				b.Fatalf("packet %d of %s has sequence %d", i+1, id, p.Sequence)
			}
		}
		if keys.InitKey != nil {
			if _, err := packet.OpenWith(ps[len(ps)-1].File, keys, v.root, id, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	}
	check(v.devices[0].ID, v.devices[0].PacketKeys())
	if batched {
		check(v.ids[len(v.ids)-1], packet.Keys{})
	}
}

// reportPackets reports packets per second and the CPU time per packet
// since cpu (processCPU's).
func reportPackets(b *testing.B, packets int, cpu time.Duration) {
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "packets/s")
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(packets), "cpu-µs/packet")
}

// processCPU is the CPU time (user and system) the process has used: what a
// packet costs whatever else the machine runs.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
