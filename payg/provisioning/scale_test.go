package provisioning_test

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/pki"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/sqlstore"
)

// BenchmarkSyncScale measures a packet request (a device's signed sync:
// Authenticate, then Sync, as the vendor's handler runs them) on
// PostgreSQL against two vendor databases in the same run: one with 1,000
// registered devices and one with LICET_SCALE_DEVICES (1,000,000), their
// devices, sales, postings and one packet each bulk-loaded with
// generate_series (not through the API). Requests alternate between the
// two databases (one client, random devices, a fresh nonce each, signed by
// the device key and the initialization key outside the timed part), so
// the load of other processes on the machine falls on both alike. It
// reports p50 and p99 of each and the p99 ratio; issue 9 asks p99 at
// 1,000,000 to be at most 1.5 times p99 at 1,000. Both databases are
// dropped after.
//
//	LICET_SCALE_DEVICES=1000000 go test ./payg/provisioning -run '^$' -bench SyncScale -benchtime 1x -timeout 20m
func BenchmarkSyncScale(b *testing.B) {
	total, _ := strconv.Atoi(os.Getenv("LICET_SCALE_DEVICES"))
	if total == 0 {
		b.Skip("set LICET_SCALE_DEVICES (e.g. 1000000) to run the scale benchmark")
	}
	devKey, _ := keys.GenerateSigner()
	initKey := make([]byte, 32)
	small := newScaleVendor(b, devKey, initKey, 1000)
	large := newScaleVendor(b, devKey, initKey, total)
	const requests = 4000
	var ls, ll []time.Duration
	for i := range requests + requests/5 { // the first sixth warms up
		ds := small.sync(b, devKey, initKey, i)
		dl := large.sync(b, devKey, initKey, i)
		if i >= requests/5 {
			ls, ll = append(ls, ds), append(ll, dl)
		}
	}
	slices.Sort(ls)
	slices.Sort(ll)
	p := func(l []time.Duration, q int) time.Duration { return l[len(l)*q/100] }
	b.Logf("%d devices: p50 %s p99 %s", small.n, p(ls, 50), p(ls, 99))
	b.Logf("%d devices: p50 %s p99 %s", large.n, p(ll, 50), p(ll, 99))
	b.ReportMetric(float64(p(ls, 99).Microseconds()), "p99-1k-µs")
	b.ReportMetric(float64(p(ll, 99).Microseconds()), "p99-large-µs")
	b.ReportMetric(float64(p(ll, 99))/float64(p(ls, 99)), "p99-ratio")
	b.ReportMetric(float64(p(ls, 50).Microseconds()), "p50-1k-µs")
	b.ReportMetric(float64(p(ll, 50).Microseconds()), "p50-large-µs")
}

// scaleVendor is a vendor database of n bulk-loaded devices.
type scaleVendor struct {
	prov *provisioning.Service
	n    int
}

// newScaleVendor makes a PostgreSQL vendor database (dropped at the end)
// with n devices sharing devKey and initKey (the server looks each up by
// device ID, as for distinct keys), each with a sale, its posting and one
// packet of 1,200 bytes.
func newScaleVendor(b *testing.B, devKey *keys.Signer, initKey []byte, n int) *scaleVendor {
	ctx := context.Background()
	dsn := postgres.TestDSN(b)
	db, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlstore.NewVendor(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	raw, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	must(st.CreateCustomer(ctx, &clearinghouse.Customer{ID: "cust", Name: "Cust", Created: now}))
	bill := billing.New(st, nil)
	_, _, err = bill.AddAccount(ctx, billing.AccountRequest{ID: "acct", Customer: "cust", Currency: "EUR"}, "")
	must(err)
	_, _, err = bill.AddPlan(ctx, billing.PlanRequest{ID: "hour", Hours: 1, Price: "100", Currency: "EUR"}, "")
	must(err)
	root := testpki.Root(b, "Vendor", now.Add(-time.Hour))
	pk, _ := keys.GenerateSigner()
	der, err := root.IssueProvisioning(pk.Public(), "Vendor", now.Add(-time.Hour))
	must(err)
	prov := provisioning.New(st, &pki.Authority{Cert: mustCert(b, der), Signer: pk}, root.Cert, nil)
	start := time.Now()
	created := now.UnixNano()
	for from := 1; from <= n; from += 250_000 {
		to := min(from+250_000-1, n)
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO v_payg_devices (id, account_id, system_id, salt, fingerprint, public_key, hpke_key, init_key, cert, last_sequence, registered, flag)
			 SELECT 'dev-' || lpad(i::text, 8, '0'), 'acct', md5('sys' || i), md5('salt' || i), '{}', $3::bytea, '\x00'::bytea, $4::bytea, '\x00'::bytea, 1, $5::bigint, ''
			 FROM generate_series($1::int, $2::int) AS i`, []any{from, to, []byte(devKey.Public()), initKey, created}},
			{`INSERT INTO v_payg_sequences (device_id, last_sequence)
			 SELECT 'dev-' || lpad(i::text, 8, '0'), 1 FROM generate_series($1::int, $2::int) AS i`, []any{from, to}},
			{`INSERT INTO v_payg_postings (id, kind, account_id, reference, memo, created)
			 SELECT 'post-' || i, 'sale', 'acct', 'sale-' || i, '', $3::bigint FROM generate_series($1::int, $2::int) AS i`, []any{from, to, created}},
			{`INSERT INTO v_payg_sales (id, account_id, plan_id, device_id, new_device, price, currency, posting_id, created)
			 SELECT 'sale-' || i, 'acct', 'hour', 'dev-' || lpad(i::text, 8, '0'), false, 100, 'EUR', 'post-' || i, $3::bigint FROM generate_series($1::int, $2::int) AS i`, []any{from, to, created}},
			{`INSERT INTO v_payg_packets (device_id, sequence, sale_id, file, created)
			 SELECT 'dev-' || lpad(i::text, 8, '0'), 1, 'sale-' || i, convert_to(repeat('p', 1200), 'UTF8'), $3::bigint FROM generate_series($1::int, $2::int) AS i`, []any{from, to, created}},
		} {
			if _, err := raw.ExecContext(ctx, q.sql, q.args...); err != nil {
				b.Fatalf("bulk load: %v", err)
			}
		}
	}
	// Settle the load: statistics, visibility map, and the dirty pages
	// written, so that measuring does not pay for loading.
	for _, q := range []string{`VACUUM ANALYZE`, `CHECKPOINT`} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			b.Logf("%s: %v (measuring anyway)", q, err)
		}
	}
	b.Logf("loaded %d devices in %s", n, time.Since(start).Round(time.Millisecond))
	return &scaleVendor{prov: prov, n: n}
}

// sync times one signed sync request of a random device.
func (v *scaleVendor) sync(b *testing.B, devKey *keys.Signer, initKey []byte, i int) time.Duration {
	ctx := context.Background()
	id := fmt.Sprintf("dev-%08d", 1+rand.IntN(v.n))
	body, _ := json.Marshal(provisioning.SyncRequest{UsedSeconds: int64(i)})
	path := "/v1/payg/devices/" + id + "/sync"
	h := http.Header{}
	devicereq.Sign(h, http.MethodPost, path, id, devKey.Private(), initKey, time.Now(), body)
	start := time.Now()
	dev, err := v.prov.Authenticate(ctx, http.MethodPost, path, h, body)
	if err != nil {
		b.Fatal(err)
	}
	var req provisioning.SyncRequest
	json.Unmarshal(body, &req)
	ans, err := v.prov.Sync(ctx, dev, req)
	if err != nil || len(ans.Packets) != 1 {
		b.Fatalf("sync of %s: %v (%d packets)", id, err, len(ans.Packets))
	}
	return time.Since(start)
}

func mustCert(b *testing.B, der []byte) *x509.Certificate {
	b.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
