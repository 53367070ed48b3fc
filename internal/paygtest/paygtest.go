// Package paygtest is a stand-in for the vendor side of the pay-as-you-go
// device protocol (docs/payg-protocol.md), for the agent's tests: a root,
// a provisioning key, registration codes, devices, packets and signed device
// requests, served by httptest. For tests only; the real vendor server is
// payg/provisioning behind api.
package paygtest

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/pki"
)

// PKI is the vendor's root and provisioning key.
type PKI struct {
	Root  *pki.Authority
	Prov  *pki.Authority
	Chain [][]byte // the provisioning certificate
}

// NewPKI makes a vendor root and a provisioning key it certifies, valid from
// a day before now.
func NewPKI(t testing.TB, now time.Time) *PKI {
	t.Helper()
	rk, _ := keys.GenerateSigner()
	root, err := pki.NewRoot(rk, "ACME", now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := keys.GenerateSigner()
	der, err := root.IssueProvisioning(pk.Public(), "ACME", now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{Root: root, Prov: &pki.Authority{Cert: c, Signer: pk}, Chain: [][]byte{der}}
}

// Vendor is the vendor side of docs/payg-protocol.md, minimally: one
// registration code with a first credit, devices, packets, signed device
// requests (signature, MAC, nonce, date). A test stand-in for the real
// vendor server.
type Vendor struct {
	t  testing.TB
	v  *PKI
	mu sync.Mutex
	// codes maps a registration code to the seconds of its first packet.
	Codes   map[string]int64
	devices map[string]*stubDevice
	nonces  map[string]bool
	// Reports are the devices' sync reports, in order.
	Reports []meter.Report
	// Policy and Resets, when set, are the armored compliance policy
	// bundle and reset packets added to the answer of a sync request that
	// carries a compliance report (docs/payg-protocol.md).
	Policy string
	Resets []string
	// Answer, if set, rewrites the packets of a sync answer, so a test can
	// send a device another device's packet, a changed one or a replay.
	Answer func(packets []string) []string
}

type stubDevice struct {
	id      string
	pub     ed25519.PublicKey
	hpke    []byte
	initKey []byte
	packets []string
}

// NewVendor serves the protocol for the vendor p until the test ends.
func NewVendor(t testing.TB, v *PKI) (*Vendor, *httptest.Server) {
	sv := &Vendor{t: t, v: v, Codes: map[string]int64{}, devices: map[string]*stubDevice{}, nonces: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/root", func(w http.ResponseWriter, r *http.Request) {
		pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: v.Root.Cert.Raw})
	})
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

func (sv *Vendor) register(w http.ResponseWriter, r *http.Request) {
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
	secs, ok := sv.Codes[req.Code]
	if !ok {
		fail(w, 404, "not_found", "unknown or used registration code")
		return
	}
	if !ed25519.Verify(req.PublicKey, devicereq.RegisterMessage(req.Code, req.HPKEKey), req.Signature) {
		fail(w, 400, "invalid", "signature does not verify")
		return
	}
	delete(sv.Codes, req.Code)
	hp, _ := base64.StdEncoding.DecodeString(req.HPKEKey)
	d := &stubDevice{id: fmt.Sprintf("dev-%d", len(sv.devices)+1), pub: req.PublicKey, hpke: hp, initKey: make([]byte, 32)}
	copy(d.initKey, []byte("init key of "+d.id))
	sv.devices[d.id] = d
	der, err := sv.v.Prov.IssueDevice(pki.Device{DeviceID: d.id, SystemID: req.Fingerprint.SystemID(), AccountID: "acct-1", PublicKey: d.pub, HPKEKey: hp}, time.Now())
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
		"certificates": [][]byte{der, sv.v.Chain[0]}, "init_key": sealed.Marshal(), "packets": d.packets})
}

// Sell adds a packet of secs seconds for device id.
func (sv *Vendor) Sell(id string, secs int64) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.sellLocked(id, secs)
}

func (sv *Vendor) sellLocked(id string, secs int64) {
	d := sv.devices[id]
	text, err := packet.Make(packet.Packet{DeviceID: id, Sequence: uint64(len(d.packets) + 1), Seconds: secs, ServerTime: time.Now().UTC(), Sale: "sale"}, sv.v.Prov.Signer, sv.v.Chain, d.hpke)
	if err != nil {
		sv.t.Error(err)
		return
	}
	d.packets = append(d.packets, string(text))
}

func (sv *Vendor) sync(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sv.mu.Lock()
	defer sv.mu.Unlock()
	id := r.Header.Get(devicereq.HeaderDevice)
	d, ok := sv.devices[id]
	if !ok || id != r.PathValue("id") {
		fail(w, 401, "unauthenticated", "unknown device")
		return
	}
	date, nonce := r.Header.Get(devicereq.HeaderDate), r.Header.Get(devicereq.HeaderNonce)
	msg := devicereq.Message(r.Method, r.URL.RequestURI(), id, date, nonce, body)
	sig, _ := base64.StdEncoding.DecodeString(r.Header.Get(devicereq.HeaderSignature))
	mac, _ := base64.StdEncoding.DecodeString(r.Header.Get(devicereq.HeaderMAC))
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
	var req struct {
		meter.Report
		Compliance json.RawMessage `json:"compliance"`
	}
	json.Unmarshal(body, &req)
	rep := req.Report
	sv.Reports = append(sv.Reports, rep)
	out := []string{}
	if rep.HighestSequence < uint64(len(d.packets)) {
		out = append(out, d.packets[rep.HighestSequence:]...)
	}
	if sv.Answer != nil {
		out = sv.Answer(out)
	}
	ans := map[string]any{"packets": out, "server_time": time.Now().UTC()}
	if len(req.Compliance) > 0 {
		if sv.Policy != "" {
			ans["policy"] = sv.Policy
		}
		if len(sv.Resets) > 0 {
			ans["resets"] = sv.Resets
		}
	}
	json.NewEncoder(w).Encode(ans)
}

// Packets returns the armored packets of device id made so far.
func (sv *Vendor) Packets(id string) []string {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if d := sv.devices[id]; d != nil {
		return append([]string(nil), d.packets...)
	}
	return nil
}

// FakeHardware writes a machine's hardware identity (machine-id and DMI
// UUID) under a temporary root for hwid.Collect and --hw-root.
func FakeHardware(t testing.TB, machineID string) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "machine-id"), []byte(machineID+"\n"), 0o644)
	dmi := filepath.Join(root, "sys", "class", "dmi", "id")
	os.MkdirAll(dmi, 0o755)
	os.WriteFile(filepath.Join(dmi, "product_uuid"), []byte("4c4c4544-0000-1000-8000-"+machineID[:12]+"\n"), 0o644)
	return root
}
