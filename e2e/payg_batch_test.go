package e2e

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/storetest"
)

func TestPaygBatchSaleSQLite(t *testing.T)   { testPaygBatchSale(t, "") }
func TestPaygBatchSalePostgres(t *testing.T) { testPaygBatchSale(t, postgres.TestDSN(t)) }

// testPaygBatchSale runs 'licet vendor sell --batch' against a real
// 'licet vendor serve': three registered devices; a CSV batch with one bad
// line fails naming the line and sells nothing (no posting, no packet, no
// sequence); the corrected batch sells all three in one transaction, a
// retry with its idempotency key returns the first answer and sells
// nothing more; a JSON-lines batch continues the devices' sequences; a
// device's sync returns its batch packets, which open with its keys.
func testPaygBatchSale(t *testing.T, db string) {
	t.Parallel()
	v := newVendor(t, db)
	rootDER, err := clearinghouse.ReadCertFile(filepath.Join(v.dir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	ok(t, v.admin("vendor", "account", "add", "--customer", "acme", "--currency", "EUR", "--id", "acme-eur")...)
	ok(t, v.admin("vendor", "account", "add", "--customer", "other", "--currency", "EUR", "--id", "other-eur")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "week", "--days", "7", "--price", "500", "--currency", "EUR")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "hour", "--hours", "1", "--price", "100", "--currency", "EUR")...)
	var devs []*storetest.TestDevice
	for i := range 3 {
		var sale provisioning.SellAnswer
		okJSON(t, &sale, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "week", "--new-device")...)
		d := storetest.NewTestDevice(t, fmt.Sprint("machine-", i), fmt.Sprint("install-", i), storetest.Hardware(fmt.Sprint("machine-", i)))
		body, _ := json.Marshal(d.RegisterRequest(sale.Code))
		var reg provisioning.RegisterAnswer
		postJSON(t, v.srv.URL+"/v1/payg/register", nil, body, &reg)
		d.Accept(t, &reg)
		devs = append(devs, d)
	}
	// state is what a failed batch must leave alone: the account's
	// postings and balance, and each device's last sequence.
	state := func() string {
		var posts []billing.Posting
		okJSON(t, &posts, v.admin("vendor", "ledger", "--account", "acme-eur")...)
		var a billing.Account
		okJSON(t, &a, v.admin("vendor", "account", "show", "--account", "acme-eur")...)
		s := fmt.Sprintf("%d postings, balance %d;", len(posts), a.Balance)
		for _, d := range devs {
			var dev provisioning.Device
			okJSON(t, &dev, v.admin("vendor", "device", "show", "--device", d.ID)...)
			s += fmt.Sprintf(" %s last %d;", d.ID, dev.LastSequence)
		}
		return s
	}
	before := state()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	bad := write("bad.csv", "account,plan,device\n# the monthly run\n"+
		"acme-eur,hour,"+devs[0].ID+"\nacme-eur,week,"+devs[1].ID+"\nacme-eur,hour,dev-missing\n")
	fails(t, 3, `line 5 of .*bad.csv.*nothing of the batch was sold.*dev-missing.* is not registered`, v.admin("vendor", "sell", "--batch", bad)...)
	wrongAcct := write("wrong.csv", "acme-eur,hour,"+devs[0].ID+"\nother-eur,hour,"+devs[2].ID+"\n")
	fails(t, 3, `line 2 of .*belongs to account acme-eur, not other-eur`, v.admin("vendor", "sell", "--batch", wrongAcct)...)
	fails(t, 2, `line 1 of .*not a JSON object`, v.admin("vendor", "sell", "--batch", write("bad.jsonl", `{"account":"acme-eur","plan":"hour","devise":"x"}`+"\n"))...)
	fails(t, 2, `not CSV of account,plan,device`, v.admin("vendor", "sell", "--batch", write("short.csv", "acme-eur,hour\n"))...)
	fails(t, 2, `--batch takes the account, plan and device`, v.admin("vendor", "sell", "--batch", bad, "--account", "acme-eur")...)
	if got := state(); got != before {
		t.Fatalf("failed batches sold something:\n got %s\nwant %s", got, before)
	}

	good := write("good.csv", "account,plan,device\n"+
		"acme-eur,hour,"+devs[0].ID+"\nacme-eur,week,"+devs[1].ID+"\nacme-eur,hour,"+devs[2].ID+"\n")
	var ans provisioning.BatchAnswer
	okJSON(t, &ans, v.admin("vendor", "sell", "--batch", good, "--idempotency-key", "run-2026-11")...)
	if len(ans.Sales) != 3 {
		t.Fatalf("batch answer: %+v", ans)
	}
	for i, s := range ans.Sales {
		if s.Device != devs[i].ID || s.Sequence != 2 || s.Account != "acme-eur" {
			t.Errorf("batch sale %d: %+v, want device %s at sequence 2", i, s, devs[i].ID)
		}
	}
	var again provisioning.BatchAnswer
	okJSON(t, &again, v.admin("vendor", "sell", "--batch", good, "--idempotency-key", "run-2026-11")...)
	if len(again.Sales) != 3 || again.Sales[2].Sale != ans.Sales[2].Sale {
		t.Fatalf("retried batch: %+v, want the first answer %+v", again, ans)
	}
	fails(t, 3, "Idempotency-Key", v.admin("vendor", "sell", "--batch", bad, "--idempotency-key", "run-2026-11")...)
	var a billing.Account
	okJSON(t, &a, v.admin("vendor", "account", "show", "--account", "acme-eur")...)
	if a.Balance != 3*500+100+500+100 {
		t.Fatalf("balance %d after three devices and a batch (hour, week, hour) sold once, want %d", a.Balance, 3*500+700)
	}

	jsonl := write("more.jsonl", `{"account":"acme-eur","plan":"hour","device":"`+devs[1].ID+`"}`+"\n\n")
	out := ok(t, v.admin("vendor", "sell", "--batch", jsonl)...)
	if !strings.Contains(out, "Sold 1 plans to 1 devices in one transaction") {
		t.Fatalf("batch output: %s", out)
	}

	// Device 1's sync returns its batch packets: the week, then the hour.
	d := devs[1]
	path := "/v1/payg/devices/" + d.ID + "/sync"
	body, _ := json.Marshal(provisioning.SyncRequest{HighestSequence: 1})
	h := http.Header{}
	devicereq.Sign(h, "POST", path, d.ID, d.Signer.Private(), d.InitKey, time.Now(), body)
	var sync provisioning.SyncAnswer
	postJSON(t, v.srv.URL+path, h, body, &sync)
	if len(sync.Packets) != 2 {
		t.Fatalf("sync after the batches gave %d packets, want 2", len(sync.Packets))
	}
	for i, want := range []int64{7 * 86400, 3600} {
		p, err := packet.OpenWith([]byte(sync.Packets[i]), d.PacketKeys(), root, d.ID, time.Now())
		if err != nil {
			t.Fatalf("batch packet %d does not open: %v", i, err)
		}
		if p.Sequence != uint64(i+2) || p.Seconds != want {
			t.Errorf("batch packet %d: %+v, want sequence %d of %d seconds", i, p, i+2, want)
		}
	}
	if p, _ := packet.OpenWith([]byte(sync.Packets[0]), d.PacketKeys(), root, d.ID, time.Now()); p != nil && p.Sale != ans.Sales[1].Sale {
		t.Errorf("packet 2 carries sale %s, want the batch's %s", p.Sale, ans.Sales[1].Sale)
	}
}
