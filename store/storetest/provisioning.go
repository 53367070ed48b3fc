package storetest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/testpki"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/payg/openpaygo"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/pki"
)

// TestProvisioning runs the conformance suite of provisioning.Store.
func TestProvisioning(t *testing.T, open func(t *testing.T) PaygStore) {
	sub := parallel(t)
	sub("RegisterAndPacket", func(t *testing.T) { testProvRegister(t, open(t)) })
	sub("CodeUsedTwice", func(t *testing.T) { testProvCodeTwice(t, open(t)) })
	sub("CodeConcurrent", func(t *testing.T) { testProvCodeConcurrent(t, open(t)) })
	sub("Clone", func(t *testing.T) { testProvClone(t, open(t)) })
	sub("SameHardwareSameAccount", func(t *testing.T) { testProvSameAccount(t, open(t)) })
	sub("ReregisterCode", func(t *testing.T) { testProvReregisterCode(t, open(t)) })
	sub("SellIdempotent", func(t *testing.T) { testProvSellIdempotent(t, open(t)) })
	sub("ConcurrentSalesGapless", func(t *testing.T) { testProvGapless(t, open(t)) })
	sub("Nonces", func(t *testing.T) { testProvNonces(t, open(t)) })
	sub("ReportsBackwards", func(t *testing.T) { testProvReports(t, open(t)) })
	sub("SellBatch", func(t *testing.T) { testProvBatch(t, open) })
	sub("SellBatchStaleKeys", func(t *testing.T) { testProvBatchStaleKeys(t, open(t)) })
	sub("SellKeypad", func(t *testing.T) { testProvKeypadSale(t, open(t)) })
}

// testProvKeypadSale: a sale to a keypad device posts the sale and issues
// the device's OpenPAYGO token in one transaction; a retry under the same
// key returns the same token and posts nothing; plans convert to the
// device's units as KeypadCredit documents; a refused token sells nothing.
func testProvKeypadSale(t *testing.T, st PaygStore) {
	kst, isKeypad := st.(keypadvendor.Store)
	if !isKeypad {
		t.Skip("this store keeps no keypad devices")
	}
	f := NewPaygFixture(t, st)
	ctx := t.Context()
	sealer, err := keypadvendor.NewSealer(make([]byte, 32))
	ok(t, err, "keypad sealer")
	ks := keypadvendor.New(kst, sealer)
	ks.Now = f.Clock.Now
	f.Prov.Keypad = ks
	key := "a29ab82edc5fbbc41ec9530f6dac86b1"
	code := uint32(123456789)
	_, err = ks.Register(ctx, keypadvendor.Registration{Serial: "KP-1", Key: key, StartingCode: &code})
	ok(t, err, "register KP-1")
	_, err = ks.Register(ctx, keypadvendor.Registration{Serial: "KP-24", Key: key, StartingCode: &code, Divider: 24})
	ok(t, err, "register KP-24")
	k, _ := openpaygo.ParseKey(key)
	dev := openpaygo.Device{Key: k, StartingCode: code}
	before := balance(t, st, "acct")

	// A week to KP-1: ADD_TIME 7 (days times divider 1).
	req := provisioning.SellRequest{Account: "acct", Plan: "week", KeypadDevice: "KP-1"}
	ans, replayed, err := f.Prov.Sell(ctx, req, "kp-sale-1")
	ok(t, err, "sell a week to a keypad device")
	if replayed || ans.Token == nil || ans.Token.Token == "" || ans.Sale.KeypadDevice != "KP-1" || ans.Packet != "" || ans.Code != "" {
		t.Fatalf("keypad sale answer: %+v (replayed %v)", ans, replayed)
	}
	res, err := openpaygo.Decode(dev, ans.Token.Token, keypadvendor.InitialCount, nil, false)
	ok(t, err, "decode the sale's token")
	if res.Status != openpaygo.Valid || res.Type != openpaygo.AddTime || res.Value != 7 || res.Count != ans.Token.Count {
		t.Fatalf("decoded %+v, want a valid ADD_TIME of 7 at count %d", res, ans.Token.Count)
	}
	again, replayed, err := f.Prov.Sell(ctx, req, "kp-sale-1")
	ok(t, err, "retry the keypad sale")
	if !replayed || again.Token == nil || again.Token.Token != ans.Token.Token || again.Sale.ID != ans.Sale.ID {
		t.Fatalf("retried keypad sale: %+v, want the first token %s", again.Token, ans.Token.Token)
	}
	if got := balance(t, st, "acct"); got != before+500 {
		t.Fatalf("balance %d after one keypad sale and its retry, want %d", got, before+500)
	}
	toks, err := ks.Tokens(ctx, "KP-1")
	ok(t, err, "tokens of KP-1")
	if len(toks) != 1 || toks[0].IssuedBy != "sale "+ans.Sale.ID {
		t.Fatalf("KP-1 tokens %+v, want one issued by the sale", toks)
	}

	// An hour to KP-24: 1 unit; to KP-1 (one unit a day) less than a unit:
	// refused, and nothing is sold.
	ans, _, err = f.Prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "hour", KeypadDevice: "KP-24"}, "")
	ok(t, err, "sell an hour to KP-24")
	if res, _ := openpaygo.Decode(dev, ans.Token.Token, keypadvendor.InitialCount, nil, false); res.Value != 1 || *ans.Token.Value != 1 {
		t.Fatalf("an hour on divider 24: decoded %+v, answer %d, want 1 unit", res, *ans.Token.Value)
	}
	_, _, err = f.Prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "hour", KeypadDevice: "KP-1"}, "")
	if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "less than one unit") {
		t.Fatalf("an hour on divider 1: %v, want refused as less than one unit", err)
	}
	// A plan until a date is refused with its reason.
	until := f.Clock.Now().Add(30 * 24 * time.Hour)
	_, _, err = f.Billing.AddPlan(ctx, billing.PlanRequest{ID: "until", Until: &until, Price: "100", Currency: "EUR"}, "")
	ok(t, err, "add an until plan")
	_, _, err = f.Prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "until", KeypadDevice: "KP-1"}, "")
	if !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "until a date") {
		t.Fatalf("an until plan to a keypad device: %v", err)
	}
	// An unknown device names the flag.
	_, _, err = f.Prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "week", KeypadDevice: "KP-9"}, "")
	if !errs.Is(err, errs.NotFound) || !strings.Contains(err.Error(), "keypad_device") {
		t.Fatalf("a sale to an unknown keypad device: %v", err)
	}
	if got := balance(t, st, "acct"); got != before+600 {
		t.Fatalf("balance %d after the refused sales, want %d (only the week and the hour sold)", got, before+600)
	}
	if d, _ := ks.Device(ctx, "KP-1"); d.LastCount != toks[0].Count {
		t.Fatalf("KP-1's last count %d, want %d: a refused sale moved it", d.LastCount, toks[0].Count)
	}
}

// oneAtATime hides a store's batch capabilities (provisioning.BatchStore,
// provisioning.BatchTx), so that SellBatch writes a sale at a time.
type oneAtATime struct{ provisioning.Store }

// ProvisionWrite implements provisioning.Store with a Tx that has only the
// methods of provisioning.Tx.
func (s oneAtATime) ProvisionWrite(ctx context.Context, idem billing.Idempotency, fn func(tx provisioning.Tx) ([]byte, error)) ([]byte, bool, error) {
	return s.Store.ProvisionWrite(ctx, idem, func(tx provisioning.Tx) ([]byte, error) { return fn(struct{ provisioning.Tx }{tx}) })
}

// batchOf is a batch of plan sold to devices of acct.
func batchOf(acct, plan string, devs ...*TestDevice) provisioning.BatchRequest {
	var req provisioning.BatchRequest
	for _, d := range devs {
		req.Sales = append(req.Sales, provisioning.BatchItem{Account: acct, Plan: plan, Device: d.ID})
	}
	return req
}

// ledgerState is what a failed batch must leave as it was: every balance,
// the number of postings and every device's packets.
func ledgerState(t *testing.T, st PaygStore, devs ...*TestDevice) string {
	t.Helper()
	ctx := t.Context()
	ps, err := st.Postings(ctx, "")
	ok(t, err, "list postings")
	state := fmt.Sprintf("postings %d acct %d acct2 %d;", len(ps), balance(t, st, "acct"), balance(t, st, "acct2"))
	for _, d := range devs {
		pk, err := st.Packets(ctx, d.ID, 0)
		ok(t, err, "packets")
		dev, err := st.PaygDevice(ctx, d.ID)
		ok(t, err, "device")
		state += fmt.Sprintf(" %s: %d packets, last %d;", d.ID, len(pk), dev.LastSequence)
	}
	return state
}

// testProvBatch runs the batch conformance test on the store as it is
// (its batch capabilities: multi-row statements) and with them hidden
// (a statement at a time): both must record the same.
func testProvBatch(t *testing.T, open func(t *testing.T) PaygStore) {
	t.Run("Multi", func(t *testing.T) {
		st := open(t)
		testProvBatchWith(t, st, st)
	})
	t.Run("OneAtATime", func(t *testing.T) {
		st := open(t)
		testProvBatchWith(t, st, oneAtATime{st})
	})
}

// testProvBatchWith: a batch sale is one transaction, so a batch with one
// bad sale (wherever it is) stores nothing: no posting, sale, packet or
// sequence; each device of a good batch gets its next packet, of its own
// plan and account, each sale balances; a retry under the same key returns
// the first answer without a second posting.
func testProvBatchWith(t *testing.T, st PaygStore, ps provisioning.Store) {
	f := NewPaygFixture(t, st)
	f.Prov.Store = ps
	ctx := t.Context()
	var devs []*TestDevice
	for i := range 5 {
		d := NewTestDevice(t, fmt.Sprint("m", i), fmt.Sprint("s", i), Hardware(fmt.Sprint("m", i)))
		acct := "acct"
		if i == 4 {
			acct = "acct2"
		}
		f.Register(t, d, acct)
		devs = append(devs, d)
	}
	d1, d2, d3, d4, other := devs[0], devs[1], devs[2], devs[3], devs[4]
	_, _, err := f.Billing.AddPlan(ctx, billing.PlanRequest{ID: "usd", Hours: 1, Price: "100", Currency: "USD"}, "")
	ok(t, err, "add a plan in USD")
	before := ledgerState(t, st, devs...)

	good := batchOf("acct", "hour", d1, d2, d3, d4)
	bad := []struct {
		name, says string
		kind       errs.Kind
		req        provisioning.BatchRequest
	}{
		{"a device of another account", "sales[3]: device " + other.ID + " belongs to account acct2", errs.Conflict, batchOf("acct", "hour", d1, d2, d3, other)},
		{"an unknown device", "sales[4]: device \"dev-missing\" is not registered", errs.NotFound,
			provisioning.BatchRequest{Sales: append(good.Sales[:4:4], provisioning.BatchItem{Account: "acct", Plan: "hour", Device: "dev-missing"})}},
		{"an unknown plan", "sales[2]: plan \"nope\" not found", errs.NotFound,
			provisioning.BatchRequest{Sales: []provisioning.BatchItem{good.Sales[0], good.Sales[1], {Account: "acct", Plan: "nope", Device: d3.ID}}}},
		{"an unknown account", "sales[1]: account \"nobody\" not found", errs.NotFound,
			provisioning.BatchRequest{Sales: []provisioning.BatchItem{good.Sales[0], {Account: "nobody", Plan: "hour", Device: d2.ID}}}},
		{"a plan in another currency", "sales[3]: currency", errs.Invalid,
			provisioning.BatchRequest{Sales: []provisioning.BatchItem{good.Sales[0], good.Sales[1], good.Sales[2], {Account: "acct", Plan: "usd", Device: d4.ID}}}},
		{"a device listed twice", "sales[2]: device " + d1.ID + " is listed twice", errs.Invalid, batchOf("acct", "hour", d1, d2, d1)},
		{"an empty device", "sales[1]: device is required", errs.Invalid,
			provisioning.BatchRequest{Sales: []provisioning.BatchItem{good.Sales[0], {Account: "acct", Plan: "hour"}}}},
		{"no sales", "sales is empty", errs.Invalid, provisioning.BatchRequest{}},
	}
	for _, c := range bad {
		_, _, err := f.Prov.SellBatch(ctx, c.req, "")
		if !errs.Is(err, c.kind) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("a batch with %s: %v, want %s saying %q", c.name, err, c.kind, c.says)
		}
		if got := ledgerState(t, st, devs...); got != before {
			t.Fatalf("a batch with %s stored something:\n got %s\nwant %s", c.name, got, before)
		}
	}

	// A good batch: two plans, two accounts.
	req := batchOf("acct", "hour", d1, d2, d3, d4)
	req.Sales[1].Plan = "week"
	req.Sales = append(req.Sales, provisioning.BatchItem{Account: "acct2", Plan: "hour", Device: other.ID})
	ans, replayed, err := f.Prov.SellBatch(ctx, req, "batch-1")
	ok(t, err, "sell a batch")
	if replayed || len(ans.Sales) != len(req.Sales) {
		t.Fatalf("batch answer %+v (replayed %v)", ans, replayed)
	}
	for i, d := range devs {
		s := ans.Sales[i]
		if s.Device != d.ID || s.Account != req.Sales[i].Account || s.Plan != req.Sales[i].Plan || s.Sequence != 2 {
			t.Errorf("batch sale %d: %+v, want device %s, sequence 2 (gapless after its registration packet)", i, s, d.ID)
		}
		pk, err := st.Packets(ctx, d.ID, 1)
		ok(t, err, "packets")
		if len(pk) != 1 {
			t.Fatalf("device %d has %d new packets, want 1", i, len(pk))
		}
		p, err := packet.OpenWith(pk[0].File, d.PacketKeys(), f.Root, d.ID, f.Clock.Now())
		ok(t, err, "open a batch packet")
		want := int64(3600)
		if s.Plan == "week" {
			want = 7 * 86400
		}
		if p.Sequence != 2 || p.Seconds != want || p.Sale != s.Sale || pk[0].SaleID != s.Sale {
			t.Errorf("batch packet of device %d: %+v, want sequence 2, %d seconds, sale %s", i, p, want, s.Sale)
		}
	}
	posts, err := st.Postings(ctx, "")
	ok(t, err, "list postings")
	sold := map[string]bool{}
	for _, p := range posts {
		if p.Kind == billing.KindSale {
			ok(t, p.Balanced(), "a posting of the batch balances")
			sold[p.Reference] = true
		}
	}
	for i, s := range ans.Sales {
		if !sold[s.Sale] {
			t.Errorf("batch sale %d (%s) has no posting", i, s.Sale)
		}
	}
	again, replayed, err := f.Prov.SellBatch(ctx, req, "batch-1")
	ok(t, err, "retry the batch")
	if !replayed || again.Sales[1].Sale != ans.Sales[1].Sale {
		t.Fatalf("retried batch: %+v (replayed %v), want the first answer", again, replayed)
	}
	_, _, err = f.Prov.SellBatch(ctx, good, "batch-1")
	wantKind(t, err, errs.Conflict, "the batch's key with another batch")
	if got, want := balance(t, st, "acct"), balanceOf(before, "acct")+3*100+500; got != want {
		t.Fatalf("acct balance %d after a batch (three hours, a week) and its retry, want %d", got, want)
	}
	if got, want := balance(t, st, "acct2"), balanceOf(before, "acct2")+100; got != want {
		t.Fatalf("acct2 balance %d after a batch with one hour, want %d", got, want)
	}
	// The next sale of a device continues its sequence.
	s, _, err := f.Prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d3.ID}, "")
	ok(t, err, "sell after a batch")
	if s.Sequence != 3 {
		t.Fatalf("sale after the batch has sequence %d, want 3", s.Sequence)
	}
}

// staleKeys is a store whose batch read (provisioning.BatchStore) returns
// what it read before: the devices as they were before a re-registration.
type staleKeys struct {
	PaygStore
	before map[string]*provisioning.Device
}

// PaygDeviceKeys implements provisioning.BatchStore with the old read.
func (s staleKeys) PaygDeviceKeys(context.Context, []string) (map[string]*provisioning.Device, error) {
	return s.before, nil
}

// testProvBatchStaleKeys: a batch whose devices were read (and their
// packets made) before one of them re-registered stores that device's
// packet under its new keys, which its new agent opens; the keys version
// the store returns tells the batch, without reading the devices again.
func testProvBatchStaleKeys(t *testing.T, st PaygStore) {
	bs, isBatch := st.(provisioning.BatchStore)
	if !isBatch {
		t.Skip("this store has no batch read")
	}
	f := NewPaygFixture(t, st)
	ctx := t.Context()
	d1, d2 := NewTestDevice(t, "m1", "s1", Hardware("m1")), NewTestDevice(t, "m2", "s2", Hardware("m2"))
	f.Register(t, d1, "acct")
	f.Register(t, d2, "acct")
	before, err := bs.PaygDeviceKeys(ctx, []string{d1.ID, d2.ID})
	ok(t, err, "read the devices' keys")
	again := NewTestDevice(t, "m1", "s1-again", Hardware("m1")) // the same machine, a fresh installation
	if ans := f.Register(t, again, "acct"); ans.DeviceID != d1.ID {
		t.Fatalf("re-registration got device %s, want %s", ans.DeviceID, d1.ID)
	}
	after, err := bs.PaygDeviceKeys(ctx, []string{d1.ID, d2.ID})
	ok(t, err, "read the devices' keys again")
	if after[d1.ID].KeysVersion != before[d1.ID].KeysVersion+1 || after[d2.ID].KeysVersion != before[d2.ID].KeysVersion {
		t.Fatalf("keys versions %d->%d and %d->%d, want one more for the re-registered device only",
			before[d1.ID].KeysVersion, after[d1.ID].KeysVersion, before[d2.ID].KeysVersion, after[d2.ID].KeysVersion)
	}
	f.Prov.Store = staleKeys{st, before}
	ans, _, err := f.Prov.SellBatch(ctx, batchOf("acct", "hour", d1, d2), "")
	ok(t, err, "sell a batch read before a re-registration")
	for i, keys := range []packet.Keys{again.PacketKeys(), d2.PacketKeys()} {
		s := ans.Sales[i]
		pk, err := st.Packets(ctx, s.Device, s.Sequence-1)
		ok(t, err, "packets")
		if len(pk) != 1 {
			t.Fatalf("device %s has %d packets after %d, want 1", s.Device, len(pk), s.Sequence-1)
		}
		if _, err := packet.OpenWith(pk[0].File, keys, f.Root, s.Device, f.Clock.Now()); err != nil {
			t.Errorf("the batch packet of %s does not open with the device's current keys: %v", s.Device, err)
		}
	}
}

// balanceOf reads an account's balance back from a ledgerState.
func balanceOf(state, acct string) int64 {
	var n int64
	i := strings.Index(state, " "+acct+" ")
	fmt.Sscanf(state[i+len(acct)+2:], "%d", &n)
	return n
}

// PaygFixture is a vendor's pay-as-you-go over one store: customer "cust"
// with account "acct" (EUR), customer "other" with account "acct2", plans
// "week" and "hour", a root and a provisioning authority.
type PaygFixture struct {
	Store   PaygStore
	Billing *billing.Service
	Prov    *provisioning.Service
	Root    *x509.Certificate
	Clock   *paygClock
}

// NewPaygFixture seeds st and returns its services.
func NewPaygFixture(t *testing.T, st PaygStore) *PaygFixture {
	t.Helper()
	svc, clk := seedBilling(t, st)
	ctx := t.Context()
	ok(t, st.CreateCustomer(ctx, &clearinghouse.Customer{ID: "other", Name: "Other", Created: t0}), "create customer other")
	_, _, err := svc.AddAccount(ctx, billing.AccountRequest{ID: "acct2", Customer: "other", Currency: "EUR"}, "")
	ok(t, err, "add account acct2")
	now := clk.Now()
	root := testpki.Root(t, "Vendor", now.Add(-time.Hour))
	provKey, err := keys.GenerateSigner()
	ok(t, err, "provisioning key")
	der, err := root.IssueProvisioning(provKey.Public(), "Vendor", now.Add(-time.Hour))
	ok(t, err, "provisioning certificate")
	cert, err := x509.ParseCertificate(der)
	ok(t, err, "parse provisioning certificate")
	prov := provisioning.New(st, &pki.Authority{Cert: cert, Signer: provKey}, root.Cert, nil)
	prov.Now = clk.Now
	return &PaygFixture{Store: st, Billing: svc, Prov: prov, Root: root.Cert, Clock: clk}
}

// TestDevice is a device's keys and hardware, as the agent has them.
type TestDevice struct {
	Signer *keys.Signer
	HPKE   *keys.Decrypter
	// Fingerprint is the hwid fingerprint JSON the device registers with.
	Fingerprint json.RawMessage
	ID          string
	InitKey     []byte
}

// NewTestDevice makes device keys and a fingerprint of the given machine
// (hardware values: the same machine gives the same system ID; salt names
// the installation).
func NewTestDevice(t testing.TB, machine, salt string, hw map[string]string) *TestDevice {
	t.Helper()
	s, err := keys.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	return &TestDevice{Signer: s, HPKE: d, Fingerprint: Fingerprint(machine, salt, hw)}
}

// Fingerprint builds hwid fingerprint JSON: system ID from machine, salt
// from salt, one component per kind with the hash of its value.
func Fingerprint(machine, salt string, hw map[string]string) json.RawMessage {
	sys := sha256.Sum256([]byte("machine " + machine))
	sl := sha256.Sum256([]byte("salt " + salt))
	var kinds []string
	for k := range hw {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var comps []map[string]string
	for _, k := range kinds {
		h := sha256.Sum256([]byte(salt + "\x00" + k + "\x00" + hw[k]))
		comps = append(comps, map[string]string{"kind": k, "hash": hex.EncodeToString(h[:])})
	}
	b, _ := json.Marshal(map[string]any{"version": 1, "system_id": "sys-" + hex.EncodeToString(sys[:8]), "salt": hex.EncodeToString(sl[:16]), "components": comps})
	return b
}

// Hardware is a machine with machine-id, mac and disk components.
func Hardware(id string) map[string]string {
	return map[string]string{"machine-id": id + "-mid", "mac": id + "-mac", "disk": id + "-disk"}
}

// RegisterRequest builds the device's signed registration request.
func (d *TestDevice) RegisterRequest(code string) provisioning.RegisterRequest {
	hk := base64.StdEncoding.EncodeToString(d.HPKE.PublicBytes())
	return provisioning.RegisterRequest{Code: code, Fingerprint: d.Fingerprint,
		PublicKey: base64.StdEncoding.EncodeToString(d.Signer.Public()), HPKEKey: hk,
		Signature: base64.StdEncoding.EncodeToString(d.Signer.Sign(devicereq.RegisterMessage(code, hk)))}
}

// Accept records what a registration answered: the device ID and the
// initialization key, opened with the device's HPKE key.
func (d *TestDevice) Accept(t testing.TB, ans *provisioning.RegisterAnswer) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(ans.InitKey)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := envelope.ParseSealed(raw, provisioning.InitKeyType, provisioning.InitKeyVersion)
	if err != nil {
		t.Fatal(err)
	}
	if d.InitKey, err = sealed.Open(d.HPKE); err != nil {
		t.Fatal(err)
	}
	if len(d.InitKey) != provisioning.InitKeySize {
		t.Fatalf("init key of %d bytes", len(d.InitKey))
	}
	d.ID = ans.DeviceID
}

// SignedHeaders returns the headers of a signed device request (docs/
// payg-protocol.md) of d at the fixture's time.
func (d *TestDevice) SignedHeaders(f *PaygFixture, method, path string, body []byte) http.Header {
	h := http.Header{}
	devicereq.Sign(h, method, path, d.ID, d.Signer.Private(), d.InitKey, f.Clock.Now(), body)
	return h
}

// PacketKeys are the keys the device opens its packets with.
func (d *TestDevice) PacketKeys() packet.Keys {
	return packet.Keys{Decrypter: d.HPKE, InitKey: d.InitKey}
}

// SellNew sells plan to acct for a new device and returns the code.
func (f *PaygFixture) SellNew(t *testing.T, acct, plan string) string {
	t.Helper()
	ans, _, err := f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: acct, Plan: plan, NewDevice: true}, "")
	ok(t, err, "sell a new device")
	if ans.Code == "" || ans.Packet != "" {
		t.Fatalf("new-device sale: %+v", ans)
	}
	return ans.Code
}

// Register sells a new device on acct and registers d with the code.
func (f *PaygFixture) Register(t *testing.T, d *TestDevice, acct string) *provisioning.RegisterAnswer {
	t.Helper()
	ans, err := f.Prov.Register(t.Context(), d.RegisterRequest(f.SellNew(t, acct, "week")))
	ok(t, err, "register")
	d.Accept(t, ans)
	return ans
}

func testProvRegister(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	ans := f.Register(t, d, "acct")
	if ans.Account != "acct" || len(ans.Certificates) != 2 || len(ans.Packets) != 1 {
		t.Fatalf("registration: %+v", ans)
	}
	var chain [][]byte
	for _, c := range ans.Certificates {
		der, _ := base64.StdEncoding.DecodeString(c)
		chain = append(chain, der)
	}
	dev, err := pki.VerifyDevice(chain, f.Root, f.Clock.Now())
	ok(t, err, "verify the device certificate")
	if dev.DeviceID != d.ID || dev.AccountID != "acct" || !dev.PublicKey.Equal(d.Signer.Public()) {
		t.Errorf("device certificate: %+v", dev)
	}
	p, err := packet.OpenWith([]byte(ans.Packets[0]), d.PacketKeys(), f.Root, d.ID, f.Clock.Now())
	ok(t, err, "open the registration's packet")
	if p.Sequence != 1 || p.Seconds != 7*86400 {
		t.Errorf("packet: %+v", p)
	}
	if got := balance(t, st, "acct"); got != 500 {
		t.Errorf("balance %d, want 500", got)
	}
	// A sale of credit to the device: the next packet.
	sale, _, err := f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d.ID}, "")
	ok(t, err, "sell credit")
	p2, err := packet.OpenWith([]byte(sale.Packet), d.PacketKeys(), f.Root, d.ID, f.Clock.Now())
	ok(t, err, "open the sale's packet")
	if p2.Sequence != 2 || p2.Seconds != 3600 || p2.Sale != sale.Sale.ID || sale.Sequence != 2 {
		t.Errorf("second packet: %+v", p2)
	}
	ps, err := st.Packets(t.Context(), d.ID, 1)
	ok(t, err, "packets since 1")
	if len(ps) != 1 || ps[0].Sequence != 2 || string(ps[0].File) != sale.Packet {
		t.Errorf("packets since 1: %+v", ps)
	}
	stored, err := st.PaygDevice(t.Context(), d.ID)
	ok(t, err, "read device")
	if stored.LastSequence != 2 || string(stored.InitKey) != string(d.InitKey) {
		t.Errorf("stored device: last %d", stored.LastSequence)
	}
	_, _, err = f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct2", Plan: "hour", Device: d.ID}, "")
	wantKind(t, err, errs.Conflict, "sell to another account's device")
	_, _, err = f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct", Plan: "hour", Device: "dev-none"}, "")
	wantKind(t, err, errs.NotFound, "sell to a missing device")
}

func testProvCodeTwice(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	code := f.SellNew(t, "acct", "week")
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	_, err := f.Prov.Register(t.Context(), d.RegisterRequest(code))
	ok(t, err, "first use")
	e := NewTestDevice(t, "m2", "s2", Hardware("m2"))
	_, err = f.Prov.Register(t.Context(), e.RegisterRequest(code))
	wantKind(t, err, errs.Conflict, "second use of a code")
	_, err = f.Prov.Register(t.Context(), e.RegisterRequest(strings.ToLower(code)))
	wantKind(t, err, errs.Conflict, "second use, typed in lower case")
	_, err = f.Prov.Register(t.Context(), e.RegisterRequest("AAAA-BBBB-CCCC-DDDD-EEEE"))
	wantKind(t, err, errs.NotFound, "unknown code")
	ds, _ := st.PaygDevices(t.Context(), "")
	if len(ds) != 1 {
		t.Errorf("%d devices, want 1", len(ds))
	}
}

func testProvCodeConcurrent(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	code := f.SellNew(t, "acct", "week")
	const n = 8
	errList := make([]error, n)
	run(n, func(i int) {
		d := NewTestDevice(t, fmt.Sprint("m", i), fmt.Sprint("s", i), Hardware(fmt.Sprint("m", i)))
		_, errList[i] = f.Prov.Register(t.Context(), d.RegisterRequest(code))
	})
	wins := 0
	for _, err := range errList {
		if err == nil {
			wins++
		} else {
			wantKind(t, err, errs.Conflict, "losing registration")
		}
	}
	if wins != 1 {
		t.Errorf("%d registrations won with one code, want 1", wins)
	}
}

func testProvClone(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	f.Register(t, d, "acct")
	// The same machine set up again (new salt, same system ID) under acct2.
	clone := NewTestDevice(t, "m1", "s9", Hardware("m1"))
	code := f.SellNew(t, "acct2", "week")
	_, err := f.Prov.Register(t.Context(), clone.RegisterRequest(code))
	wantKind(t, err, errs.Conflict, "clone under another account")
	if err != nil && !strings.Contains(err.Error(), "clone") {
		t.Errorf("clone error does not say so: %v", err)
	}
	// A copy of the installation with one component changed (system ID
	// recomputed elsewhere, same salt): tolerant matching still sees it.
	hw := Hardware("m1")
	hw["mac"] = "other-mac"
	copyDev := NewTestDevice(t, "m1-copy", "s1", hw)
	_, err = f.Prov.Register(t.Context(), copyDev.RegisterRequest(f.SellNew(t, "acct2", "week")))
	wantKind(t, err, errs.Conflict, "copied installation under another account")
	cs, err := st.Clones(t.Context())
	ok(t, err, "list clones")
	if len(cs) != 2 || cs[0].DeviceID != d.ID || cs[0].AccountID != "acct" || cs[0].AttemptAccount != "acct2" {
		t.Errorf("clones: %+v", cs)
	}
	// The refused code is still unused: a real device registers with it.
	other := NewTestDevice(t, "m2", "s2", Hardware("m2"))
	_, err = f.Prov.Register(t.Context(), other.RegisterRequest(code))
	ok(t, err, "register a real device with the code a clone tried")
}

func testProvSameAccount(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	first := f.Register(t, d, "acct")
	// The same installation after a NIC change re-registers with a new code.
	hw := Hardware("m1")
	hw["mac"] = "new-nic"
	again := NewTestDevice(t, "m1-nic", "s1", hw)
	ans := f.Register(t, again, "acct")
	if ans.DeviceID != first.DeviceID {
		t.Errorf("re-registration got device %s, want the same device %s", ans.DeviceID, first.DeviceID)
	}
	if _, err := packet.OpenWith([]byte(ans.Packets[0]), again.PacketKeys(), f.Root, ans.DeviceID, f.Clock.Now()); err != nil {
		t.Errorf("packet of the re-registration: %v", err)
	} else if p, _ := packet.OpenWith([]byte(ans.Packets[0]), again.PacketKeys(), f.Root, ans.DeviceID, f.Clock.Now()); p.Sequence != 2 {
		t.Errorf("re-registration packet sequence %d, want 2 (sequences continue)", p.Sequence)
	}
	if ans.BaseSequence != 1 {
		t.Errorf("re-registration base sequence %d, want 1: the new installation starts after the device's packet 1", ans.BaseSequence)
	}
	// Two kinds changed: another machine.
	hw["disk"], hw["machine-id"] = "new-disk", "new-mid"
	third := NewTestDevice(t, "m3", "s1", hw)
	if ans := f.Register(t, third, "acct"); ans.DeviceID == first.DeviceID {
		t.Error("a machine with two of three components changed was taken for the same device")
	}
}

// testProvReregisterCode: an administrator's re-registration code
// registers that one device again from a fresh installation, without a
// sale: new keys (the old installation's requests are refused), the same
// device ID, a base sequence at the device's last packet, no packet, its
// report cleared and kept as the previous installation's; the code works
// once, for that device's hardware only, and a clone is still refused.
func testProvReregisterCode(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	ctx := t.Context()
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	f.Register(t, d, "acct")
	_, _, err := f.Prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d.ID}, "")
	ok(t, err, "sell an hour")
	_, err = st.RecordReport(ctx, d.ID, provisioning.Report{HighestSequence: 2, UsedSeconds: 1000, At: f.Clock.Now()})
	ok(t, err, "record a report")
	before := balance(t, st, "acct")

	_, _, err = f.Prov.Reregister(ctx, "dev-missing", "")
	wantKind(t, err, errs.NotFound, "a re-registration code of an unknown device")
	rc, _, err := f.Prov.Reregister(ctx, d.ID, "rereg-1")
	ok(t, err, "issue a re-registration code")
	again, replayed, err := f.Prov.Reregister(ctx, d.ID, "rereg-1")
	ok(t, err, "retry the re-registration code")
	if !replayed || again.Code != rc.Code || rc.Account != "acct" || rc.Device != d.ID {
		t.Fatalf("re-registration codes %+v and %+v (replayed %v), want one code of %s on acct", rc, again, replayed, d.ID)
	}
	// Other hardware on the same account, and the device's hardware under
	// another account's code, are refused.
	other := NewTestDevice(t, "m2", "s2", Hardware("m2"))
	_, err = f.Prov.Register(ctx, other.RegisterRequest(rc.Code))
	wantKind(t, err, errs.Conflict, "other hardware with a device's re-registration code")
	clone := NewTestDevice(t, "m1", "s1-clone", Hardware("m1"))
	_, err = f.Prov.Register(ctx, clone.RegisterRequest(f.SellNew(t, "acct2", "week")))
	wantKind(t, err, errs.Conflict, "the device's hardware under another account")

	fresh := NewTestDevice(t, "m1", "s1-fresh", Hardware("m1"))
	ans, err := f.Prov.Register(ctx, fresh.RegisterRequest(rc.Code))
	ok(t, err, "re-register with the code")
	fresh.Accept(t, ans)
	if ans.DeviceID != d.ID || ans.BaseSequence != 2 || len(ans.Packets) != 0 {
		t.Fatalf("re-registration: device %s, base %d, %d packets; want %s, base 2, no packet", ans.DeviceID, ans.BaseSequence, len(ans.Packets), d.ID)
	}
	_, err = f.Prov.Register(ctx, fresh.RegisterRequest(rc.Code))
	wantKind(t, err, errs.Conflict, "a re-registration code used twice")
	dev, err := st.PaygDevice(ctx, d.ID)
	ok(t, err, "read the device")
	if dev.Report != nil || dev.PreviousReport == nil || dev.PreviousReport.UsedSeconds != 1000 || dev.BaseSequence != 2 || dev.Reregistered == nil || dev.LastSequence != 2 {
		t.Fatalf("re-registered device: %+v, report %+v, previous %+v", dev, dev.Report, dev.PreviousReport)
	}
	if got := balance(t, st, "acct"); got != before {
		t.Errorf("balance %d after a re-registration, want %d: it sells nothing", got, before)
	}
	// The new installation's first report (nothing used yet) is not
	// taken for a restored copy; the old installation's keys are refused.
	dev, err = st.RecordReport(ctx, d.ID, provisioning.Report{HighestSequence: 2, UsedSeconds: 0, At: f.Clock.Now()})
	ok(t, err, "the new installation's first report")
	if dev.Flag != "" {
		t.Errorf("the new installation's first report flagged the device: %s", dev.Flag)
	}
	_, err = f.Prov.Authenticate(ctx, http.MethodPost, "/v1/payg/devices/"+d.ID+"/sync", d.SignedHeaders(f, http.MethodPost, "/v1/payg/devices/"+d.ID+"/sync", nil), nil)
	wantKind(t, err, errs.Unauthenticated, "a request of the old installation")
	_, err = f.Prov.Authenticate(ctx, http.MethodPost, "/v1/payg/devices/"+d.ID+"/sync", fresh.SignedHeaders(f, http.MethodPost, "/v1/payg/devices/"+d.ID+"/sync", nil), nil)
	ok(t, err, "a request of the new installation")
	// Its next packet opens with the new keys.
	sale, _, err := f.Prov.Sell(ctx, provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d.ID}, "")
	ok(t, err, "sell after the re-registration")
	p, err := packet.OpenWith([]byte(sale.Packet), fresh.PacketKeys(), f.Root, d.ID, f.Clock.Now())
	ok(t, err, "open the packet with the new installation's keys")
	if p.Sequence != 3 {
		t.Errorf("packet after the re-registration has sequence %d, want 3", p.Sequence)
	}
}

func testProvSellIdempotent(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	f.Register(t, d, "acct")
	req := provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d.ID}
	a1, replayed, err := f.Prov.Sell(t.Context(), req, "sale-key")
	ok(t, err, "sale")
	a2, replayed2, err := f.Prov.Sell(t.Context(), req, "sale-key")
	ok(t, err, "retried sale")
	if replayed || !replayed2 || a1.Sale.ID != a2.Sale.ID || a1.Packet != a2.Packet {
		t.Errorf("retried sale: replayed %v/%v, sales %s/%s", replayed, replayed2, a1.Sale.ID, a2.Sale.ID)
	}
	_, _, err = f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct", Plan: "week", Device: d.ID}, "sale-key")
	wantKind(t, err, errs.Conflict, "same key, another plan")
	if got := balance(t, st, "acct"); got != 600 {
		t.Errorf("balance %d, want 600 (one week, one hour)", got)
	}
	dev, _ := st.PaygDevice(t.Context(), d.ID)
	if dev.LastSequence != 2 {
		t.Errorf("last sequence %d, want 2", dev.LastSequence)
	}
	// New-device sales replay their code too.
	n1, _, err := f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct", Plan: "week", NewDevice: true}, "new-key")
	ok(t, err, "new-device sale")
	n2, _, err := f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct", Plan: "week", NewDevice: true}, "new-key")
	ok(t, err, "retried new-device sale")
	if n1.Code == "" || n1.Code != n2.Code {
		t.Errorf("retried new-device sale: codes %q and %q", n1.Code, n2.Code)
	}
}

func testProvGapless(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	f.Register(t, d, "acct")
	const n = 40
	seqs := make([]uint64, n)
	errList := make([]error, n)
	run(n, func(i int) {
		var a *provisioning.SellAnswer
		a, _, errList[i] = f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d.ID}, fmt.Sprint("k", i))
		if a != nil {
			seqs[i] = a.Sequence
		}
	})
	for i, err := range errList {
		ok(t, err, fmt.Sprint("sale ", i))
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		if s != uint64(i+2) {
			t.Fatalf("sequences of %d concurrent sales: %v, want 2..%d without gaps", n, seqs, n+1)
		}
	}
	ps, err := st.Packets(t.Context(), d.ID, 0)
	ok(t, err, "packets")
	if len(ps) != n+1 {
		t.Fatalf("%d packets, want %d", len(ps), n+1)
	}
	for i, p := range ps {
		got, err := packet.OpenWith(p.File, d.PacketKeys(), f.Root, d.ID, f.Clock.Now())
		ok(t, err, "open packet")
		if got.Sequence != uint64(i+1) || p.Sequence != got.Sequence {
			t.Errorf("packet %d carries sequence %d (stored as %d)", i+1, got.Sequence, p.Sequence)
		}
	}
	if got := balance(t, st, "acct"); got != 500+n*100 {
		t.Errorf("balance %d, want %d", got, 500+n*100)
	}
}

func testProvNonces(t *testing.T, st PaygStore) {
	ctx := t.Context()
	now := time.Now()
	ok(t, st.UseNonce(ctx, "dev-1", "n1", now.Add(time.Minute), now), "first nonce")
	wantKind(t, st.UseNonce(ctx, "dev-1", "n1", now.Add(time.Minute), now), errs.Conflict, "nonce again")
	ok(t, st.UseNonce(ctx, "dev-2", "n1", now.Add(time.Minute), now), "same nonce, other device")
	nonce := make([]byte, 4)
	for i := 0; i < 300; i++ { // passes a sweep of expired nonces
		rand.Read(nonce)
		ok(t, st.UseNonce(ctx, "dev-3", hex.EncodeToString(nonce)+fmt.Sprint(i), now.Add(-time.Hour), now), "expired nonce")
	}
	wantKind(t, st.UseNonce(ctx, "dev-1", "n1", now.Add(time.Minute), now), errs.Conflict, "unexpired nonce survives sweeps")
}

func testProvReports(t *testing.T, st PaygStore) {
	f := NewPaygFixture(t, st)
	d := NewTestDevice(t, "m1", "s1", Hardware("m1"))
	f.Register(t, d, "acct")
	_, _, err := f.Prov.Sell(t.Context(), provisioning.SellRequest{Account: "acct", Plan: "hour", Device: d.ID}, "")
	ok(t, err, "sell")
	dev, err := st.PaygDevice(t.Context(), d.ID)
	ok(t, err, "device")
	ans, err := f.Prov.Sync(t.Context(), dev, provisioning.SyncRequest{HighestSequence: 0, UsedSeconds: 0})
	ok(t, err, "sync from 0")
	if len(ans.Packets) != 2 {
		t.Errorf("sync from 0 gave %d packets, want 2", len(ans.Packets))
	}
	ans, err = f.Prov.Sync(t.Context(), dev, provisioning.SyncRequest{HighestSequence: 2, UsedSeconds: 100})
	ok(t, err, "sync from 2")
	if len(ans.Packets) != 0 {
		t.Errorf("sync from 2 gave %d packets", len(ans.Packets))
	}
	if dev, _ = st.PaygDevice(t.Context(), d.ID); dev.Flag != "" || dev.Report.UsedSeconds != 100 {
		t.Errorf("after honest reports: flag %q, report %+v", dev.Flag, dev.Report)
	}
	// A restored older state: used seconds go back.
	_, err = f.Prov.Sync(t.Context(), dev, provisioning.SyncRequest{HighestSequence: 2, UsedSeconds: 40})
	ok(t, err, "sync backwards")
	dev, _ = st.PaygDevice(t.Context(), d.ID)
	if !strings.Contains(dev.Flag, "used seconds went back") || dev.FlaggedAt == nil {
		t.Errorf("backwards report: flag %q", dev.Flag)
	}
	// The flag stays after an honest report.
	f.Prov.Sync(t.Context(), dev, provisioning.SyncRequest{HighestSequence: 2, UsedSeconds: 50})
	if dev, _ = st.PaygDevice(t.Context(), d.ID); dev.Flag == "" {
		t.Error("the flag was cleared by a later report")
	}
	_, err = f.Prov.Sync(t.Context(), dev, provisioning.SyncRequest{HighestSequence: 1, UsedSeconds: 60})
	ok(t, err, "sync with a lower sequence")
	if dev, _ = st.PaygDevice(t.Context(), d.ID); !strings.Contains(dev.Flag, "highest sequence went back") {
		t.Errorf("lower sequence: flag %q", dev.Flag)
	}
	// The history keeps the last ReportsKept reports, newest first.
	for i := range provisioning.ReportsKept {
		f.Clock.Add(time.Minute)
		_, err := st.RecordReport(t.Context(), d.ID, provisioning.Report{HighestSequence: 2, UsedSeconds: int64(1000 + i), At: f.Clock.Now()})
		ok(t, err, "record a report")
	}
	past, err := st.PaygReports(t.Context(), d.ID)
	ok(t, err, "list the reports")
	if len(past) != provisioning.ReportsKept || past[0].UsedSeconds != int64(1000+provisioning.ReportsKept-1) || past[len(past)-1].UsedSeconds != 1000 {
		t.Errorf("after %d more reports, the history has %d, newest %+v, oldest %+v; want the last %d", provisioning.ReportsKept, len(past), past[0], past[len(past)-1], provisioning.ReportsKept)
	}
}
