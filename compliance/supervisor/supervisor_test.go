package supervisor_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/compliance/supervisor"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/paygtest"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/pki"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fixture is a registered device with a compliance supervisor whose every
// input the test controls.
type fixture struct {
	t       testing.TB
	v       *paygtest.PKI
	data    string
	id      string
	dec     *keys.Decrypter
	clock   *meter.FakeClock
	m       *meter.Meter
	env     supervisor.Env
	sup     *supervisor.Supervisor
	proc    string // the fake /proc/self/status
	program string // a "metered program" whose hash the bundle pins
	seq     uint64
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, v: paygtest.NewPKI(t, t0), data: t.TempDir(), id: "dev-1", clock: meter.NewFakeClock(t0)}
	f.dec, _ = keys.GenerateDecrypter()
	sig, _ := keys.GenerateSigner()
	der, err := f.v.Prov.IssueDevice(pki.Device{DeviceID: f.id, SystemID: "sys-1", AccountID: "acct-1", PublicKey: sig.Public(), HPKEKey: f.dec.PublicBytes()}, t0)
	if err != nil {
		t.Fatal(err)
	}
	f.m = meter.New(filepath.Join(f.data, "payg"), meter.Options{Clock: f.clock, Root: f.v.Root.Cert, Decrypter: f.dec})
	if err := f.m.Init(meter.Registration{DeviceID: f.id, Account: "acct-1", Certificates: [][]byte{der, f.v.Chain[0]}, RegisteredAt: t0}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	f.credit(3600)
	if err := f.m.RecordSync(); err != nil {
		t.Fatal(err)
	}
	f.proc = filepath.Join(f.data, "status")
	f.write(f.proc, "Name:\tlicet\nTracerPid:\t0\n")
	f.program = filepath.Join(f.data, "program")
	f.write(f.program, "#!/bin/sh\necho hi\n")
	f.beat()
	f.env = supervisor.Env{Meter: f.m, Root: f.v.Root.Cert, Now: f.clock.Wall, ProcStatus: f.proc}
	f.sup = supervisor.New(f.data, f.env)
	return f
}

func (f *fixture) write(path, s string) {
	f.t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

// beat touches the payg daemon's heartbeat at the fake clock's time.
func (f *fixture) beat() {
	p := filepath.Join(f.data, "payg", supervisor.HeartbeatFile)
	f.write(p, "")
	os.Chtimes(p, f.clock.Wall(), f.clock.Wall())
}

func (f *fixture) credit(secs int64) {
	f.t.Helper()
	f.seq++
	text, err := packet.Make(packet.Packet{DeviceID: f.id, Sequence: f.seq, Seconds: secs, ServerTime: t0, Sale: "sale"}, f.v.Prov.Signer, f.v.Chain, f.dec.PublicBytes())
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.m.Apply([][]byte{text}); err != nil {
		f.t.Fatal(err)
	}
}

func sum(path string) string {
	b, _ := os.ReadFile(path)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// doc is a bundle with every built-in check, weights adding up to 100.
func (f *fixture) doc(version uint64) *policy.Document {
	d := &policy.Document{Version: version, Thresholds: policy.Thresholds{Sanction: 70, NonOperational: 40, Margin: 10},
		SanctionSessionLimit: policy.Duration(time.Minute),
		Policies: []policy.Policy{
			{ID: "meter", Check: policy.CheckMeterRunning, Weight: 10, Fix: "start licet-agent-payg"},
			{ID: "clock", Check: policy.CheckClock, Weight: 10, Fix: "set the clock right and call support"},
			{ID: "log", Check: policy.CheckStateLog, Weight: 10, Fix: "call support"},
			{ID: "binaries", Check: policy.CheckBinaryHashes, Weight: 10, Fix: "reinstall the program", Hashes: map[string]string{f.program: sum(f.program)}},
			{ID: "packets", Check: policy.CheckPackets, Weight: 10, Fix: "call support"},
			{ID: "vendor", Check: policy.CheckVendorReached, Weight: 10, Days: 7, Fix: "connect and run 'licet agent payg sync'"},
			{ID: "debugger", Check: policy.CheckNoDebugger, Weight: 10, Fix: "detach the debugger"},
			{ID: "credit", Check: policy.CheckCredit, Weight: 10, Fix: "top up"},
			{ID: "intact", Check: policy.CheckPolicyIntact, Weight: 10, Fix: "call support for a reset"},
			{ID: "custom", Check: policy.CheckCommand, Weight: 10, Fix: "remove the fault file", Command: []string{"sh", "-c", "test ! -e " + filepath.Join(f.data, "fault")}},
		}}
	d.Defaults()
	return d
}

func (f *fixture) sign(d *policy.Document) []byte {
	f.t.Helper()
	text, err := policy.Sign(d, f.v.Prov.Signer, f.v.Chain)
	if err != nil {
		f.t.Fatal(err)
	}
	return text
}

func (f *fixture) install(d *policy.Document) {
	f.t.Helper()
	if _, _, err := f.sup.Install(f.sign(d)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) eval() *supervisor.State {
	f.t.Helper()
	f.beat()
	st, err := f.sup.Evaluate(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func result(st *supervisor.State, id string) supervisor.Result {
	for _, r := range st.Results {
		if r.ID == id {
			return r
		}
	}
	return supervisor.Result{}
}

func TestAllPassCompliant(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(1))
	st := f.eval()
	for _, r := range st.Results {
		if !r.Pass {
			t.Errorf("%s fails on a healthy device: %s", r.ID, r.Detail)
		}
	}
	if st.Score != 100 || st.Mode != supervisor.ModeCompliant {
		t.Fatalf("score %d mode %s", st.Score, st.Mode)
	}
	v, err := f.sup.Verdict()
	if err != nil || v.Mode != supervisor.ModeCompliant {
		t.Fatalf("verdict %+v %v", v, err)
	}
}

// TestChecksFaultInjection injects each check's fault and sees that check,
// and only it, fail; then takes the fault away and sees it pass again.
func TestChecksFaultInjection(t *testing.T) {
	cases := []struct {
		id            string
		inject, clear func(f *fixture)
		detail        string
	}{
		{"meter", func(f *fixture) {
			os.Remove(filepath.Join(f.data, "payg", supervisor.HeartbeatFile))
			f.clock.Advance(time.Second)
		},
			nil, "has not ticked"},
		{"binaries", func(f *fixture) { f.write(f.program, "#!/bin/sh\necho patched\n") },
			func(f *fixture) { f.write(f.program, "#!/bin/sh\necho hi\n") }, "not the vendor's"},
		{"vendor", func(f *fixture) { f.clock.Advance(8 * 24 * time.Hour) },
			func(f *fixture) { f.m.RecordSync() }, "last reached"},
		{"debugger", func(f *fixture) { f.write(f.proc, "Name:\tlicet\nTracerPid:\t4242\n") },
			func(f *fixture) { f.write(f.proc, "Name:\tlicet\nTracerPid:\t0\n") }, "process 4242 is tracing"},
		{"credit", func(f *fixture) {
			u := f.m.StartUsage("test")
			f.clock.Advance(2 * time.Hour)
			u.Tick()
			f.m.RecordSync()
			f.beat()
		},
			func(f *fixture) { f.credit(3600) }, "no credit"},
		{"custom", func(f *fixture) { f.write(filepath.Join(f.data, "fault"), "") },
			func(f *fixture) { os.Remove(filepath.Join(f.data, "fault")) }, "exit status 1"},
		{"log", func(f *fixture) {
			p := filepath.Join(f.data, "payg", meter.LogFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"seconds":3600`, `"seconds":9600`, 1)), 0o600)
		}, nil, "does not verify"},
		{"packets", func(f *fixture) {
			p := filepath.Join(f.data, "payg", meter.DeviceFile)
			b, _ := os.ReadFile(p)
			// another root's device certificate
			v2 := paygtest.NewPKI(t, t0)
			sig, _ := keys.GenerateSigner()
			der, _ := v2.Prov.IssueDevice(pki.Device{DeviceID: f.id, SystemID: "s", AccountID: "a", PublicKey: sig.Public(), HPKEKey: f.dec.PublicBytes()}, t0)
			reg, _ := f.m.Registration()
			reg.Certificates = [][]byte{der, v2.Chain[0]}
			_ = b
			writeJSON(t, p, reg)
		}, nil, "does not verify"},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			f := newFixture(t)
			f.install(f.doc(1))
			if st := f.eval(); st.Score != 100 {
				t.Fatalf("before the fault: %d %+v", st.Score, st.Results)
			}
			c.inject(f)
			st := f.sup
			s, err := st.Evaluate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range s.Results {
				want := r.ID != c.id
				if r.ID == "vendor" && c.id == "meter" || r.ID == "meter" && c.id == "vendor" {
					continue // moving the clock ages the heartbeat too
				}
				if c.id == "log" && (r.ID == "credit" || r.ID == "packets") {
					continue // a tampered log gives no credit
				}
				if r.Pass != want {
					t.Errorf("fault %s: %s pass=%v (%s)", c.id, r.ID, r.Pass, r.Detail)
				}
			}
			r := result(s, c.id)
			if !strings.Contains(r.Detail, c.detail) || !r.Counted || r.Fix == "" {
				t.Errorf("fault %s: %+v", c.id, r)
			}
			if s.Score >= 100 || len(s.Reasons) == 0 || !strings.Contains(strings.Join(s.Reasons, "\n"), "To fix:") {
				t.Errorf("score %d reasons %q", s.Score, s.Reasons)
			}
			if c.clear != nil {
				c.clear(f)
				if s := f.eval(); !result(s, c.id).Pass {
					t.Errorf("fault %s cleared: still %+v", c.id, result(s, c.id))
				}
			}
		})
	}
}

func TestClockRollbackSeen(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(1))
	f.clock.Advance(time.Hour)
	f.eval()
	f.clock.SetWall(f.clock.Wall().Add(-24 * time.Hour))
	st := f.eval()
	if r := result(st, "clock"); r.Pass || !strings.Contains(r.Detail, "set back") {
		t.Fatalf("clock set back a day: %+v", r)
	}
	f.clock.SetWall(f.clock.Wall().Add(24 * time.Hour))
	if r := result(f.eval(), "clock"); r.Pass {
		t.Fatal("a rollback once seen must stay until a reset")
	}
}

func TestCommandTimeout(t *testing.T) {
	f := newFixture(t)
	d := f.doc(1)
	d.Policies[9].Command = []string{"sleep", "10"}
	d.Policies[9].Timeout = policy.Duration(200 * time.Millisecond)
	f.install(d)
	start := time.Now()
	st := f.eval()
	if r := result(st, "custom"); r.Pass || !strings.Contains(r.Detail, "did not finish within") || time.Since(start) > 8*time.Second { // sleep 10 would take 10 s
		t.Fatalf("%+v after %s", r, time.Since(start))
	}
}

// TestTransitionsAndBack: compliant -> sanction -> compliant (corrective
// action) -> sanction -> non-operational -> reset -> compliant.
func TestTransitionsAndBack(t *testing.T) {
	f := newFixture(t)
	d := f.doc(1)
	d.Policies[9].Weight = 60 // custom: failing alone 120/180 = 66, sanction
	d.Policies[6].Weight = 40 // with the debugger and the binaries: 70/180 = 38
	f.install(d)
	if st := f.eval(); st.Mode != supervisor.ModeCompliant {
		t.Fatalf("%+v", st)
	}
	fault := filepath.Join(f.data, "fault")
	f.write(fault, "")
	st := f.eval()
	if st.Mode != supervisor.ModeSanction || st.Score != 66 {
		t.Fatalf("custom failing: mode %s score %d", st.Mode, st.Score)
	}
	v, err := f.sup.Verdict()
	if err != nil || v.Mode != supervisor.ModeSanction || v.SessionLimit != time.Minute || !strings.Contains(strings.Join(v.Reasons, ""), "remove the fault file") {
		t.Fatalf("sanction verdict %+v %v", v, err)
	}
	os.Remove(fault)
	if st := f.eval(); st.Mode != supervisor.ModeCompliant {
		t.Fatalf("corrective action did not lift the sanction: %s %d", st.Mode, st.Score)
	}
	// Now more faults: the debugger and the binary too -> non-operational.
	f.write(fault, "")
	f.write(f.proc, "TracerPid:\t99\n")
	f.write(f.program, "changed")
	st = f.eval()
	if st.Mode != supervisor.ModeNonOperational {
		t.Fatalf("three faults: mode %s score %d", st.Mode, st.Score)
	}
	// Paid time does not protect: the credit check passes, still stopped.
	if !result(st, "credit").Pass || f.m.Status().BalanceSeconds == 0 {
		t.Fatal("the device should have credit")
	}
	// Fixing everything does not leave non-operational without a reset.
	os.Remove(fault)
	f.write(f.proc, "TracerPid:\t0\n")
	f.write(f.program, "#!/bin/sh\necho hi\n")
	if st := f.eval(); st.Mode != supervisor.ModeNonOperational || st.Score != 100 {
		t.Fatalf("fixed without reset: %s %d", st.Mode, st.Score)
	}
	reset, err := policy.MakeReset(policy.Reset{DeviceID: f.id, Sequence: 1, Issued: t0}, f.v.Prov.Signer, f.v.Chain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sup.ApplyReset(reset, f.id); err != nil {
		t.Fatal(err)
	}
	if st := f.eval(); st.Mode != supervisor.ModeCompliant {
		t.Fatalf("after reset: %s %d", st.Mode, st.Score)
	}
	if _, err := f.sup.ApplyReset(reset, f.id); !errs.Is(err, errs.Conflict) {
		t.Fatalf("replayed reset: %v", err)
	}
}

func TestResetOfAnotherDeviceRefused(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(1))
	f.eval()
	other, _ := policy.MakeReset(policy.Reset{DeviceID: "dev-2", Sequence: 1, Issued: t0}, f.v.Prov.Signer, f.v.Chain)
	if _, err := f.sup.ApplyReset(other, f.id); !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "dev-2") {
		t.Fatalf("another device's reset: %v", err)
	}
	if r := result(f.eval(), "intact"); r.Pass {
		t.Fatal("a refused reset is not scored")
	}
	// A reset signed by a key the root did not certify.
	rogue := paygtest.NewPKI(t, t0)
	forged, _ := policy.MakeReset(policy.Reset{DeviceID: f.id, Sequence: 1, Issued: t0}, rogue.Prov.Signer, rogue.Chain)
	if _, err := f.sup.ApplyReset(forged, f.id); !errs.Is(err, errs.Invalid) {
		t.Fatalf("forged reset: %v", err)
	}
}

func TestPaidTimeDoesNotProtect(t *testing.T) {
	f := newFixture(t)
	f.credit(100 * 3600)
	d := f.doc(1)
	d.Policies[6].Weight = 200 // the debugger alone is non-operational
	f.install(d)
	f.write(f.proc, "TracerPid:\t7\n")
	st := f.eval()
	if st.Mode != supervisor.ModeNonOperational || !f.m.Status().Allowed() {
		t.Fatalf("mode %s with state %s", st.Mode, f.m.Status().State)
	}
	v, err := f.sup.Verdict()
	if err != nil || v.Mode != supervisor.ModeNonOperational {
		t.Fatalf("%+v %v", v, err)
	}
}

func TestHysteresis(t *testing.T) {
	th := policy.Thresholds{Sanction: 70, NonOperational: 40, Margin: 10}
	no := false
	soft := th
	soft.ResetRequired = &no
	for _, c := range []struct {
		from  string
		score int
		th    policy.Thresholds
		want  string
	}{
		{supervisor.ModeCompliant, 70, th, supervisor.ModeCompliant},
		{supervisor.ModeCompliant, 69, th, supervisor.ModeSanction},
		{supervisor.ModeSanction, 70, th, supervisor.ModeSanction}, // back above the threshold: not enough
		{supervisor.ModeSanction, 79, th, supervisor.ModeSanction},
		{supervisor.ModeSanction, 80, th, supervisor.ModeCompliant}, // threshold + margin
		{supervisor.ModeSanction, 40, th, supervisor.ModeSanction},
		{supervisor.ModeSanction, 39, th, supervisor.ModeNonOperational},
		{supervisor.ModeCompliant, 39, th, supervisor.ModeNonOperational},
		{supervisor.ModeNonOperational, 100, th, supervisor.ModeNonOperational}, // needs a reset
		{supervisor.ModeNonOperational, 40, soft, supervisor.ModeNonOperational},
		{supervisor.ModeNonOperational, 49, soft, supervisor.ModeNonOperational},
		{supervisor.ModeNonOperational, 50, soft, supervisor.ModeSanction},
		{supervisor.ModeNonOperational, 80, soft, supervisor.ModeCompliant},
		{supervisor.ModeNone, 65, th, supervisor.ModeSanction},
	} {
		if got := supervisor.NextMode(c.from, c.score, c.th); got != c.want {
			t.Errorf("%s at %d (reset required %v): %s, want %s", c.from, c.score, c.th.NeedsReset(), got, c.want)
		}
	}
}

// TestHysteresisEvaluated: a score oscillating around the sanction
// threshold does not flap the mode.
func TestHysteresisEvaluated(t *testing.T) {
	f := newFixture(t)
	d := f.doc(1)
	d.Thresholds = policy.Thresholds{Sanction: 95, NonOperational: 40, Margin: 5}
	d.Policies[9].Weight = 6 // failing: 90/96 = 93, below 95
	f.install(d)
	fault := filepath.Join(f.data, "fault")
	f.write(fault, "")
	if st := f.eval(); st.Mode != supervisor.ModeSanction {
		t.Fatalf("%s %d", st.Mode, st.Score)
	}
	// Fixed: 100 >= 95+5, leaves. Then a wobble to 93 enters again,
	// and a score of 96 (above 95, below 100) does not leave.
	d2 := f.doc(2)
	d2.Thresholds = d.Thresholds
	d2.Policies[9].Weight = 6
	d2.Policies[6].Weight = 1 // the debugger: failing alone 95/96 = 98
	f.install(d2)
	os.Remove(fault)
	f.write(f.proc, "TracerPid:\t3\n")
	if st := f.eval(); st.Mode != supervisor.ModeSanction || st.Score != 98 {
		t.Fatalf("98 is above the threshold but below threshold+margin: %s %d", st.Mode, st.Score)
	}
	f.write(f.proc, "TracerPid:\t0\n")
	if st := f.eval(); st.Mode != supervisor.ModeCompliant {
		t.Fatalf("100: %s %d", st.Mode, st.Score)
	}
}

func TestGracePeriod(t *testing.T) {
	f := newFixture(t)
	d := f.doc(1)
	d.Policies[9].Grace = policy.Duration(time.Hour)
	d.Policies[9].Weight = 200
	f.install(d)
	f.write(filepath.Join(f.data, "fault"), "")
	st := f.eval()
	if r := result(st, "custom"); r.Pass || r.Counted || r.GraceLeft == "" || st.Mode != supervisor.ModeCompliant {
		t.Fatalf("within grace: %+v mode %s", r, st.Mode)
	}
	f.clock.Advance(61 * time.Minute)
	f.m.RecordSync()
	if st := f.eval(); st.Mode != supervisor.ModeNonOperational {
		t.Fatalf("after grace: %s %d", st.Mode, st.Score)
	}
}

func TestTamperedBundle(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(2))
	text := f.sign(f.doc(3))
	// Change a weight inside the signed payload: re-encode the armor.
	bad := tamperArmor(t, text)
	if _, _, err := f.sup.Install(bad); !errs.Is(err, errs.Invalid) {
		t.Fatalf("tampered bundle: %v", err)
	}
	st := f.eval()
	if st.BundleVersion != 2 {
		t.Fatalf("the last valid bundle was not kept: %d", st.BundleVersion)
	}
	if r := result(st, "intact"); r.Pass || !strings.Contains(r.Detail, "does not verify") {
		t.Fatalf("tampering not scored: %+v", r)
	}
	// The readable copy on disk changed: refused, restored, scored.
	f2 := newFixture(t)
	f2.install(f2.doc(1))
	f2.eval()
	p := filepath.Join(f2.data, supervisor.Dir, supervisor.BundleFile)
	os.WriteFile(p, []byte("weight: 0\n"), 0o644)
	st = f2.eval()
	if r := result(st, "intact"); r.Pass || !strings.Contains(r.Detail, "changed on disk") || st.BundleVersion != 1 {
		t.Fatalf("bundle file edited: %+v", r)
	}
}

func TestRolledBackBundle(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(5))
	if _, _, err := f.sup.Install(f.sign(f.doc(4))); !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "older") {
		t.Fatalf("older bundle: %v", err)
	}
	d := f.doc(5)
	d.Policies[0].Weight = 1
	if _, _, err := f.sup.Install(f.sign(d)); !errs.Is(err, errs.Conflict) {
		t.Fatalf("same version, other content: %v", err)
	}
	if _, changed, err := f.sup.Install(f.sign(f.doc(5))); err != nil || changed {
		t.Fatalf("the same bundle again: %v %v", changed, err)
	}
}

func TestFailClosedState(t *testing.T) {
	f := newFixture(t)
	if v, err := f.sup.Verdict(); err != nil || v.Mode != supervisor.ModeNone {
		t.Fatalf("no bundle: today's behaviour expected: %+v %v", v, err)
	}
	f.install(f.doc(1))
	if _, err := f.sup.Verdict(); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("installed, never evaluated: %v", err)
	}
	f.eval()
	f.clock.Advance(4 * time.Minute) // stale after 3 x 1m
	if _, err := f.sup.Verdict(); !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("stale: %v", err)
	}
	f.eval()
	state := filepath.Join(f.data, supervisor.Dir, supervisor.StateFile)
	b, _ := os.ReadFile(state)
	b[len(b)-1] ^= 1
	os.WriteFile(state, b, 0o600)
	if _, err := f.sup.Verdict(); !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "changed or replaced") {
		t.Fatalf("edited state: %v", err)
	}
	os.Remove(state)
	if _, err := f.sup.Verdict(); !errs.Is(err, errs.Forbidden) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("deleted state: %v", err)
	}
	// Reinstalling the bundle brings it back, with the loss scored.
	f.install(f.doc(1))
	if r := result(f.eval(), "intact"); r.Pass {
		t.Fatal("a lost state is not scored")
	}
}

func TestNoteForgedPacket(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(1))
	if err := f.sup.Note("packet", "a forged packet was offered"); err != nil {
		t.Fatal(err)
	}
	if r := result(f.eval(), "packets"); r.Pass || !strings.Contains(r.Detail, "forged") {
		t.Fatalf("%+v", r)
	}
}

func TestReport(t *testing.T) {
	f := newFixture(t)
	f.install(f.doc(3))
	f.write(filepath.Join(f.data, "fault"), "")
	f.eval()
	r := f.sup.Report()
	if r.BundleVersion != 3 || r.Score != 90 || r.Mode != supervisor.ModeCompliant || len(r.Failing) != 1 || r.Failing[0] != "custom" {
		t.Fatalf("%+v", r)
	}
}

// BenchmarkEvaluate is a full evaluation of the built-in checks (the
// vendor command left out: its cost is the command's).
func BenchmarkEvaluate(b *testing.B) {
	f := newFixture(b)
	d := f.doc(1)
	d.Policies = d.Policies[:9]
	exe, _ := os.Executable()
	d.Policies[3].Hashes[policy.CheckAgentBinaryKey] = sum(exe)
	f.install(d)
	ctx := context.Background()
	if st, _ := f.sup.Evaluate(ctx); st.Score != 100 {
		b.Fatalf("%+v", st.Results)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.sup.Evaluate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
