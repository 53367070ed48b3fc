package api_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/api"
	"github.com/licet/licet/auth"
	"github.com/licet/licet/payg/billing"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/payg/provisioning"
	"github.com/licet/licet/store/sqlite"
	"github.com/licet/licet/store/sqlstore"
	"github.com/licet/licet/store/storetest"
)

// paygServer is the vendor's PAYG API over a SQLite store, with an admin
// token.
type paygServer struct {
	*storetest.PaygFixture
	URL   string
	token string
}

func newPaygServer(t *testing.T) *paygServer {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "vendor.db"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.NewVendor(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := storetest.NewPaygFixture(t, st)
	tok, err := auth.NewToken(t.Context(), st, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s := api.NewServer("vendor", slog.New(slog.NewTextHandler(io.Discard, nil)), api.DefaultLimits, st)
	api.AddPaygRoutes(s, &api.Payg{Billing: f.Billing, Provisioning: f.Prov})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return &paygServer{PaygFixture: f, URL: ts.URL, token: tok}
}

// call sends a request and returns the status and the body.
func (s *paygServer) call(t *testing.T, method, path string, hdr http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// admin sends an admin request with an optional idempotency key.
func (s *paygServer) admin(t *testing.T, method, path, idemKey string, body any) (int, string) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + s.token}}
	if idemKey != "" {
		h.Set("Idempotency-Key", idemKey)
	}
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	return s.call(t, method, path, h, b)
}

func want(t *testing.T, what string, status int, body string, wantStatus int, wantIn string) {
	t.Helper()
	if status != wantStatus || !strings.Contains(body, wantIn) {
		t.Errorf("%s: %d %s, want %d containing %q", what, status, body, wantStatus, wantIn)
	}
}

func (s *paygServer) postings(t *testing.T) []*billing.Posting {
	t.Helper()
	ps, err := s.Store.Postings(t.Context(), "acct")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// TestPaygSaleTwiceOneKey: a sale posted twice with one idempotency key is
// sold once and answered twice alike; the key with another sale is a 409.
func TestPaygSaleTwiceOneKey(t *testing.T) {
	s := newPaygServer(t)
	sale := map[string]any{"account": "acct", "plan": "week", "new_device": true}
	st1, b1 := s.admin(t, "POST", "/v1/payg/sales", "order-42", sale)
	st2, b2 := s.admin(t, "POST", "/v1/payg/sales", "order-42", sale)
	if st1 != http.StatusCreated || st2 != http.StatusOK || b1 != b2 {
		t.Fatalf("sale twice: %d %s / %d %s", st1, b1, st2, b2)
	}
	if n := len(s.postings(t)); n != 1 {
		t.Errorf("%d postings after a retried sale, want 1", n)
	}
	st, b := s.admin(t, "POST", "/v1/payg/sales", "order-42", map[string]any{"account": "acct", "plan": "hour", "new_device": true})
	want(t, "same key, another sale", st, b, http.StatusConflict, "Idempotency-Key")
	if n := len(s.postings(t)); n != 1 {
		t.Errorf("%d postings after a conflicting key, want 1", n)
	}
}

// TestPaygIdempotencyKeyTooLong: a key beyond billing.MaxIdempotencyKey
// is a 400 naming the header, and nothing is sold.
func TestPaygIdempotencyKeyTooLong(t *testing.T) {
	s := newPaygServer(t)
	st, b := s.admin(t, "POST", "/v1/payg/sales", strings.Repeat("k", billing.MaxIdempotencyKey+1), map[string]any{"account": "acct", "plan": "week", "new_device": true})
	want(t, "a key one byte too long", st, b, http.StatusBadRequest, "Idempotency-Key (--idempotency-key) is 256 bytes long")
	if n := len(s.postings(t)); n != 0 {
		t.Errorf("%d postings after a refused key, want 0", n)
	}
}

// TestPaygAmounts: zero, negative, overflowing, malformed and
// wrong-currency amounts are 400s naming the field.
func TestPaygAmounts(t *testing.T) {
	s := newPaygServer(t)
	for _, c := range []struct{ body, field string }{
		{`{"account":"acct","amount":0,"currency":"EUR"}`, "amount is 0"},
		{`{"account":"acct","amount":-5,"currency":"EUR"}`, "amount -5 is negative"},
		{`{"account":"acct","amount":99999999999999999999999,"currency":"EUR"}`, "amount 99999999999999999999999 is too large"},
		{`{"account":"acct","amount":1000000000000001,"currency":"EUR"}`, "amount 1000000000000001 is too large"},
		{`{"account":"acct","amount":1.5,"currency":"EUR"}`, "is not a whole number of minor units"},
		{`{"account":"acct","amount":100,"currency":"USD"}`, "currency USD is not the currency of account acct"},
		{`{"account":"acct","amount":100,"currency":"euro"}`, "euro\\\" is not a currency"},
		{`{"account":"acct","currency":"EUR"}`, "amount is required"},
	} {
		st, b := s.admin(t, "POST", "/v1/payg/payments", "", c.body)
		want(t, c.body, st, b, http.StatusBadRequest, c.field)
	}
	st, b := s.admin(t, "POST", "/v1/payg/plans", "", `{"id":"big","days":1,"price":-1,"currency":"EUR"}`)
	want(t, "negative price", st, b, http.StatusBadRequest, "price -1 is negative")
	st, b = s.admin(t, "POST", "/v1/payg/plans", "", `{"id":"big","days":99999999999999999999,"price":1,"currency":"EUR"}`)
	want(t, "overflowing days", st, b, http.StatusBadRequest, "days")
	st, b = s.admin(t, "POST", "/v1/payg/sales", "", map[string]any{"account": "acct", "plan": "week"})
	want(t, "sale for nothing", st, b, http.StatusBadRequest, "new_device")
	if n := len(s.postings(t)); n != 0 {
		t.Errorf("%d postings after refused requests", n)
	}
	st, b = s.admin(t, "POST", "/v1/payg/payments", "", `{"account":"acct","amount":"1250","currency":"EUR"}`)
	want(t, "a good payment", st, b, http.StatusCreated, `"amount":-1250`)
}

// TestPaygWebhook: a bad, stale or missing signature is refused; a
// replayed delivery answers 200 without a second posting.
func TestPaygWebhook(t *testing.T) {
	s := newPaygServer(t)
	st, b := s.admin(t, "POST", "/v1/payg/webhooks", "", map[string]string{"name": "stripe"})
	var hook api.WebhookResponse
	if st != http.StatusCreated || json.Unmarshal([]byte(b), &hook) != nil || !strings.HasPrefix(hook.Secret, "whsec_") {
		t.Fatalf("add webhook: %d %s", st, b)
	}
	body := []byte(`{"id":"evt_1","type":"payment","account":"acct","amount":400,"currency":"EUR","reference":"pi_9"}`)
	deliver := func(sig string, body []byte) (int, string) {
		h := http.Header{}
		if sig != "" {
			h.Set(billing.SignatureHeader, sig)
		}
		return s.call(t, "POST", "/v1/payg/webhooks/stripe", h, body)
	}
	now := time.Now()
	good := billing.SignWebhook(hook.Secret, now, body)
	st, b = deliver(good, body)
	want(t, "signed delivery", st, b, http.StatusOK, `"replayed":false`)
	st, b = deliver(good, body)
	want(t, "replayed delivery", st, b, http.StatusOK, `"replayed":true`)
	st, b = deliver(billing.SignWebhook(hook.Secret, now.Add(time.Minute), body), body)
	want(t, "redelivery signed anew", st, b, http.StatusOK, `"replayed":true`)
	if n := len(s.postings(t)); n != 1 {
		t.Errorf("%d postings after redeliveries, want 1", n)
	}
	st, b = deliver(billing.SignWebhook("whsec_0000", now, body), body)
	want(t, "wrong secret", st, b, http.StatusUnauthorized, "does not match")
	tampered := bytes.Replace(body, []byte("400"), []byte("900"), 1)
	st, b = deliver(good, tampered)
	want(t, "body changed under a good signature", st, b, http.StatusUnauthorized, "does not match")
	st, b = deliver(billing.SignWebhook(hook.Secret, now.Add(-6*time.Minute), body), body)
	want(t, "stale signature", st, b, http.StatusUnauthorized, "stale or replayed")
	st, b = deliver("", body)
	want(t, "no signature", st, b, http.StatusUnauthorized, billing.SignatureHeader)
	other := []byte(`{"id":"evt_1","type":"payment","account":"acct","amount":999,"currency":"EUR"}`)
	st, b = deliver(billing.SignWebhook(hook.Secret, now, other), other)
	want(t, "event ID reused with another body", st, b, http.StatusConflict, "evt_1")
	if a, _ := s.Store.AccountBalance(t.Context(), "acct"); a.Balance != -400 {
		t.Errorf("balance %d, want -400", a.Balance)
	}
}

// register sells a new device on acct and registers d over HTTP.
func (s *paygServer) register(t *testing.T, d *storetest.TestDevice, acct string) (int, string) {
	t.Helper()
	code := s.SellNew(t, acct, "week")
	b, _ := json.Marshal(d.RegisterRequest(code))
	st, body := s.call(t, "POST", "/v1/payg/register", nil, b)
	if st == http.StatusOK {
		var ans provisioning.RegisterAnswer
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatal(err)
		}
		d.Accept(t, &ans)
	}
	return st, body
}

// TestPaygRegisterAttacks: a code used twice and a clone under a second
// account are refused with 409; the clone is listed for the admin.
func TestPaygRegisterAttacks(t *testing.T) {
	s := newPaygServer(t)
	d := storetest.NewTestDevice(t, "m1", "s1", storetest.Hardware("m1"))
	code := s.SellNew(t, "acct", "week")
	req, _ := json.Marshal(d.RegisterRequest(code))
	st, b := s.call(t, "POST", "/v1/payg/register", nil, req)
	want(t, "register", st, b, http.StatusOK, `"device_id":"dev-`)
	e := storetest.NewTestDevice(t, "m2", "s2", storetest.Hardware("m2"))
	req2, _ := json.Marshal(e.RegisterRequest(code))
	st, b = s.call(t, "POST", "/v1/payg/register", nil, req2)
	want(t, "code used twice", st, b, http.StatusConflict, "already used")
	clone := storetest.NewTestDevice(t, "m1", "s7", storetest.Hardware("m1"))
	st, b = s.register(t, clone, "acct2")
	want(t, "clone under a second account", st, b, http.StatusConflict, "clone")
	st, b = s.admin(t, "GET", "/v1/payg/clones", "", nil)
	want(t, "clones listed", st, b, http.StatusOK, `"attempt_account":"acct2"`)
	// A forged registration: the signature is not by the key presented.
	f := storetest.NewTestDevice(t, "m3", "s3", storetest.Hardware("m3"))
	rr := f.RegisterRequest(s.SellNew(t, "acct", "week"))
	rr.PublicKey = e.RegisterRequest("x").PublicKey
	forged, _ := json.Marshal(rr)
	st, b = s.call(t, "POST", "/v1/payg/register", nil, forged)
	want(t, "signature by another key", st, b, http.StatusBadRequest, "signature")
}

// TestPaygDeviceRequests: a signed sync returns the packets; a stolen
// device certificate and key without the initialization key (MAC wrong),
// a replayed nonce, a skewed date, another device's path and a missing
// header are refused.
func TestPaygDeviceRequests(t *testing.T) {
	s := newPaygServer(t)
	d := storetest.NewTestDevice(t, "m1", "s1", storetest.Hardware("m1"))
	if st, b := s.register(t, d, "acct"); st != http.StatusOK {
		t.Fatalf("register: %d %s", st, b)
	}
	path := "/v1/payg/devices/" + d.ID + "/sync"
	body := []byte(`{"highest_sequence":0,"used_seconds":0}`)
	signed := func(key ed25519.PrivateKey, initKey []byte, at time.Time, path string) http.Header {
		h := http.Header{}
		devicereq.Sign(h, "POST", path, d.ID, key, initKey, at, body)
		return h
	}
	h := signed(d.Signer.Private(), d.InitKey, time.Now(), path)
	st, b := s.call(t, "POST", path, h, body)
	want(t, "sync", st, b, http.StatusOK, "BEGIN LICET PAYG PACKET")
	var ans provisioning.SyncAnswer
	json.Unmarshal([]byte(b), &ans)
	if len(ans.Packets) != 1 {
		t.Fatalf("sync gave %d packets", len(ans.Packets))
	}
	if _, err := packet.OpenWith([]byte(ans.Packets[0]), d.PacketKeys(), s.Root, d.ID, time.Now()); err != nil {
		t.Errorf("synced packet: %v", err)
	}
	st, b = s.call(t, "POST", path, h, body)
	want(t, "replayed nonce", st, b, http.StatusUnauthorized, "used before")
	st, b = s.call(t, "POST", path, signed(d.Signer.Private(), make([]byte, 32), time.Now(), path), body)
	want(t, "stolen certificate and key, no init key", st, b, http.StatusUnauthorized, "Licet-MAC")
	thief := storetest.NewTestDevice(t, "m9", "s9", storetest.Hardware("m9"))
	st, b = s.call(t, "POST", path, signed(thief.Signer.Private(), d.InitKey, time.Now(), path), body)
	want(t, "init key without the device key", st, b, http.StatusUnauthorized, "Licet-Signature")
	st, b = s.call(t, "POST", path, signed(d.Signer.Private(), d.InitKey, time.Now().Add(-10*time.Minute), path), body)
	want(t, "skewed date", st, b, http.StatusUnauthorized, "clock")
	h = signed(d.Signer.Private(), d.InitKey, time.Now(), path)
	st, b = s.call(t, "POST", path, h, []byte(`{"highest_sequence":0,"used_seconds":99}`))
	want(t, "body changed under the signature", st, b, http.StatusUnauthorized, "Licet-Signature")
	other := "/v1/payg/devices/dev-0000/sync"
	st, b = s.call(t, "POST", other, signed(d.Signer.Private(), d.InitKey, time.Now(), other), body)
	want(t, "another device's path", st, b, http.StatusForbidden, "own path")
	h = signed(d.Signer.Private(), d.InitKey, time.Now(), path)
	h.Del(devicereq.HeaderMAC)
	st, b = s.call(t, "POST", path, h, body)
	want(t, "no MAC", st, b, http.StatusUnauthorized, "Licet-MAC")
	// A sale of credit reaches the device at its next sync.
	if st, b := s.admin(t, "POST", "/v1/payg/sales", "", map[string]any{"account": "acct", "plan": "hour", "device": d.ID}); st != http.StatusCreated {
		t.Fatalf("sell credit: %d %s", st, b)
	}
	next := []byte(`{"highest_sequence":1,"used_seconds":30}`)
	h = http.Header{}
	devicereq.Sign(h, "POST", path, d.ID, d.Signer.Private(), d.InitKey, time.Now(), next)
	st, b = s.call(t, "POST", path, h, next)
	json.Unmarshal([]byte(b), &ans)
	if st != http.StatusOK || len(ans.Packets) != 1 {
		t.Fatalf("second sync: %d %s", st, b)
	}
	if p, err := packet.OpenWith([]byte(ans.Packets[0]), d.PacketKeys(), s.Root, d.ID, time.Now()); err != nil || p.Sequence != 2 {
		t.Errorf("second packet: %+v %v", p, err)
	}
	st, b = s.admin(t, "GET", "/v1/payg/devices/"+d.ID+"/packets?since=1", "", nil)
	want(t, "export", st, b, http.StatusOK, `"count":1`)
}
