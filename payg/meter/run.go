package meter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/licet/licet/errs"
)

// Defaults of Supervise.
const (
	DefaultTick  = 10 * time.Second
	DefaultGrace = 10 * time.Second
)

// RunOptions configure Supervise.
type RunOptions struct {
	// Product names what runs, in the use records ("run:PRODUCT").
	Product string
	// Tick is how often use is charged and the balance checked; zero
	// means DefaultTick.
	Tick time.Duration
	// Threshold is the credit the program needs to start: more than this
	// much use left (zero: any credit).
	Threshold time.Duration
	// Warn are the low-balance marks: crossing one prints a warning.
	Warn []time.Duration
	// Grace is the time between SIGTERM and SIGKILL when credit runs out;
	// zero means DefaultGrace.
	Grace time.Duration
	// Log receives the warnings and notices; nil discards them.
	Log io.Writer
}

// Supervise runs cmd (not yet started) as metered use: it starts it only
// with more than Threshold of credit left, charges its run time every tick,
// warns at the marks, and when the credit runs out (or the state turns out
// tampered) stops it with SIGTERM, then SIGKILL after the grace period.
// ctx ending also stops the program that way. It returns nil when the
// program exited 0 by itself, an errs.Exhausted error when it was refused
// or stopped for credit, and an error naming the status otherwise.
func (m *Meter) Supervise(ctx context.Context, cmd *exec.Cmd, opts RunOptions) error {
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	marks := slices.Clone(opts.Warn)
	slices.Sort(marks)
	slices.Reverse(marks) // largest first

	st := m.Status()
	if !st.Allowed() || st.Remaining() <= opts.Threshold {
		why := st.Reason
		if st.Allowed() {
			why = fmt.Sprintf("%s of use left, and %s needs more than %s to start", roundD(st.Remaining()), opts.Product, opts.Threshold)
		}
		return errs.E(errs.Exhausted, "not starting %s: pay-as-you-go state %s: %s", cmd.Path, st.State, why)
	}
	warned := 0
	warn := func(st Status) { // once per mark crossed
		crossed := false
		for warned < len(marks) && st.Remaining() <= marks[warned] {
			warned++
			crossed = true
		}
		if crossed && st.Allowed() {
			fmt.Fprintf(opts.Log, "licet: warning: %s of pay-as-you-go credit left\n", roundD(st.Remaining()))
		}
	}
	warn(st)

	u := m.StartUsage("run:" + opts.Product)
	if err := cmd.Start(); err != nil {
		return errs.Wrap(errs.Invalid, err, "cannot start %s", cmd.Path)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// The tick is at most the time left, so the program stops close to zero.
	next := func(st Status) time.Duration {
		d := opts.Tick
		if r := st.Remaining(); st.Allowed() && r > 0 && r < d {
			d = r + time.Millisecond
		}
		return d
	}
	timer := time.NewTimer(next(st))
	defer timer.Stop()
	var stopReason error
	var killTimer <-chan time.Time
	stop := func(reason error) {
		if stopReason != nil {
			return
		}
		stopReason = reason
		fmt.Fprintf(opts.Log, "licet: stopping %s: %v\n", cmd.Path, reason)
		cmd.Process.Signal(syscall.SIGTERM)
		killTimer = time.After(opts.Grace)
	}
	ctxDone := ctx.Done()
	for {
		select {
		case err := <-done:
			u.Tick() // the last interval
			if stopReason != nil {
				return stopReason
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return errs.E(errs.Internal, "%s exited with %s", cmd.Path, ee.ProcessState)
			}
			return err
		case <-timer.C:
			st, err := u.Tick()
			switch {
			case err != nil:
				stop(errs.Wrap(errs.Invalid, err, "the pay-as-you-go state cannot be read"))
			case !st.Allowed():
				stop(errs.E(errs.Exhausted, "pay-as-you-go credit ran out (state %s)", st.State))
			default:
				warn(st)
			}
			timer.Reset(next(st))
		case <-ctxDone:
			ctxDone = nil
			stop(errs.E(errs.Internal, "interrupted"))
		case <-killTimer:
			fmt.Fprintf(opts.Log, "licet: %s did not stop within %s of SIGTERM; killing it\n", cmd.Path, opts.Grace)
			cmd.Process.Kill()
			killTimer = nil
		}
	}
}
