package meter

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/licet/licet/envelope"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/devicereq"
	"github.com/licet/licet/pki"
)

// Protocol strings of docs/payg-protocol.md.
const (
	initKeyType = "licet.payg.initkey"
	maxAnswer   = 4 << 20
)

// DeviceKeys are the device's identity as registration needs it (the agent
// identity's keys and recorded hardware).
type DeviceKeys struct {
	Signer      *keys.Signer
	Decrypter   *keys.Decrypter
	Fingerprint hwid.Fingerprint
}

// Remote talks to the vendor's provisioning endpoints.
type Remote struct {
	Server string       // the vendor's base URL
	HTTP   *http.Client // nil means a client with a 30 s timeout
	// Compliance, if set, adds the compliance supervisor's report to a
	// sync and receives the bundle and reset packets of the answer
	// (docs/payg-protocol.md).
	Compliance SyncExtension
}

// SyncExtension is the compliance supervisor's part of a sync.
type SyncExtension interface {
	// Report is the "compliance" member of the sync request.
	Report() json.RawMessage
	// Deliver takes the answer's policy bundle and reset packets (either
	// may be empty), after the packets are applied.
	Deliver(policy string, resets []string) error
}

func (r *Remote) client() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

type registerRequest struct {
	Code        string           `json:"code"`
	Fingerprint hwid.Fingerprint `json:"fingerprint"`
	PublicKey   []byte           `json:"public_key"`
	HPKEKey     string           `json:"hpke_key"`
	Signature   []byte           `json:"signature"`
}

type registerAnswer struct {
	DeviceID     string   `json:"device_id"`
	Account      string   `json:"account"`
	Certificates [][]byte `json:"certificates"`
	InitKey      []byte   `json:"init_key"`
	Packets      []string `json:"packets"`
	BaseSequence uint64   `json:"base_sequence"`
}

type syncAnswer struct {
	Packets    []string  `json:"packets"`
	ServerTime time.Time `json:"server_time"`
	Policy     string    `json:"policy,omitempty"`
	Resets     []string  `json:"resets,omitempty"`
}

type syncRequest struct {
	Report
	Compliance json.RawMessage `json:"compliance,omitempty"`
}

// Register registers the device with a one-time code: it sends the hardware
// fingerprint and the public keys signed by the device key, checks the
// device certificate the vendor answers with against root (this device's
// keys, chained to the root), opens the initialization key, records the
// registration in m, and applies the packets of the answer.
func (r *Remote) Register(ctx context.Context, m *Meter, code string, dev DeviceKeys, root *x509.Certificate) (*Registration, []Applied, error) {
	if code == "" {
		return nil, nil, errs.E(errs.Usage, "a registration code is required")
	}
	if m.Registered() {
		return nil, nil, errs.E(errs.Conflict, "this device is already registered for pay-as-you-go (state in %s)", m.dir)
	}
	hpkeB64 := base64.StdEncoding.EncodeToString(dev.Decrypter.PublicBytes())
	req := registerRequest{Code: code, Fingerprint: dev.Fingerprint, PublicKey: dev.Signer.Public(), HPKEKey: hpkeB64,
		Signature: dev.Signer.Sign(devicereq.RegisterMessage(code, hpkeB64))}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Internal, err, "encode the registration")
	}
	var ans registerAnswer
	if err := r.do(ctx, http.MethodPost, "/v1/payg/register", body, nil, &ans); err != nil {
		return nil, nil, err
	}
	at := m.opts.Clock.Wall()
	d, err := pki.VerifyDevice(ans.Certificates, root, at)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "the vendor's device certificate does not verify against the vendor root")
	}
	if d.DeviceID != ans.DeviceID || !bytes.Equal(d.PublicKey, dev.Signer.Public()) || !bytes.Equal(d.HPKEKey, dev.Decrypter.PublicBytes()) {
		return nil, nil, errs.E(errs.Invalid, "the vendor's device certificate is for device %s with other keys, not for this device (%s)", d.DeviceID, ans.DeviceID)
	}
	sealed, err := envelope.ParseSealed(ans.InitKey, initKeyType, 1)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Invalid, err, "the initialization key in the vendor's answer")
	}
	initKey, err := sealed.Open(dev.Decrypter)
	if err != nil || len(initKey) != 32 {
		return nil, nil, errs.E(errs.Invalid, "the initialization key in the vendor's answer does not open with this device's key")
	}
	reg := Registration{DeviceID: ans.DeviceID, Account: ans.Account, Server: r.Server, Certificates: ans.Certificates, RegisteredAt: at.UTC(),
		BaseSequence: ans.BaseSequence}
	if err := m.Init(reg, initKey); err != nil {
		return nil, nil, err
	}
	applied, err := m.Apply(armored(ans.Packets))
	return &reg, applied, err
}

func armored(ps []string) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		out[i] = []byte(p)
	}
	return out
}

// Sync sends the device's report (highest sequence, total use) in a signed
// device request and applies the packets the vendor answers with, in order,
// up to the first one refused (later sequences cannot apply before it).
// A refused packet does not stop the rest of the sync: the sync is still
// recorded and the compliance extension still receives the answer's policy
// bundle and reset packets, so one bad packet cannot block their delivery.
// The error then is a *PacketRefusedError naming the packet (joined with
// any later failure); it has the refusal's kind.
func (r *Remote) Sync(ctx context.Context, m *Meter, signer *keys.Signer) ([]Applied, error) {
	reg, err := m.Registration()
	if err != nil {
		return nil, err
	}
	initKey, err := m.InitKey()
	if err != nil {
		return nil, err
	}
	rep, err := m.Report()
	if err != nil {
		return nil, err
	}
	req := syncRequest{Report: rep}
	if r.Compliance != nil {
		req.Compliance = r.Compliance.Report()
	}
	body, _ := json.Marshal(req)
	path := "/v1/payg/devices/" + reg.DeviceID + "/sync"
	h := http.Header{}
	devicereq.Sign(h, http.MethodPost, path, reg.DeviceID, signer.Private(), initKey, m.opts.Clock.Wall(), body)
	var ans syncAnswer
	if err := r.do(ctx, http.MethodPost, path, body, h, &ans); err != nil {
		return nil, err
	}
	var errList []error
	applied, refused, err := m.applyInOrder(armored(ans.Packets))
	if err != nil {
		if refused >= 0 {
			err = &PacketRefusedError{Index: refused + 1, Count: len(ans.Packets), Err: err}
		}
		errList = append(errList, err)
	}
	if err := m.RecordSync(); err != nil {
		errList = append(errList, err)
	}
	if r.Compliance != nil {
		if err := r.Compliance.Deliver(ans.Policy, ans.Resets); err != nil {
			errList = append(errList, err)
		}
	}
	if len(errList) == 1 {
		return applied, errList[0]
	}
	return applied, errors.Join(errList...)
}

// PacketRefusedError is Sync's error for a packet of the vendor's answer
// that the meter refused: replayed or out of order (errs.Conflict), or not
// opening, not verifying or for another device (errs.Invalid). The packets
// after it were not applied.
type PacketRefusedError struct {
	Index int   // the packet's place in the answer, from 1
	Count int   // the number of packets in the answer
	Err   error // why it was refused, of the refusal's kind
}

// Error names the refused packet and the reason.
func (e *PacketRefusedError) Error() string {
	return fmt.Sprintf("packet %d of %d in the vendor's sync answer refused (the packets after it were not applied): %v", e.Index, e.Count, e.Err)
}

// Unwrap returns the reason, so errs.KindOf gives the refusal's kind.
func (e *PacketRefusedError) Unwrap() error { return e.Err }

// do sends a JSON request and decodes a JSON answer; an error answer
// ({"error": {"code", "message"}}) becomes an error of its kind.
func (r *Remote) do(ctx context.Context, method, path string, body []byte, h http.Header, out any) error {
	url := strings.TrimRight(r.Server, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return errs.Wrap(errs.Usage, err, "bad server URL %q", r.Server)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client().Do(req)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "cannot reach the vendor at %s", r.Server)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return errs.Wrap(errs.Internal, err, "read the answer of %s", url)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return errs.E(errs.KindFromCode(e.Error.Code), "%s %s: %s", method, path, e.Error.Message)
		}
		return errs.E(errs.Internal, "%s %s: %s", method, path, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return errs.Wrap(errs.Internal, err, "%s %s answered with something other than the protocol's JSON", method, path)
	}
	return nil
}
