package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/licet/licet/internal/paygtest"
	"github.com/licet/licet/payg/provisioning"
)

type complianceStatus struct {
	Mode    string   `json:"mode"`
	Score   int      `json:"score"`
	Reasons []string `json:"reasons"`
}

// TestComplianceFlow runs the real vendor, the real agent commands and the
// real supervisor daemon: a device registered for pay-as-you-go gets the
// vendor's policy bundle at its sync and goes compliant -> sanction ->
// compliant (corrective action) -> non-operational (credit notwithstanding)
// -> reset by the vendor's reset packet at the next sync -> compliant; the
// vendor lists it by score; a stopped supervisor makes the agent fail closed.
func TestComplianceFlow(t *testing.T) {
	v := newVendor(t, "")
	dir, data, hw := sellAndRegister(t, v, "acme-c")
	var ps struct {
		DeviceID string `json:"device_id"`
	}
	okJSON(t, &ps, "agent", "payg", "status", "--data", data)

	// Without a bundle the device behaves as before.
	ok(t, "agent", "run", "--data", data, "--product", "p", "--tick", "200ms", "--", "true")

	faultA, faultB := filepath.Join(dir, "fault-a"), filepath.Join(dir, "fault-b")
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(`version: 1
thresholds: {sanction: 70, nonoperational: 40, margin: 10}
evaluate_every: 1s
sanction_session_limit: 1s
policies:
  - {id: credit, check: credit, weight: 10, fix: top up}
  - {id: log, check: state_log, weight: 10, fix: call support}
  - {id: a, check: command, weight: 40, command: [sh, -c, "test ! -e %s"], fix: remove fault-a}
  - {id: b, check: command, weight: 40, command: [sh, -c, "test ! -e %s"], fix: remove fault-b}
`, faultA, faultB)), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\npolicies:\n  - {id: a, check: credit, weight: 0, fix: x}\n"), 0o644)
	fails(t, 3, `policies\[0\]\.weight`, v.admin("vendor", "policy", "publish", bad)...)
	ok(t, v.admin("vendor", "policy", "publish", pol)...)
	fails(t, 3, "not above the published version 1", v.admin("vendor", "policy", "publish", pol)...)

	r := licet(t, nil, "agent", "payg", "sync", "--data", data, "--hw-root", hw)
	if r.code != 0 || !strings.Contains(r.stderr, "Installed compliance policy bundle version 1") {
		t.Fatalf("sync did not install the bundle: %s", r)
	}

	sup := exec.Command(licetBin, "agent", "compliance", "supervise", "--data", data, "--poll", "100ms")
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopSup := func() {
		if !stopped {
			stopped = true
			sup.Process.Signal(syscall.SIGTERM)
			sup.Wait()
		}
	}
	t.Cleanup(stopSup)

	status := func() complianceStatus {
		var s complianceStatus
		out := licet(t, nil, "agent", "compliance", "status", "--data", data, "--json")
		_ = jsonUnmarshal(out.stdout, &s)
		return s
	}
	waitMode := func(mode string) complianceStatus {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s := status()
			if s.Mode == mode {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("mode %s not reached: %+v", mode, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	run := func(program string) result {
		return licet(t, nil, "agent", "run", "--data", data, "--product", "p", "--tick", "100ms", "--grace", "1s", "--", "sh", "-c", program)
	}
	login := func() result {
		return licet(t, nil, "agent", "payg", "login-check", "--data", data, "--user", "alice", "--top-up-user", "topup")
	}

	waitMode("compliant")
	if r := run("echo mode=$LICET_COMPLIANCE_MODE"); r.code != 0 || !strings.Contains(r.stdout, "mode=compliant") {
		t.Fatalf("compliant run: %s", r)
	}

	// Sanction: told through the environment, session limited, user told why.
	os.WriteFile(faultA, nil, 0o644)
	s := waitMode("sanction")
	if s.Score != 60 || !strings.Contains(strings.Join(s.Reasons, " "), "remove fault-a") {
		t.Fatalf("sanction: %+v", s)
	}
	if r := run("echo mode=$LICET_COMPLIANCE_MODE"); r.code != 0 || !strings.Contains(r.stdout, "mode=sanction") || !strings.Contains(r.stderr, "remove fault-a") {
		t.Fatalf("sanction run: %s", r)
	}
	start := time.Now()
	if r := run("exec sleep 30"); r.code != 4 || !strings.Contains(r.stderr, "session limit") || time.Since(start) > 10*time.Second {
		t.Fatalf("sanction session limit: %s after %s", r, time.Since(start))
	}
	if r := login(); r.code != 0 || !strings.Contains(r.stdout, "sanction mode") {
		t.Fatalf("login in sanction mode: %s", r)
	}
	out := ok(t, "agent", "compliance", "status", "--data", data)
	if !strings.Contains(out, "FAIL") || !strings.Contains(out, "remove fault-a") || !strings.Contains(out, "no TPM: file-based seal") {
		t.Fatalf("status does not explain:\n%s", out)
	}

	// Corrective action lifts it.
	os.Remove(faultA)
	waitMode("compliant")

	// Non-operational, with ten hours of paid credit.
	os.WriteFile(faultA, nil, 0o644)
	os.WriteFile(faultB, nil, 0o644)
	waitMode("nonoperational")
	if r := run("echo started"); r.code != 4 || strings.Contains(r.stdout, "started") || !strings.Contains(r.stderr, "non-operational") {
		t.Fatalf("run when non-operational: %s", r)
	}
	if r := login(); r.code != 4 || !strings.Contains(r.stdout, "non-operational") {
		t.Fatalf("login when non-operational: %s", r)
	}
	ok(t, "agent", "payg", "login-check", "--data", data, "--user", "topup", "--top-up-user", "topup")
	var pst struct {
		State string `json:"state"`
	}
	okJSON(t, &pst, "agent", "payg", "status", "--data", data)
	if pst.State != "active" {
		t.Fatalf("the device should have paid credit: %s", pst.State)
	}
	// Fixing the faults is not enough: the vendor must reset.
	os.Remove(faultA)
	os.Remove(faultB)
	time.Sleep(1500 * time.Millisecond)
	if s := status(); s.Mode != "nonoperational" || s.Score != 100 {
		t.Fatalf("without a reset: %+v", s)
	}
	// The score reaches the vendor at the sync; it lists the device.
	os.WriteFile(faultA, nil, 0o644)
	os.WriteFile(faultB, nil, 0o644)
	time.Sleep(1500 * time.Millisecond)
	ok(t, "agent", "payg", "sync", "--data", data, "--hw-root", hw)
	listed := ok(t, v.admin("vendor", "device", "list", "--compliance", "below:50")...)
	if !strings.Contains(listed, ps.DeviceID) || !strings.Contains(listed, "nonoperational") {
		t.Fatalf("vendor list below:50:\n%s", listed)
	}
	if l := ok(t, v.admin("vendor", "device", "list", "--compliance", "below:10")...); strings.Contains(l, ps.DeviceID) {
		t.Fatalf("below:10 lists a device of score 20:\n%s", l)
	}
	os.Remove(faultA)
	os.Remove(faultB)

	// Support: the vendor's reset, by sync.
	resetFile := filepath.Join(dir, "reset.txt")
	ok(t, v.admin("vendor", "device", "reset", "--device", ps.DeviceID, "--reason", "ticket 42", "-o", resetFile)...)
	fails(t, 3, "not found|does not exist|no device", v.admin("vendor", "device", "reset", "--device", "dev-nope")...)
	r = licet(t, nil, "agent", "payg", "sync", "--data", data, "--hw-root", hw)
	if r.code != 0 || !strings.Contains(r.stderr, "Applied compliance reset 1") {
		t.Fatalf("sync did not apply the reset: %s", r)
	}
	waitMode("compliant")
	// The same reset as a file again: a replay.
	fails(t, 3, "already applied", "agent", "policy", "import", "--data", data, resetFile)
	if r := run("echo started"); r.code != 0 || !strings.Contains(r.stdout, "started") {
		t.Fatalf("run after the reset: %s", r)
	}

	// The supervisor stops: its state goes stale and the agent fails closed.
	stopSup()
	time.Sleep(3500 * time.Millisecond)
	if r := run("echo started"); r.code != 4 || !strings.Contains(r.stderr, "stale") {
		t.Fatalf("run with a stale supervisor: %s", r)
	}
	if r := login(); r.code != 4 || !strings.Contains(r.stdout, "stale") {
		t.Fatalf("login with a stale supervisor: %s", r)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// sellAndRegister sells ten hours of use to a new account (ID account) with
// a new device, and registers a fresh agent directory (dir/agent, on fake
// hardware hw) with the sale's code.
func sellAndRegister(t *testing.T, v *vendorEnv, account string) (dir, data, hw string) {
	t.Helper()
	ok(t, v.admin("vendor", "account", "add", "--customer", "acme", "--currency", "EUR", "--id", account)...)
	ok(t, v.admin("vendor", "plan", "add", "--id", "tenh", "--hours", "10", "--price", "100", "--currency", "EUR")...)
	var sale provisioning.SellAnswer
	okJSON(t, &sale, v.admin("vendor", "sell", "--account", account, "--plan", "tenh", "--new-device", "--idempotency-key", account+"-1")...)
	dir = t.TempDir()
	data = filepath.Join(dir, "agent")
	hw = paygtest.FakeHardware(t, fmt.Sprintf("%032x", time.Now().UnixNano()))
	ok(t, "agent", "init", "--data", data, "--hw-root", hw)
	ok(t, "agent", "payg", "register", "--data", data, "--hw-root", hw, "--server", v.srv.URL, "--code", sale.Code, "--root", filepath.Join(v.dir, "root.crt"))
	return dir, data, hw
}
