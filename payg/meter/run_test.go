package meter_test

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/paygtest"
	"github.com/licet/licet/payg/meter"
)

// realMeter is d's meter on the system clock, for tests that run programs.
func realMeter(d *device, v *vendor) *meter.Meter {
	return meter.New(d.dir, meter.Options{Root: v.root.Cert, Decrypter: d.dec})
}

// A metered program runs the balance down with a short tick, is stopped at
// zero, is refused while spent, and runs again after a top-up.
func TestSuperviseStopsAtZero(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	m := realMeter(d, v)
	if _, err := m.Apply([][]byte{v.packet(t, d, 2, nil)}); err != nil {
		t.Fatal(err)
	}
	var log paygtest.Buffer
	opts := meter.RunOptions{Product: "app", Tick: 100 * time.Millisecond, Grace: 500 * time.Millisecond, Warn: []time.Duration{time.Second}, Log: &log}
	start := time.Now()
	err := m.Supervise(context.Background(), exec.Command("sleep", "30"), opts)
	took := time.Since(start)
	// 2 s of credit: stopped after about 2 s (plus ticks and the grace);
	// the upper bound is loose because the test machines are shared and
	// busy, and still catches a program that is never stopped (sleep 30).
	if !errs.Is(err, errs.Exhausted) || took < 1900*time.Millisecond || took > 10*time.Second {
		t.Fatalf("after %s: %v", took, err)
	}
	if !strings.Contains(log.String(), "warning: 1s of pay-as-you-go credit left") || strings.Count(log.String(), "warning") != 1 {
		t.Fatalf("warnings: %q", log.String())
	}
	st := m.Status()
	if st.State != meter.StateSpent || st.BalanceSeconds != 0 || st.UsedSeconds < 2 {
		t.Fatalf("after the run: %+v", st)
	}
	// Spent: refused.
	if err := m.Supervise(context.Background(), exec.Command("true"), opts); !errs.Is(err, errs.Exhausted) {
		t.Fatalf("start while spent: %v", err)
	}
	// Top-up: runs again, to its end.
	if _, err := m.Apply([][]byte{v.packet(t, d, 60, nil)}); err != nil {
		t.Fatal(err)
	}
	if err := m.Supervise(context.Background(), exec.Command("sleep", "0.3"), opts); err != nil {
		t.Fatalf("after top-up: %v", err)
	}
	if st := m.Status(); st.BalanceSeconds < 58 || st.BalanceSeconds > 60 {
		t.Fatalf("after top-up and a short run: %+v", st)
	}
	// The threshold keeps a program from starting on too little credit.
	opts.Threshold = time.Hour
	if err := m.Supervise(context.Background(), exec.Command("true"), opts); !errs.Is(err, errs.Exhausted) {
		t.Fatalf("start below the threshold: %v", err)
	}
}

// A program that ignores SIGTERM is killed after the grace period.
func TestSuperviseKillsAfterGrace(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	m := realMeter(d, v)
	m.Apply([][]byte{v.packet(t, d, 1, nil)})
	start := time.Now()
	err := m.Supervise(context.Background(), exec.Command("sh", "-c", `trap "" TERM; sleep 30 & wait; sleep 30`),
		meter.RunOptions{Tick: 50 * time.Millisecond, Grace: 300 * time.Millisecond})
	if took := time.Since(start); !errs.Is(err, errs.Exhausted) || took > 15*time.Second { // loose: shared machines; sleep 30 is still caught
		t.Fatalf("after %s: %v", took, err)
	}
}

// The daemon meters an active session, and the local API serves the state
// and streams its changes.
func TestDaemonAndLocalAPI(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	m := realMeter(d, v)
	m.Apply([][]byte{v.packet(t, d, 3600, nil)})
	sessions := &fakeSessions{}
	sock := filepath.Join(t.TempDir(), "payg.sock")
	dm := &meter.Daemon{Meter: m, Sessions: sessions, Tick: 50 * time.Millisecond, Socket: sock}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go dm.Run(ctx)
	c := &meter.Client{Socket: sock}
	var st meter.Status
	var err error
	for i := 0; i < 100; i++ {
		if st, err = c.Status(ctx); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || st.BalanceSeconds != 3600 || st.State != meter.StateActive {
		t.Fatalf("status: %+v %v", st, err)
	}
	if conn, err := net.Dial("unix", sock); err != nil {
		t.Fatal(err)
	} else {
		conn.Close()
	}

	events := make(chan meter.Status, 16)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go c.Watch(wctx, func(st meter.Status) error { events <- st; return nil })
	if first := <-events; first.BalanceSeconds != 3600 {
		t.Fatalf("first event: %+v", first)
	}
	// Idle: no use charged.
	time.Sleep(300 * time.Millisecond)
	if st := m.Status(); st.UsedSeconds != 0 {
		t.Fatalf("idle daemon charged use: %+v", st)
	}
	sessions.set(true)
	select {
	case ev := <-events:
		if ev.BalanceSeconds >= 3600 {
			t.Fatalf("event after a second of session: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event while a session ran")
	}
	sessions.set(false)
	// A packet imported by another process shows in the stream.
	m.Apply([][]byte{v.packet(t, d, 7200, nil)})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.HighestSequence == 2 {
				return
			}
		case <-deadline:
			t.Fatal("no event for the imported packet")
		}
	}
}

type fakeSessions struct {
	mu     sync.Mutex
	active bool
}

func (f *fakeSessions) set(a bool) { f.mu.Lock(); f.active = a; f.mu.Unlock() }
func (f *fakeSessions) Active() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active, nil
}

// terminatingSessions is an active session source that records when and
// for whom the daemon ends the sessions.
type terminatingSessions struct {
	fakeSessions
	ended chan []string
}

func (f *terminatingSessions) Terminate(except []string) ([]string, error) {
	f.ended <- except
	return []string{"1 (alice)"}, nil
}

// Sessions open when the credit runs out end after EndSessionsAfter, all
// but the top-up account's; with credit, or with no grace set, they stay.
func TestDaemonEndsSessionsWithoutCredit(t *testing.T) {
	v := newVendor(t)
	d := newDevice(t, v, "dev-1")
	m := realMeter(d, v)
	m.Apply([][]byte{v.packet(t, d, 1, nil)})
	s := &terminatingSessions{ended: make(chan []string, 4)}
	s.set(true)
	dm := &meter.Daemon{Meter: m, Sessions: s, Tick: 50 * time.Millisecond, EndSessionsAfter: 400 * time.Millisecond, TopUpUsers: []string{"topup"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() { cancel(); <-done }() // the daemon writes into the test's directory
	start := time.Now()
	go func() { done <- dm.Run(ctx) }()
	select {
	case except := <-s.ended:
		took := time.Since(start)
		if len(except) != 1 || except[0] != "topup" {
			t.Errorf("sessions ended except %v, want the top-up account", except)
		}
		if took < time.Second+400*time.Millisecond-100*time.Millisecond {
			t.Errorf("sessions ended %s after start: before the second of credit and the grace were over", took)
		}
		if st := m.Status(); st.State != meter.StateSpent {
			t.Errorf("sessions ended with the state %s", st.State)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sessions open without credit were not ended")
	}

	// Without a grace the daemon leaves them open.
	s2 := &terminatingSessions{ended: make(chan []string, 4)}
	s2.set(true)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	defer func() { cancel2(); <-done2 }()
	go func() { done2 <- (&meter.Daemon{Meter: m, Sessions: s2, Tick: 20 * time.Millisecond}).Run(ctx2) }()
	select {
	case <-s2.ended:
		t.Fatal("sessions ended with EndSessionsAfter zero")
	case <-time.After(500 * time.Millisecond):
	}
}
