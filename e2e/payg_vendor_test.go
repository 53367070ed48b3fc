package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/armor"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/storetest"
)

func TestPaygVendorSQLite(t *testing.T)   { testPaygVendor(t, "") }
func TestPaygVendorPostgres(t *testing.T) { testPaygVendor(t, postgres.TestDSN(t)) }

// postJSON posts body to url with headers and decodes a 200 answer.
func postJSON(t *testing.T, url string, h http.Header, body []byte, out any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s %s", url, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("POST %s: %v: %s", url, err, b)
	}
}

// testPaygVendor runs the vendor side of pay-as-you-go against a real
// 'licet vendor serve': account, plan, a new-device sale, the device's
// registration (built here with the device's keys), a sync that returns
// the sale's packet, a sale of credit (retried with its idempotency key),
// and the same packets exported to a file.
func testPaygVendor(t *testing.T, db string) {
	v := newVendor(t, db)
	for _, f := range []string{provisioning.FileKey, provisioning.FileCert, provisioning.FileDataKey} {
		if _, err := os.Stat(filepath.Join(v.dir, f)); err != nil {
			t.Fatalf("vendor init made no %s: %v", f, err)
		}
	}
	rootDER, err := clearinghouse.ReadCertFile(filepath.Join(v.dir, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)

	var acct billing.Account
	okJSON(t, &acct, v.admin("vendor", "account", "add", "--customer", "acme", "--currency", "EUR", "--id", "acme-eur")...)
	var plan billing.Plan
	okJSON(t, &plan, v.admin("vendor", "plan", "add", "--id", "week", "--days", "7", "--price", "500", "--currency", "EUR")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "hour", "--hours", "1", "--price", "100", "--currency", "EUR")...)
	fails(t, 3, "price -5 is negative", v.admin("vendor", "plan", "add", "--id", "bad", "--days", "1", "--price", "-5", "--currency", "EUR")...)
	fails(t, 3, "currency", v.admin("vendor", "plan", "add", "--id", "bad", "--days", "1", "--price", "5", "--currency", "eur")...)

	var sale provisioning.SellAnswer
	okJSON(t, &sale, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "week", "--new-device", "--idempotency-key", "order-1")...)
	if sale.Code == "" {
		t.Fatalf("new-device sale printed no code: %+v", sale)
	}
	var again provisioning.SellAnswer
	okJSON(t, &again, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "week", "--new-device", "--idempotency-key", "order-1")...)
	if again.Code != sale.Code || again.Sale.ID != sale.Sale.ID {
		t.Errorf("retried sale: %+v, first %+v", again, sale)
	}
	fails(t, 3, "Idempotency-Key", v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "hour", "--new-device", "--idempotency-key", "order-1")...)

	// The device registers (what 'licet agent payg register' sends).
	d := storetest.NewTestDevice(t, "machine-1", "install-1", storetest.Hardware("machine-1"))
	reqBody, _ := json.Marshal(d.RegisterRequest(sale.Code))
	var reg provisioning.RegisterAnswer
	postJSON(t, v.srv.URL+"/v1/payg/register", nil, reqBody, &reg)
	d.Accept(t, &reg)
	if reg.Account != "acme-eur" || len(reg.Packets) != 1 {
		t.Fatalf("registration: %+v", reg)
	}
	r := licet(t, nil, "vendor", "device", "list", "--server", v.srv.URL, "--token", v.token)
	if r.code != 0 || !strings.Contains(r.stdout, d.ID) {
		t.Fatalf("device list: %s", r)
	}

	// Sync: the packet of the sale that made the code.
	sync := func(highest uint64, used int64) provisioning.SyncAnswer {
		path := "/v1/payg/devices/" + d.ID + "/sync"
		body, _ := json.Marshal(provisioning.SyncRequest{HighestSequence: highest, UsedSeconds: used})
		h := http.Header{}
		devicereq.Sign(h, "POST", path, d.ID, d.Signer.Private(), d.InitKey, time.Now(), body)
		var ans provisioning.SyncAnswer
		postJSON(t, v.srv.URL+path, h, body, &ans)
		return ans
	}
	ans := sync(0, 0)
	if len(ans.Packets) != 1 {
		t.Fatalf("sync gave %d packets, want 1", len(ans.Packets))
	}
	p, err := packet.OpenWith([]byte(ans.Packets[0]), d.PacketKeys(), root, d.ID, time.Now())
	if err != nil {
		t.Fatalf("the synced packet does not open: %v", err)
	}
	if p.Sequence != 1 || p.Seconds != 7*86400 || p.Sale != sale.Sale.ID {
		t.Errorf("packet: %+v", p)
	}

	// A sale of credit, retried: one packet, one posting.
	var credit, credit2 provisioning.SellAnswer
	okJSON(t, &credit, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "hour", "--device", d.ID, "--idempotency-key", "topup-1")...)
	okJSON(t, &credit2, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "hour", "--device", d.ID, "--idempotency-key", "topup-1")...)
	if credit.Sequence != 2 || credit2.Packet != credit.Packet {
		t.Errorf("credit sale: seq %d; retry same packet: %v", credit.Sequence, credit2.Packet == credit.Packet)
	}
	ans = sync(1, 120)
	if len(ans.Packets) != 1 {
		t.Fatalf("second sync gave %d packets, want 1", len(ans.Packets))
	}
	if p, err := packet.OpenWith([]byte(ans.Packets[0]), d.PacketKeys(), root, d.ID, time.Now()); err != nil || p.Sequence != 2 || p.Seconds != 3600 {
		t.Errorf("second packet: %+v %v", p, err)
	}

	// The ledger: two sales, a payment; balance 600 - 600.
	ok(t, v.admin("vendor", "ledger", "--account", "acme-eur", "--pay", "600", "--currency", "EUR", "--reference", "pi_1", "--idempotency-key", "pay-1")...)
	ok(t, v.admin("vendor", "ledger", "--account", "acme-eur", "--pay", "600", "--currency", "EUR", "--reference", "pi_1", "--idempotency-key", "pay-1")...)
	fails(t, 3, "amount is 0", v.admin("vendor", "ledger", "--account", "acme-eur", "--pay", "0", "--currency", "EUR")...)
	var shown struct {
		Balance  int64              `json:"balance"`
		Postings []*billing.Posting `json:"postings"`
	}
	okJSON(t, &shown, v.admin("vendor", "account", "show", "--account", "acme-eur")...)
	if shown.Balance != 0 || len(shown.Postings) != 3 {
		t.Errorf("account: balance %d, %d postings; want 0 and 3", shown.Balance, len(shown.Postings))
	}

	// The file path: every packet, exported for a USB stick.
	file := filepath.Join(t.TempDir(), "packets.txt")
	ok(t, v.admin("vendor", "device", "packet", "export", "--device", d.ID, "-o", file)...)
	data := mustRead(t, file)
	blocks := 0
	for rest := data; len(bytes.TrimSpace(rest)) > 0; blocks++ {
		blk, err := armor.Decode(rest, armor.TypePAYGPacket)
		if err != nil {
			t.Fatalf("export block %d: %v", blocks, err)
		}
		end := bytes.Index(rest, []byte("-----END LICET PAYG PACKET-----"))
		one := rest[:end+len("-----END LICET PAYG PACKET-----")]
		if p, err := packet.OpenWith(one, d.PacketKeys(), root, d.ID, time.Now()); err != nil || p.Sequence != uint64(blocks+1) {
			t.Errorf("exported packet %d: %+v %v", blocks+1, p, err)
		}
		_ = blk
		rest = rest[end+len("-----END LICET PAYG PACKET-----"):]
	}
	if blocks != 2 {
		t.Errorf("export held %d packets, want 2", blocks)
	}

	// A restored older state shows on the device.
	sync(2, 60)
	var dev struct {
		Flag string `json:"flag"`
	}
	okJSON(t, &dev, v.admin("vendor", "device", "show", "--device", d.ID)...)
	if !strings.Contains(dev.Flag, "went back") {
		t.Errorf("device flag after a backwards report: %q", dev.Flag)
	}

	// A clone under another customer's account is refused and listed.
	ok(t, v.admin("vendor", "account", "add", "--customer", "other", "--currency", "EUR", "--id", "other-eur")...)
	var s2 provisioning.SellAnswer
	okJSON(t, &s2, v.admin("vendor", "sell", "--account", "other-eur", "--plan", "week", "--new-device")...)
	clone := storetest.NewTestDevice(t, "machine-1", "install-2", storetest.Hardware("machine-1"))
	cb, _ := json.Marshal(clone.RegisterRequest(s2.Code))
	resp, err := http.Post(v.srv.URL+"/v1/payg/register", "application/json", bytes.NewReader(cb))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("clone registration: %s, want 409", resp.Status)
	}
	var clones []provisioning.Clone
	okJSON(t, &clones, v.admin("vendor", "device", "clones")...)
	if len(clones) != 1 || clones[0].DeviceID != d.ID || clones[0].AttemptAccount != "other-eur" {
		t.Errorf("clones: %+v", clones)
	}

	// Webhook endpoint: the secret is shown once.
	var hook struct{ Secret, URL string }
	okJSON(t, &hook, v.admin("vendor", "webhook", "add", "--name", "stripe")...)
	if !strings.HasPrefix(hook.Secret, "whsec_") || hook.URL != "/v1/payg/webhooks/stripe" {
		t.Errorf("webhook: %+v", hook)
	}
}

// TestPaygVendorAgent runs the real agent against the real vendor: the
// vendor sells a device, 'licet agent payg register' registers it with the
// code, a sale of credit reaches it by 'licet agent payg sync', and another
// by a packet file ('licet vendor device packet export' then 'licet agent
// payg import'); the vendor sees the device's report.
func TestPaygVendorAgent(t *testing.T) {
	v := newVendor(t, "")
	ok(t, v.admin("vendor", "account", "add", "--customer", "acme", "--currency", "EUR", "--id", "acme-eur")...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "h2", "--hours", "2", "--price", "300", "--currency", "EUR")...)
	var sale provisioning.SellAnswer
	okJSON(t, &sale, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "h2", "--new-device")...)
	agent := filepath.Join(t.TempDir(), "agent")
	ok(t, "agent", "init", "--data", agent)
	ok(t, "agent", "payg", "register", "--data", agent, "--server", v.srv.URL, "--code", sale.Code, "--root", filepath.Join(v.dir, "root.crt"))
	fails(t, 3, "", "agent", "payg", "register", "--data", filepath.Join(t.TempDir(), "agent2"), "--server", v.srv.URL, "--code", sale.Code, "--root", filepath.Join(v.dir, "root.crt"))
	type status struct {
		DeviceID        string `json:"device_id"`
		BalanceSeconds  int64  `json:"balance_seconds"`
		HighestSequence uint64 `json:"highest_sequence"`
	}
	var st status
	okJSON(t, &st, "agent", "payg", "status", "--data", agent)
	if st.BalanceSeconds != 7200 || st.HighestSequence != 1 || st.DeviceID == "" {
		t.Fatalf("after registration: %+v", st)
	}
	ok(t, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "h2", "--device", st.DeviceID)...)
	ok(t, "agent", "payg", "sync", "--data", agent)
	okJSON(t, &st, "agent", "payg", "status", "--data", agent)
	if st.BalanceSeconds != 14400 || st.HighestSequence != 2 {
		t.Fatalf("after sync: %+v", st)
	}
	ok(t, v.admin("vendor", "sell", "--account", "acme-eur", "--plan", "h2", "--device", st.DeviceID)...)
	file := filepath.Join(t.TempDir(), "usb.txt")
	ok(t, v.admin("vendor", "device", "packet", "export", "--device", st.DeviceID, "--since", "2", "-o", file)...)
	ok(t, "agent", "payg", "import", "--data", agent, file)
	okJSON(t, &st, "agent", "payg", "status", "--data", agent)
	if st.BalanceSeconds != 21600 || st.HighestSequence != 3 {
		t.Fatalf("after import: %+v", st)
	}
	fails(t, 3, "", "agent", "payg", "import", "--data", agent, file) // a replayed packet file
	var dev struct {
		LastSequence uint64 `json:"last_sequence"`
		Report       *struct {
			HighestSequence uint64 `json:"highest_sequence"`
		} `json:"report"`
	}
	okJSON(t, &dev, v.admin("vendor", "device", "show", "--device", st.DeviceID)...)
	if dev.LastSequence != 3 || dev.Report == nil || dev.Report.HighestSequence != 1 {
		t.Errorf("vendor's view of the device: %+v", dev)
	}
}
