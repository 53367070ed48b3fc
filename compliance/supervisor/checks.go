package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/pki"
)

// Env is what the checks read. Every field has a default on a real device;
// tests set them to inject faults.
type Env struct {
	// Meter is the pay-as-you-go meter of the agent directory.
	Meter *meter.Meter
	// Root is the pinned vendor root; bundles, resets and the device
	// certificate are checked against it.
	Root *x509.Certificate
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// ProcStatus is the agent's /proc status file (default
	// /proc/self/status), read for TracerPid.
	ProcStatus string
	// Executable is the agent's own binary (default os.Executable).
	Executable string
	// Heartbeat is the file the payg daemon touches every tick (default
	// DATA/payg/daemon.beat).
	Heartbeat string
	// LicenseValid, if set, says whether a valid license is cached: the
	// credit check passes with it when there is no pay-as-you-go credit.
	LicenseValid func() bool
	// TPM is the TPM 2.0 that seals the state (TPMPath gives the usual
	// choice): the sealing key lives in it and its NV counter makes a
	// restored older copy of the state visible. "" is the file-based seal.
	TPM string
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// facts are read once per evaluation and shared by the checks.
type facts struct {
	env    *Env
	st     *State
	now    time.Time
	meter  meter.Status
	reg    *meter.Registration
	regErr error
	hashes *hashCache
}

// outcome is a check's verdict.
type outcome struct {
	pass   bool
	detail string
}

func pass(format string, a ...any) outcome { return outcome{true, fmt.Sprintf(format, a...)} }
func fail(format string, a ...any) outcome { return outcome{false, fmt.Sprintf(format, a...)} }

// checkFunc is one built-in check.
type checkFunc func(ctx context.Context, f *facts, p *policy.Policy) outcome

var checks = map[string]checkFunc{
	policy.CheckMeterRunning:  checkMeterRunning,
	policy.CheckClock:         checkClock,
	policy.CheckStateLog:      checkStateLog,
	policy.CheckBinaryHashes:  checkBinaryHashes,
	policy.CheckPackets:       checkPackets,
	policy.CheckVendorReached: checkVendorReached,
	policy.CheckNoDebugger:    checkNoDebugger,
	policy.CheckCredit:        checkCredit,
	policy.CheckPolicyIntact:  checkPolicyIntact,
	policy.CheckCommand:       checkCommand,
}

// checkMeterRunning: the payg daemon ticks (its heartbeat file is fresh)
// and the meter is registered.
func checkMeterRunning(_ context.Context, f *facts, p *policy.Policy) outcome {
	if f.meter.State == meter.StateUnregistered {
		return fail("the device is not registered for pay-as-you-go")
	}
	fi, err := os.Stat(f.env.Heartbeat)
	if err != nil {
		return fail("the pay-as-you-go daemon has not ticked (no %s)", f.env.Heartbeat)
	}
	age := f.now.Sub(fi.ModTime())
	if age > p.MaxAge.D() || age < -p.MaxAge.D() {
		return fail("the pay-as-you-go daemon's last tick was %s ago (at most %s allowed)", age.Round(time.Second), p.MaxAge)
	}
	return pass("the meter ticked %s ago", age.Round(time.Second))
}

// checkClock: no clock set back, neither seen by the supervisor's own
// high-water mark nor by the meter.
func checkClock(_ context.Context, f *facts, _ *policy.Policy) outcome {
	for _, e := range f.st.Tamper {
		if e.Kind == "clock" {
			return fail("%s", e.What)
		}
	}
	if n := f.meter.ClockNote; strings.Contains(n, "set back") {
		return fail("the meter saw the clock set back: %s", n)
	}
	return pass("no rollback seen")
}

// checkStateLog: the meter's HMAC-chained log verifies.
func checkStateLog(_ context.Context, f *facts, _ *policy.Policy) outcome {
	switch f.meter.State {
	case meter.StateTampered:
		return fail("the pay-as-you-go state log does not verify: %s", f.meter.Reason)
	case meter.StateUnregistered:
		return fail("there is no pay-as-you-go state log: the device is not registered")
	}
	return pass("chain intact")
}

// hashCache keeps file hashes by path, size, modification time and inode,
// so an unchanged 30 MB binary is hashed once per process.
type hashCache struct {
	mu sync.Mutex
	m  map[string]cachedHash
}

type cachedHash struct {
	size, ino int64
	mtime     time.Time
	sum       string
}

func (c *hashCache) sum(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	var ino int64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = int64(st.Ino)
	}
	c.mu.Lock()
	h, ok := c.m[path]
	c.mu.Unlock()
	if ok && h.size == fi.Size() && h.ino == ino && h.mtime.Equal(fi.ModTime()) {
		return h.sum, nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	d := sha256.New()
	if _, err := io.Copy(d, fh); err != nil {
		return "", err
	}
	s := hex.EncodeToString(d.Sum(nil))
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]cachedHash{}
	}
	c.m[path] = cachedHash{fi.Size(), ino, fi.ModTime(), s}
	c.mu.Unlock()
	return s, nil
}

// checkBinaryHashes: the agent's binary and the metered programs match
// the bundle's SHA-256 hashes.
func checkBinaryHashes(_ context.Context, f *facts, p *policy.Policy) outcome {
	paths := make([]string, 0, len(p.Hashes))
	for k := range p.Hashes {
		paths = append(paths, k)
	}
	sort.Strings(paths)
	var bad []string
	for _, k := range paths {
		path := k
		if k == policy.CheckAgentBinaryKey {
			path = f.env.Executable
		}
		got, err := f.hashes.sum(path)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", path, err))
		case got != strings.ToLower(p.Hashes[k]):
			bad = append(bad, fmt.Sprintf("%s has SHA-256 %s…, not the vendor's %s…", path, got[:12], strings.ToLower(p.Hashes[k])[:12]))
		}
	}
	if len(bad) > 0 {
		return fail("%s", strings.Join(bad, "; "))
	}
	return pass("%d binaries match", len(paths))
}

// checkPackets: the device certificate, which binds every packet to this
// device, chains to the vendor root, and no forged packet was offered.
func checkPackets(_ context.Context, f *facts, _ *policy.Policy) outcome {
	if f.regErr != nil {
		return fail("%v", f.regErr)
	}
	if f.env.Root == nil {
		return fail("no vendor root pinned to verify the device certificate against")
	}
	d, err := pki.VerifyDevice(f.reg.Certificates, f.env.Root, f.now)
	if err != nil {
		return fail("the device certificate does not verify: %v", err)
	}
	if d.DeviceID != f.reg.DeviceID {
		return fail("the device certificate is for %s, not %s", d.DeviceID, f.reg.DeviceID)
	}
	for _, e := range f.st.Tamper {
		if e.Kind == "packet" {
			return fail("%s", e.What)
		}
	}
	return pass("device certificate verifies; no forged packet seen")
}

// checkVendorReached: a sync with the vendor within Days days.
func checkVendorReached(_ context.Context, f *facts, p *policy.Policy) outcome {
	last := f.meter.LastSync
	if last == nil && f.reg != nil {
		last = &f.reg.RegisteredAt
	}
	if last == nil {
		return fail("the vendor was never reached")
	}
	limit := time.Duration(p.Days) * 24 * time.Hour
	if age := f.now.Sub(*last); age > limit {
		return fail("the vendor was last reached %s ago (at most %d days)", age.Round(time.Hour), p.Days)
	}
	return pass("vendor reached %s", last.UTC().Format(time.RFC3339))
}

// checkNoDebugger: no tracer attached to the agent (TracerPid 0).
func checkNoDebugger(_ context.Context, f *facts, _ *policy.Policy) outcome {
	pid, err := tracerPid(f.env.ProcStatus)
	if err != nil {
		return fail("cannot read %s: %v", f.env.ProcStatus, err)
	}
	if pid != 0 {
		return fail("process %d is tracing the agent (a debugger)", pid)
	}
	return pass("no tracer")
}

// tracerPid reads TracerPid from a /proc status file.
func tracerPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "TracerPid:"); ok {
			var pid int
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d", &pid); err != nil {
				return 0, fmt.Errorf("TracerPid %q is not a number", v)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no TracerPid line")
}

// checkCredit: pay-as-you-go credit, or a valid license.
func checkCredit(_ context.Context, f *facts, _ *policy.Policy) outcome {
	if f.meter.Allowed() {
		return pass("pay-as-you-go state %s", f.meter.State)
	}
	if f.env.LicenseValid != nil && f.env.LicenseValid() {
		return pass("a valid license is cached")
	}
	return fail("no credit and no valid license (pay-as-you-go state %s)", f.meter.State)
}

// checkPolicyIntact: no tampered bundle, reset or state since the last
// reset.
func checkPolicyIntact(_ context.Context, f *facts, _ *policy.Policy) outcome {
	for _, e := range f.st.Tamper {
		if e.Kind == "bundle" || e.Kind == "reset" || e.Kind == "state" {
			return fail("%s", e.What)
		}
	}
	return pass("no tampering seen")
}

// checkCommand runs the vendor's command with its timeout: exit 0 passes.
func checkCommand(ctx context.Context, _ *facts, p *policy.Policy) outcome {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout.D())
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Command[0], p.Command[1:]...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	msg := strings.TrimSpace(out.String())
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return fail("%s did not finish within %s", p.Command[0], p.Timeout)
	case err != nil && msg != "":
		return fail("%s: %v: %s", p.Command[0], err, msg)
	case err != nil:
		return fail("%s: %v", p.Command[0], err)
	}
	return pass("%s exited 0", p.Command[0])
}
