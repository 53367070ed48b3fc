package meter_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
	"github.com/licet/licet/pki"
)

func wantState(t *testing.T, d *device, state string, balance int64) meter.Status {
	t.Helper()
	st := d.m.Status()
	if st.State != state || st.BalanceSeconds != balance {
		t.Fatalf("status %s (%s), balance %d; want %s, %d", st.State, st.Reason, st.BalanceSeconds, state, balance)
	}
	return st
}

func TestApplyAndBalance(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	wantState(t, d, meter.StateSpent, 0)
	applied, err := d.m.Apply([][]byte{v.packet(t, d, 7200, nil), v.packet(t, d, 1800, nil)})
	if err != nil || len(applied) != 2 {
		t.Fatalf("apply: %v %v", applied, err)
	}
	st := wantState(t, d, meter.StateActive, 9000)
	if st.HighestSequence != 2 || st.DeviceID != "dev-1" {
		t.Fatalf("status %+v", st)
	}
	u := d.m.StartUsage("test")
	d.clock.Advance(8000 * time.Second)
	if _, err := u.Tick(); err != nil {
		t.Fatal(err)
	}
	wantState(t, d, meter.StateLow, 1000)
	d.clock.Advance(2000 * time.Second)
	st, _ = u.Tick()
	if st.State != meter.StateSpent || st.BalanceSeconds != 0 || st.UsedSeconds != 10000 || st.ChargedSeconds != 9000 {
		t.Fatalf("after running out: %+v", st)
	}
	// Use charged by two consumers at once is charged once.
	if _, err := d.m.Apply([][]byte{v.packet(t, d, 1000, nil)}); err != nil {
		t.Fatal(err)
	}
	a, b := d.m.StartUsage("a"), d.m.StartUsage("b")
	d.clock.Advance(100 * time.Second)
	a.Tick()
	b.Tick()
	wantState(t, d, meter.StateLow, 900)
}

func TestUntilPlan(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	until := t0.Add(24 * time.Hour)
	if _, err := d.m.Apply([][]byte{v.packet(t, d, 0, &until), v.packet(t, d, 600, nil)}); err != nil {
		t.Fatal(err)
	}
	st := wantState(t, d, meter.StateActive, 600)
	if !st.UntilActive || !st.Until.Equal(until) {
		t.Fatalf("until: %+v", st)
	}
	u := d.m.StartUsage("s")
	d.clock.Advance(23 * time.Hour)
	u.Tick()
	wantState(t, d, meter.StateActive, 600) // covered by the plan; an hour of it and 600 s left
	d.clock.Advance(time.Hour + 300*time.Second)
	u.Tick()
	st = wantState(t, d, meter.StateLow, 300) // 300 s past the plan drawn from the seconds
	if st.UntilActive {
		t.Fatal("plan still active after its end")
	}
}

// Attack: the same packet applied twice.
func TestReplayedPacket(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	p := v.packet(t, d, 3600, nil)
	if _, err := d.m.Apply([][]byte{p}); err != nil {
		t.Fatal(err)
	}
	_, err := d.m.Apply([][]byte{p})
	if !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("replay: %v", err)
	}
	wantState(t, d, meter.StateActive, 3600)
	// Out of order: 3 before 2.
	p2 := v.packet(t, d, 10, nil)
	p3 := v.packet(t, d, 20, nil)
	if _, err := d.m.Apply([][]byte{p3}); !errs.Is(err, errs.Conflict) {
		t.Fatalf("gap: %v", err)
	}
	if a, err := d.m.Apply([][]byte{p3, p2}); err != nil || len(a) != 2 {
		t.Fatalf("both in any order: %v %v", a, err)
	}
	wantState(t, d, meter.StateActive, 3630)
}

// Attack: a packet of another device, sealed to it and naming it.
func TestPacketOfAnotherDevice(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	other := newDevice(t, v, "dev-2")
	if _, err := d.m.Apply([][]byte{v.packet(t, other, 3600, nil)}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("other device's packet: %v", err)
	}
	// Sealed to this device but naming the other (a vendor mistake, or a
	// sealed copy made by someone who holds this device's public key).
	text, err := packet.Make(packet.Packet{DeviceID: "dev-2", Sequence: 1, Seconds: 3600, ServerTime: t0, Sale: "s"}, v.prov.Signer, v.chain, d.dec.PublicBytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Apply([][]byte{text}); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "dev-2") {
		t.Fatalf("packet naming another device: %v", err)
	}
	wantState(t, d, meter.StateSpent, 0)
}

// Attack: the credit changed after signing, and a packet signed by a key the
// root did not certify.
func TestForgedPackets(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	p := v.packet(t, d, 60, nil)
	changed := forgeCredit(t, p, d.dec, 999999)
	if _, err := d.m.Apply([][]byte{changed}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("credit changed: %v", err)
	}
	// A provisioning certificate from another root, with a key of its own.
	other := newVendor(t)
	forged := other.packetSeq(t, d, 1, 999999, nil)
	if _, err := d.m.Apply([][]byte{forged}); !errs.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "provisioning") {
		t.Fatalf("uncertified key: %v", err)
	}
	// The genuine provisioning chain with another key signing.
	rogue, _ := keys.GenerateSigner()
	text, err := packet.Make(packet.Packet{DeviceID: d.id, Sequence: 1, Seconds: 999999, ServerTime: t0, Sale: "s"}, rogue, v.chain, d.dec.PublicBytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.m.Apply([][]byte{text}); !errs.Is(err, errs.Invalid) {
		t.Fatalf("rogue key with the genuine chain: %v", err)
	}
	wantState(t, d, meter.StateSpent, 0)
	if _, err := d.m.Apply([][]byte{p}); err != nil {
		t.Fatal(err)
	}
	wantState(t, d, meter.StateLow, 60)
	_ = pki.RoleDevice
}

func tamperTest(t *testing.T, what string, change func(d *device), reason string) {
	t.Run(what, func(t *testing.T) {
		v := newVendor(t)
		d := newDevice(t, v, "dev-1")
		if _, err := d.m.Apply([][]byte{v.packet(t, d, 3600, nil), v.packet(t, d, 3600, nil)}); err != nil {
			t.Fatal(err)
		}
		u := d.m.StartUsage("s")
		d.clock.Advance(time.Minute)
		u.Tick()
		wantState(t, d, meter.StateActive, 7140)
		change(d)
		st := d.m.Status()
		if st.State != meter.StateTampered || st.BalanceSeconds != 0 || st.Allowed() || !strings.Contains(st.Reason, reason) {
			t.Fatalf("after %s: %+v, want tampered with %q", what, st, reason)
		}
		if _, err := d.m.Apply([][]byte{v.packet(t, d, 3600, nil)}); err == nil {
			t.Fatal("applied a packet to a tampered state")
		}
		if _, err := u.Tick(); err == nil {
			t.Fatal("metered on a tampered state")
		}
	})
}

func rewrite(t *testing.T, path string, f func(string) string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(f(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Attack: the state log edited, truncated, deleted, and its companions.
func TestTamperedState(t *testing.T) {
	log := func(d *device) string { return filepath.Join(d.dir, meter.LogFile) }
	tamperTest(t, "credit edited", func(d *device) {
		rewrite(t, log(d), func(s string) string { return strings.Replace(s, `"seconds":3600`, `"seconds":9600`, 1) })
	}, "record 2")
	tamperTest(t, "use removed", func(d *device) {
		rewrite(t, log(d), func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			return strings.Join(lines[:len(lines)-2], "")
		})
	}, "truncated")
	tamperTest(t, "middle record removed", func(d *device) {
		rewrite(t, log(d), func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			return strings.Join(append(lines[:1:1], lines[2:]...), "")
		})
	}, "record 2")
	tamperTest(t, "truncated to nothing", func(d *device) { os.Truncate(log(d), 0) }, "truncated")
	tamperTest(t, "log deleted", func(d *device) { os.Remove(log(d)) }, "deleted")
	tamperTest(t, "log and head deleted", func(d *device) {
		os.Remove(log(d))
		os.Remove(filepath.Join(d.dir, meter.HeadFile))
	}, "deleted")
	tamperTest(t, "key deleted", func(d *device) { os.Remove(filepath.Join(d.dir, meter.KeyFile)) }, "key")
	tamperTest(t, "head edited", func(d *device) {
		rewrite(t, filepath.Join(d.dir, meter.HeadFile), func(s string) string { return strings.Replace(s, `"n":4`, `"n":3`, 1) })
	}, "head")
	tamperTest(t, "registration deleted", func(d *device) { os.Remove(filepath.Join(d.dir, meter.DeviceFile)) }, "deleted")
	tamperTest(t, "log of another device swapped in", func(d *device) {
		rewrite(t, filepath.Join(d.dir, meter.DeviceFile), func(s string) string { return strings.Replace(s, "dev-1", "dev-9", 1) })
	}, "dev-9")
}

// A torn last line (a crash in the middle of a write) is not tampering: the
// head does not cover it, and the next write replaces it.
func TestTornTail(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	if _, err := d.m.Apply([][]byte{v.packet(t, d, 3600, nil)}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(filepath.Join(d.dir, meter.LogFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`AAAA {"n":3,"type":"pack`)
	f.Close()
	wantState(t, d, meter.StateActive, 3600)
	if _, err := d.m.Apply([][]byte{v.packet(t, d, 60, nil)}); err != nil {
		t.Fatal(err)
	}
	wantState(t, d, meter.StateActive, 3660)
}

// Attack: the wall clock set back a day, then forward a year.
func TestClockSetBackAndForward(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	until := t0.Add(10 * 24 * time.Hour)
	if _, err := d.m.Apply([][]byte{v.packet(t, d, 3600, nil), v.packet(t, d, 0, &until)}); err != nil {
		t.Fatal(err)
	}
	u := d.m.StartUsage("s")
	d.clock.Advance(9 * 24 * time.Hour)
	u.Tick()
	st := wantState(t, d, meter.StateActive, 3600)
	if !st.UntilActive {
		t.Fatal("plan ended early")
	}

	// Set back a day within this boot: ignored, and said.
	d.clock.SetWall(d.clock.Wall().Add(-24 * time.Hour))
	d.clock.Advance(24*time.Hour + time.Minute)
	st, _ = u.Tick()
	if st.UntilActive || !strings.Contains(st.ClockNote, "behind") || st.BalanceSeconds != 3540 {
		t.Fatalf("clock set back a day: %+v", st)
	}
	// Set back a day and rebooted: the meter keeps its last time.
	mt := st.MeterTime
	d.clock.Reboot(0)
	d.clock.SetWall(mt.Add(-24 * time.Hour))
	st = d.m.Status()
	if st.UntilActive || st.MeterTime.Before(mt) || !strings.Contains(st.ClockNote, "behind") {
		t.Fatalf("set back across a reboot: %+v", st)
	}
	u = d.m.StartUsage("s")
	d.clock.Advance(time.Minute)
	st, _ = u.Tick()
	if st.BalanceSeconds != 3480 {
		t.Fatalf("use after set back: %+v", st)
	}

	// Forward a year across a reboot: the meter moves by at most the cap.
	mt = st.MeterTime
	d.clock.Reboot(0)
	d.clock.SetWall(mt.Add(365 * 24 * time.Hour))
	st = d.m.Status()
	if got := st.MeterTime.Sub(mt); got != meter.DefaultMaxForwardJump || !strings.Contains(st.ClockNote, "at most 48h0m0s") {
		t.Fatalf("forward a year moved the meter by %s: %+v", got, st)
	}
	// ... once per boot, not on every tick (the first tick anchors the
	// boot, one minute in).
	u = d.m.StartUsage("s")
	for range 3 {
		d.clock.Advance(time.Minute)
		st, _ = u.Tick()
	}
	if got := st.MeterTime.Sub(mt); got != meter.DefaultMaxForwardJump+2*time.Minute || st.BalanceSeconds != 3300 {
		t.Fatalf("forward a year, after ticks: moved %s, %+v", got, st)
	}
	// A packet's signed server time re-anchors forward only.
	v.seq[d.id]++
	text, _ := packet.Make(packet.Packet{DeviceID: d.id, Sequence: v.seq[d.id], Seconds: 60, ServerTime: st.MeterTime.Add(time.Hour), Sale: "s"}, v.prov.Signer, v.chain, d.dec.PublicBytes())
	if _, err := d.m.Apply([][]byte{text}); err != nil {
		t.Fatal(err)
	}
	if got := d.m.Status().MeterTime.Sub(st.MeterTime); got != time.Hour {
		t.Fatalf("server time re-anchored by %s", got)
	}
}

// A re-registration from a fresh directory starts after the device's
// earlier packets (Registration.BaseSequence, kept in the log's first
// record): the next packet applies, an earlier one is refused as replayed,
// and the base survives a reopen and a compaction.
func TestReregisteredBase(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	dec, _ := keys.GenerateDecrypter()
	fresh := &device{id: d.id, dir: filepath.Join(t.TempDir(), "payg"), dec: dec, clock: meter.NewFakeClock(t0)}
	fresh.m = meter.New(fresh.dir, meter.Options{Clock: fresh.clock, Root: v.root.Cert, Decrypter: dec})
	if err := fresh.m.Init(meter.Registration{DeviceID: d.id, Account: "acct-1", BaseSequence: 7}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if st := fresh.m.Status(); st.HighestSequence != 7 || st.State == meter.StateTampered {
		t.Fatalf("fresh installation after packet 7: %+v", st)
	}
	if _, err := fresh.m.Apply([][]byte{v.packetSeq(t, fresh, 7, 3600, nil)}); !errs.Is(err, errs.Conflict) || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("packet 7 of the old installation: %v, want refused as replayed", err)
	}
	if _, err := fresh.m.Apply([][]byte{v.packetSeq(t, fresh, 8, 60, nil)}); err != nil {
		t.Fatalf("packet 8: %v", err)
	}
	if err := fresh.m.Compact(); err != nil {
		t.Fatal(err)
	}
	reopened := meter.New(fresh.dir, meter.Options{Clock: fresh.clock, Root: v.root.Cert, Decrypter: dec})
	if st := reopened.Status(); st.HighestSequence != 8 || st.BalanceSeconds != 60 {
		t.Fatalf("after packet 8, compaction and a reopen: %+v", st)
	}
}
