package meter_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/pki"
)

// stubVendor is the vendor side of docs/payg-protocol.md, minimally: one
// registration code with a first credit, devices, packets, signed device
// requests (signature, MAC, nonce, date). A test stand-in for the real
// vendor server.
type stubVendor struct {
	t  testing.TB
	v  *vendor
	mu sync.Mutex
	// codes maps a registration code to the seconds of its first packet.
	codes   map[string]int64
	devices map[string]*stubDevice
	nonces  map[string]bool
	reports []meter.Report
}

type stubDevice struct {
	id      string
	pub     ed25519.PublicKey
	hpke    []byte
	initKey []byte
	packets []string
}

func newStubVendor(t testing.TB, v *vendor) (*stubVendor, *httptest.Server) {
	sv := &stubVendor{t: t, v: v, codes: map[string]int64{}, devices: map[string]*stubDevice{}, nonces: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payg/register", sv.register)
	mux.HandleFunc("POST /v1/payg/devices/{id}/sync", sv.sync)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return sv, srv
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (sv *stubVendor) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code        string           `json:"code"`
		Fingerprint hwid.Fingerprint `json:"fingerprint"`
		PublicKey   []byte           `json:"public_key"`
		HPKEKey     string           `json:"hpke_key"`
		Signature   []byte           `json:"signature"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, 400, "invalid", err.Error())
		return
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	secs, ok := sv.codes[req.Code]
	if !ok {
		fail(w, 404, "not_found", "unknown or used registration code")
		return
	}
	if !ed25519.Verify(req.PublicKey, []byte("licet/v1 payg register\x00"+req.Code+"\x00"+req.HPKEKey), req.Signature) {
		fail(w, 400, "invalid", "signature does not verify")
		return
	}
	delete(sv.codes, req.Code)
	hp, _ := base64.StdEncoding.DecodeString(req.HPKEKey)
	d := &stubDevice{id: fmt.Sprintf("dev-%d", len(sv.devices)+1), pub: req.PublicKey, hpke: hp, initKey: make([]byte, 32)}
	copy(d.initKey, []byte("init key of "+d.id))
	sv.devices[d.id] = d
	der, err := sv.v.prov.IssueDevice(pki.Device{DeviceID: d.id, SystemID: req.Fingerprint.SystemID(), AccountID: "acct-1", PublicKey: d.pub, HPKEKey: hp}, t0)
	if err != nil {
		fail(w, 500, "internal", err.Error())
		return
	}
	sealed, err := envelope.Seal("licet.payg.initkey", 1, hp, d.initKey)
	if err != nil {
		fail(w, 500, "internal", err.Error())
		return
	}
	if secs > 0 {
		sv.sellLocked(d.id, secs)
	}
	json.NewEncoder(w).Encode(map[string]any{"device_id": d.id, "account": "acct-1",
		"certificates": [][]byte{der, sv.v.chain[0]}, "init_key": sealed.Marshal(), "packets": d.packets})
}

// sell adds a packet of secs seconds for device id.
func (sv *stubVendor) sell(id string, secs int64) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.sellLocked(id, secs)
}

func (sv *stubVendor) sellLocked(id string, secs int64) {
	d := sv.devices[id]
	text, err := packet.Make(packet.Packet{DeviceID: id, Sequence: uint64(len(d.packets) + 1), Seconds: secs, ServerTime: time.Now().UTC(), Sale: "sale"}, sv.v.prov.Signer, sv.v.chain, d.hpke)
	if err != nil {
		sv.t.Error(err)
		return
	}
	d.packets = append(d.packets, string(text))
}

func (sv *stubVendor) sync(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sv.mu.Lock()
	defer sv.mu.Unlock()
	id := r.Header.Get("Licet-Device")
	d, ok := sv.devices[id]
	if !ok || id != r.PathValue("id") {
		fail(w, 401, "unauthenticated", "unknown device")
		return
	}
	date, nonce := r.Header.Get("Licet-Date"), r.Header.Get("Licet-Nonce")
	msg := meter.RequestMessage(r.Method, r.URL.RequestURI(), id, date, nonce, body)
	sig, _ := base64.StdEncoding.DecodeString(r.Header.Get("Licet-Signature"))
	mac, _ := base64.StdEncoding.DecodeString(r.Header.Get("Licet-MAC"))
	h := hmac.New(sha256.New, d.initKey)
	h.Write(msg)
	when, err := time.Parse(time.RFC3339, date)
	n, _ := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || time.Since(when).Abs() > 5*time.Minute || len(n) != 16 || sv.nonces[nonce] ||
		!ed25519.Verify(d.pub, msg, sig) || !hmac.Equal(h.Sum(nil), mac) {
		fail(w, 401, "unauthenticated", "bad device request")
		return
	}
	sv.nonces[nonce] = true
	var rep meter.Report
	json.Unmarshal(body, &rep)
	sv.reports = append(sv.reports, rep)
	out := []string{}
	if rep.HighestSequence < uint64(len(d.packets)) {
		out = d.packets[rep.HighestSequence:]
	}
	json.NewEncoder(w).Encode(map[string]any{"packets": out, "server_time": time.Now().UTC()})
}

func TestRegisterAndSync(t *testing.T) {
	v := newVendor(t)
	sv, srv := newStubVendor(t, v)
	sv.codes["CODE-1"] = 3600
	sig, _ := keys.GenerateSigner()
	dec, _ := keys.GenerateDecrypter()
	fp, err := hwid.Collect("")
	if err != nil {
		t.Skip("no hardware identity here:", err)
	}
	dir := filepath.Join(t.TempDir(), "payg")
	m := meter.New(dir, meter.Options{Root: v.root.Cert, Decrypter: dec})
	rem := &meter.Remote{Server: srv.URL}
	ctx := context.Background()
	dk := meter.DeviceKeys{Signer: sig, Decrypter: dec, Fingerprint: fp}

	if _, _, err := rem.Register(ctx, m, "WRONG", dk, v.root.Cert); !errs.Is(err, errs.NotFound) {
		t.Fatalf("unknown code: %v", err)
	}
	reg, applied, err := rem.Register(ctx, m, "CODE-1", dk, v.root.Cert)
	if err != nil || len(applied) != 1 || reg.DeviceID != "dev-1" {
		t.Fatalf("register: %+v %v %v", reg, applied, err)
	}
	if st := m.Status(); st.BalanceSeconds != 3600 || st.DeviceID != "dev-1" || st.Account != "acct-1" {
		t.Fatalf("after register: %+v", st)
	}
	if _, _, err := rem.Register(ctx, m, "CODE-1", dk, v.root.Cert); !errs.Is(err, errs.Conflict) {
		t.Fatalf("register twice: %v", err)
	}

	sv.sell("dev-1", 600)
	sv.sell("dev-1", 60)
	applied, err = rem.Sync(ctx, m, sig)
	if err != nil || len(applied) != 2 {
		t.Fatalf("sync: %v %v", applied, err)
	}
	st := m.Status()
	if st.BalanceSeconds != 4260 || st.LastSync == nil || st.HighestSequence != 3 {
		t.Fatalf("after sync: %+v", st)
	}
	if applied, err = rem.Sync(ctx, m, sig); err != nil || len(applied) != 0 {
		t.Fatalf("second sync: %v %v", applied, err)
	}
	if got := sv.reports[len(sv.reports)-1]; got.HighestSequence != 3 {
		t.Fatalf("report %+v", got)
	}
	// A stolen device key without the initialization key gets nothing.
	thief := meter.New(filepath.Join(t.TempDir(), "payg"), meter.Options{Root: v.root.Cert, Decrypter: dec})
	if err := thief.Init(*reg, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if _, err := rem.Sync(ctx, thief, sig); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("sync without the initialization key: %v", err)
	}
	// A certificate for other keys is refused at registration.
	sv.codes["CODE-2"] = 0
	other, _ := keys.GenerateSigner()
	m2 := meter.New(filepath.Join(t.TempDir(), "payg"), meter.Options{Root: newVendor(t).root.Cert, Decrypter: dec})
	if _, _, err := rem.Register(ctx, m2, "CODE-2", meter.DeviceKeys{Signer: other, Decrypter: dec, Fingerprint: fp}, newVendor(t).root.Cert); !errs.Is(err, errs.Invalid) {
		t.Fatalf("certificate from another root: %v", err)
	}
}
