package meter_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/payg/meter"
)

// sameState reports whether two statuses show the same credit, use and
// history.
func sameState(a, b meter.Status) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.State == b.State && a.BalanceSeconds == b.BalanceSeconds && a.CreditSeconds == b.CreditSeconds &&
		a.UsedSeconds == b.UsedSeconds && a.ChargedSeconds == b.ChargedSeconds && a.HighestSequence == b.HighestSequence &&
		eq(a.LastSync, b.LastSync) && eq(a.LastPacket, b.LastPacket) && eq(a.Until, b.Until) && a.UntilActive == b.UntilActive &&
		a.MeterTime.Equal(b.MeterTime)
}

// used spends n ticks of a minute of metered use on d, with a sync and a
// reboot on the way, so that every kind of record is in the log.
func used(t *testing.T, d *device, n int) {
	t.Helper()
	u := d.m.StartUsage("session")
	for i := 0; i < n; i++ {
		d.clock.Advance(time.Minute)
		if _, err := u.Tick(); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			if err := d.m.RecordSync(); err != nil {
				t.Fatal(err)
			}
			d.clock.Reboot(time.Hour)
			u = d.m.StartUsage("session")
		}
	}
}

func logLines(t *testing.T, d *device) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, meter.LogFile))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// A rotation keeps the state exactly, and the log goes on from it: packets
// in sequence (a replay still refused), use, syncs. Writes rotate a log
// longer than CompactBytes by themselves, so it stays bounded.
func TestCompaction(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	until := t0.Add(30 * 24 * time.Hour)
	first := v.packet(t, d, 36000, nil)
	if _, err := d.m.Apply([][]byte{first, v.packet(t, d, 0, &until)}); err != nil {
		t.Fatal(err)
	}
	used(t, d, 20)
	before := d.m.Status()
	if err := d.m.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := logLines(t, d); n != 1 {
		t.Fatalf("the compacted log has %d records, want 1", n)
	}
	if after := d.m.Status(); !sameState(before, after) {
		t.Fatalf("compaction changed the state:\nbefore %+v\nafter  %+v", before, after)
	}
	if _, err := d.m.Apply([][]byte{first}); !errs.Is(err, errs.Conflict) {
		t.Fatalf("a replayed packet after compaction: %v", err)
	}
	if _, err := d.m.Apply([][]byte{v.packet(t, d, 600, nil)}); err != nil {
		t.Fatalf("the next packet after compaction: %v", err)
	}
	used(t, d, 4)
	if st := d.m.Status(); st.HighestSequence != 3 || st.CreditSeconds != 36600 || st.UsedSeconds != 24*60 || st.State != meter.StateActive {
		t.Fatalf("after compaction and more use: %+v", st)
	}

	// Automatic: a log kept under a few records' length.
	old := meter.CompactBytes
	meter.CompactBytes = 2000
	defer func() { meter.CompactBytes = old }()
	before = d.m.Status()
	used(t, d, 200)
	if n := logLines(t, d); n > 10 {
		t.Errorf("with CompactBytes 2000 the log holds %d records", n)
	}
	st := d.m.Status()
	if st.UsedSeconds != before.UsedSeconds+200*60 || st.State == meter.StateTampered {
		t.Errorf("after 200 ticks with rotations: used %d s, want %d; %+v", st.UsedSeconds, before.UsedSeconds+200*60, st)
	}
}

// Attack: a compacted log edited, cut back to its checkpoint, replaced by
// the log it replaced, deleted, or paired with an older head. Each fails
// closed.
func TestCompactedTampered(t *testing.T) {
	setup := func(t *testing.T) (d *device, oldLog, oldHead []byte) {
		v := newVendor(t)
		d = newDevice(t, v, "dev-1")
		if _, err := d.m.Apply([][]byte{v.packet(t, d, 3600, nil)}); err != nil {
			t.Fatal(err)
		}
		used(t, d, 4)
		oldLog, _ = os.ReadFile(filepath.Join(d.dir, meter.LogFile))
		oldHead, _ = os.ReadFile(filepath.Join(d.dir, meter.HeadFile))
		if err := d.m.Compact(); err != nil {
			t.Fatal(err)
		}
		used(t, d, 2)
		wantState(t, d, meter.StateLow, 3600-6*60)
		return d, oldLog, oldHead
	}
	logPath := func(d *device) string { return filepath.Join(d.dir, meter.LogFile) }
	for _, c := range []struct {
		what, reason string
		change       func(d *device, oldLog, oldHead []byte)
	}{
		{"checkpoint credit edited", "checkpoint", func(d *device, _, _ []byte) {
			rewrite(t, logPath(d), func(s string) string {
				return strings.Replace(s, `"credit_ns":3600000000000`, `"credit_ns":9600000000000`, 1)
			})
		}},
		{"checkpoint chained elsewhere", "checkpoint", func(d *device, _, _ []byte) {
			rewrite(t, logPath(d), func(s string) string { return strings.Replace(s, `"prev_mac":"`, `"prev_mac":"A`, 1) })
		}},
		{"cut back to the checkpoint", "truncated", func(d *device, _, _ []byte) {
			rewrite(t, logPath(d), func(s string) string { return s[:strings.IndexByte(s, '\n')+1] })
		}},
		{"the replaced log restored", "truncated", func(d *device, oldLog, _ []byte) {
			os.WriteFile(logPath(d), oldLog, 0o600)
		}},
		{"deleted", "deleted", func(d *device, _, _ []byte) { os.Remove(logPath(d)) }},
		{"the head of before the rotation restored", "beyond its head", func(d *device, _, oldHead []byte) {
			os.WriteFile(filepath.Join(d.dir, meter.HeadFile), oldHead, 0o600)
		}},
		{"a checkpoint in the middle", "", func(d *device, _, _ []byte) {
			rewrite(t, logPath(d), func(s string) string {
				lines := strings.SplitAfter(s, "\n")
				return lines[1] + lines[0] + strings.Join(lines[2:], "")
			})
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			d, oldLog, oldHead := setup(t)
			c.change(d, oldLog, oldHead)
			st := d.m.Status()
			if st.State != meter.StateTampered || st.Allowed() || !strings.Contains(st.Reason, c.reason) {
				t.Fatalf("after %s: %+v, want tampered with %q", c.what, st, c.reason)
			}
		})
	}
}

// TestHelperCompact is the child process of TestCrashDuringCompaction: it
// rotates the log with a fault point armed, and is killed there.
func TestHelperCompact(t *testing.T) {
	dir := os.Getenv("LICET_METER_COMPACT_DIR")
	if dir == "" {
		t.Skip("child process of TestCrashDuringCompaction")
	}
	if err := meter.New(dir, meter.Options{}).Compact(); err != nil {
		t.Fatal(err)
	}
	t.Fatal("the fault point did not stop the rotation")
}

// A SIGKILL at any point of a rotation loses nothing: the state reads back
// the same, not tampered, and the log goes on (a packet, use, another
// rotation).
func TestCrashDuringCompaction(t *testing.T) {
	for _, point := range []string{"meter.compact.before-rename", "meter.compact.after-rename"} {
		t.Run(point, func(t *testing.T) {
			v := newVendor(t)
			d := newDevice(t, v, "dev-1")
			if _, err := d.m.Apply([][]byte{v.packet(t, d, 3600, nil)}); err != nil {
				t.Fatal(err)
			}
			used(t, d, 6)
			before := d.m.Status()
			headBefore, _ := os.ReadFile(filepath.Join(d.dir, meter.HeadFile))

			killAtFaultPoint(t, "TestHelperCompact", "LICET_METER_COMPACT_DIR="+d.dir, point)

			headAfter, _ := os.ReadFile(filepath.Join(d.dir, meter.HeadFile))
			rotated := logLines(t, d) == 1
			if !bytes.Equal(headBefore, headAfter) || rotated != (point == "meter.compact.after-rename") {
				t.Fatalf("the crash at %s did not leave the files expected: head moved %v, log rotated %v", point, !bytes.Equal(headBefore, headAfter), rotated)
			}
			if st := d.m.Status(); !sameState(before, st) {
				t.Fatalf("after SIGKILL at %s:\nbefore %+v\nafter  %+v", point, before, st)
			}
			if _, err := d.m.Apply([][]byte{v.packet(t, d, 60, nil)}); err != nil {
				t.Fatalf("a packet after the crash: %v", err)
			}
			used(t, d, 2)
			if err := d.m.Compact(); err != nil {
				t.Fatal(err)
			}
			if st := d.m.Status(); st.State == meter.StateTampered || st.BalanceSeconds != 3660-8*60 || st.HighestSequence != 2 {
				t.Fatalf("after the crash, a packet, use and a rotation: %+v", st)
			}
		})
	}
}
