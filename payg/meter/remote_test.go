package meter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/hwid"
	"github.com/licet/licet/internal/paygtest"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
)

func TestRegisterAndSync(t *testing.T) {
	v := newVendor(t)
	sv, srv := paygtest.NewVendor(t, &paygtest.PKI{Root: v.root, Prov: v.prov, Chain: v.chain})
	sv.Codes["CODE-1"] = 3600
	sig, _ := keys.GenerateSigner()
	dec, _ := keys.GenerateDecrypter()
	fp, err := hwid.Collect(paygtest.FakeHardware(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	if err != nil {
		t.Fatal(err)
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

	sv.Sell("dev-1", 600)
	sv.Sell("dev-1", 60)
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
	if got := sv.Reports[len(sv.Reports)-1]; got.HighestSequence != 3 {
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
	sv.Codes["CODE-2"] = 0
	other, _ := keys.GenerateSigner()
	m2 := meter.New(filepath.Join(t.TempDir(), "payg"), meter.Options{Root: newVendor(t).root.Cert, Decrypter: dec})
	if _, _, err := rem.Register(ctx, m2, "CODE-2", meter.DeviceKeys{Signer: other, Decrypter: dec, Fingerprint: fp}, newVendor(t).root.Cert); !errs.Is(err, errs.Invalid) {
		t.Fatalf("certificate from another root: %v", err)
	}
}

// recordingExtension is a compliance extension that keeps what it is given.
type recordingExtension struct {
	delivered bool
	policy    string
	resets    []string
}

// Report implements meter.SyncExtension.
func (x *recordingExtension) Report() json.RawMessage { return json.RawMessage(`{"bundle_version":0}`) }

// Deliver implements meter.SyncExtension.
func (x *recordingExtension) Deliver(policy string, resets []string) error {
	x.delivered, x.policy, x.resets = true, policy, resets
	return nil
}

// TestSyncRefusedPacketStillDeliversCompliance: a sync answer holding a
// packet the meter refuses (another device's, a changed one, a replay) still
// records the sync and hands the policy bundle and reset packets to the
// compliance extension; the packets before the refused one are applied, the
// ones after it are not, and the error names the refused packet.
func TestSyncRefusedPacketStillDeliversCompliance(t *testing.T) {
	v := newVendor(t)
	other := &device{id: "dev-9", dec: mustDecrypter(t)}
	cases := []struct {
		name    string
		answer  func(t *testing.T, dec *keys.Decrypter, ps []string) []string
		kind    errs.Kind
		index   int // the refused packet's place in the answer
		applied int
	}{
		{"another device's packet first", func(t *testing.T, dec *keys.Decrypter, ps []string) []string {
			forged, err := packet.Make(packet.Packet{DeviceID: "dev-9", Sequence: 2, Seconds: 99999, ServerTime: time.Now().UTC(), Sale: "stolen"}, v.prov.Signer, v.chain, dec.PublicBytes())
			if err != nil {
				t.Fatal(err)
			}
			return append([]string{string(forged)}, ps...)
		}, errs.Invalid, 1, 0},
		{"packet sealed to another device", func(t *testing.T, dec *keys.Decrypter, ps []string) []string {
			return append([]string{string(v.packetSeq(t, other, 1, 99999, nil))}, ps...)
		}, errs.Invalid, 1, 0},
		{"tampered packet after a good one", func(t *testing.T, dec *keys.Decrypter, ps []string) []string {
			return []string{ps[0], tamper(t, ps[1])}
		}, errs.Invalid, 2, 1},
		{"replayed packet first", func(t *testing.T, dec *keys.Decrypter, ps []string) []string {
			return append([]string{ps[0]}, ps...)
		}, errs.Conflict, 2, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sv, srv := paygtest.NewVendor(t, &paygtest.PKI{Root: v.root, Prov: v.prov, Chain: v.chain})
			sv.Codes["CODE-1"] = 0
			sig, _ := keys.GenerateSigner()
			dec := mustDecrypter(t)
			fp, err := hwid.Collect(paygtest.FakeHardware(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
			if err != nil {
				t.Fatal(err)
			}
			m := meter.New(filepath.Join(t.TempDir(), "payg"), meter.Options{Root: v.root.Cert, Decrypter: dec})
			ctx := context.Background()
			if _, _, err := (&meter.Remote{Server: srv.URL}).Register(ctx, m, "CODE-1", meter.DeviceKeys{Signer: sig, Decrypter: dec, Fingerprint: fp}, v.root.Cert); err != nil {
				t.Fatal(err)
			}
			sv.Sell("dev-1", 600)
			sv.Sell("dev-1", 60)
			sv.Answer = func(ps []string) []string { return c.answer(t, dec, ps) }
			sv.Policy, sv.Resets = "POLICY BUNDLE", []string{"RESET 1"}
			ext := &recordingExtension{}
			applied, err := (&meter.Remote{Server: srv.URL, Compliance: ext}).Sync(ctx, m, sig)
			var refused *meter.PacketRefusedError
			if !errors.As(err, &refused) || refused.Index != c.index || !errs.Is(err, c.kind) {
				t.Fatalf("sync error %v (%T), want packet %d refused as %v", err, err, c.index, c.kind)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("packet %d of", c.index)) {
				t.Errorf("the error does not name the packet: %v", err)
			}
			if len(applied) != c.applied {
				t.Errorf("applied %+v, want %d", applied, c.applied)
			}
			if !ext.delivered || ext.policy != "POLICY BUNDLE" || len(ext.resets) != 1 || ext.resets[0] != "RESET 1" {
				t.Errorf("compliance delivery %+v", ext)
			}
			if st := m.Status(); st.LastSync == nil || st.HighestSequence != uint64(c.applied) {
				t.Errorf("after sync: %+v", st)
			}
			// The next, good answer applies the rest.
			sv.Answer = nil
			if applied, err := (&meter.Remote{Server: srv.URL, Compliance: ext}).Sync(ctx, m, sig); err != nil || len(applied) != 2-c.applied {
				t.Fatalf("next sync: %+v %v", applied, err)
			}
		})
	}
}

func mustDecrypter(t testing.TB) *keys.Decrypter {
	t.Helper()
	d, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tamper changes one character in the middle of an armored packet's body.
func tamper(t testing.TB, armoredText string) string {
	t.Helper()
	lines := strings.Split(armoredText, "\n")
	for i := len(lines) / 2; i < len(lines); i++ {
		l := lines[i]
		if len(l) > 8 && !strings.Contains(l, ":") && !strings.HasPrefix(l, "-----") {
			b := []byte(l)
			if b[4] == 'A' {
				b[4] = 'B'
			} else {
				b[4] = 'A'
			}
			lines[i] = string(b)
			return strings.Join(lines, "\n")
		}
	}
	t.Fatal("no body line to change")
	return ""
}
