package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/compliance/policy"
	"github.com/licet/licet/errs"
	"github.com/licet/licet/internal/paygtest"
	"github.com/licet/licet/keys"
	"github.com/licet/licet/payg/meter"
	"github.com/licet/licet/payg/packet"
)

// runLicet runs licet in-process and returns stdout+stderr and the exit code.
func runLicet(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out paygtest.Buffer
	err := Run(context.Background(), args, &out, &out)
	if err != nil {
		fmt.Fprintln(&out, "licet:", err)
	}
	return out.String(), errs.ExitCode(err)
}

func paygStatus(t *testing.T, data string) meter.Status {
	t.Helper()
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"agent", "payg", "status", "--data", data, "--json"}, &out, &out); err != nil {
		t.Fatalf("status: %v\n%s", err, out.String())
	}
	var st meter.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The device side through the command line: register against a stand-in
// vendor, status, sync, import by file, replay refused, metered program
// stopped at zero, login check, top-up.
func TestAgentPayg(t *testing.T) {
	p := paygtest.NewPKI(t, time.Now())
	v, srv := paygtest.NewVendor(t, p)
	v.Codes["CODE-1"] = 2
	hw := paygtest.FakeHardware(t, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	data := filepath.Join(t.TempDir(), "agent")
	if out, code := runLicet(t, "agent", "init", "--data", data, "--hw-root", hw); code != 0 {
		t.Fatal(out)
	}
	if out, code := runLicet(t, "agent", "payg", "status", "--data", data); code != 0 || !strings.Contains(out, "unregistered") {
		t.Fatalf("status before registering: %d %s", code, out)
	}
	if out, code := runLicet(t, "agent", "payg", "login-check", "--data", data, "--user", "alice"); code != 4 {
		t.Fatalf("login-check unregistered: %d %s", code, out)
	}
	if out, code := runLicet(t, "agent", "payg", "register", "--data", data, "--hw-root", hw, "--server", srv.URL, "--code", "NOPE"); code != 3 {
		t.Fatalf("unknown code: %d %s", code, out)
	}
	out, code := runLicet(t, "agent", "payg", "register", "--data", data, "--hw-root", hw, "--server", srv.URL, "--code", "CODE-1")
	if code != 0 || !strings.Contains(out, "Registered as device dev-1") || !strings.Contains(out, "Applied packet 1") {
		t.Fatalf("register: %d %s", code, out)
	}
	if fi, err := os.Stat(filepath.Join(data, "payg", meter.InitKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("init key file: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(data, "payg", meter.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("meter key file: %v %v", fi, err)
	}
	if st := paygStatus(t, data); st.BalanceSeconds != 2 || st.State != meter.StateLow || st.DeviceID != "dev-1" {
		t.Fatalf("after register: %+v", st)
	}

	// The metered program runs the 2 s down and is stopped.
	start := time.Now()
	out, code = runLicet(t, "agent", "run", "--data", data, "--product", "app", "--tick", "100ms", "--grace", "500ms", "--", "sleep", "30")
	if code != 3 || !strings.Contains(out, "credit ran out") || time.Since(start) > 15*time.Second { // loose: shared machines; sleep 30 is still caught
		t.Fatalf("run down: exit %d after %s: %s", code, time.Since(start), out)
	}
	if out, code = runLicet(t, "agent", "run", "--data", data, "--product", "app", "--", "true"); code != 3 || !strings.Contains(out, "not starting") {
		t.Fatalf("run while spent: %d %s", code, out)
	}
	if out, code := runLicet(t, "agent", "payg", "login-check", "--data", data, "--user", "alice", "--top-up-user", "topup"); code != 4 || !strings.Contains(out, "log in as topup") {
		t.Fatalf("login-check spent: %d %s", code, out)
	}
	if out, code := runLicet(t, "agent", "payg", "login-check", "--data", data, "--user", "topup", "--top-up-user", "topup"); code != 0 {
		t.Fatalf("login-check top-up user: %d %s", code, out)
	}

	// Top-up by sync.
	v.Sell("dev-1", 3600)
	if out, code = runLicet(t, "agent", "payg", "sync", "--data", data, "--hw-root", hw); code != 0 || !strings.Contains(out, "Applied packet 2") {
		t.Fatalf("sync: %d %s", code, out)
	}
	st := paygStatus(t, data)
	if st.BalanceSeconds != 3600 || st.LastSync == nil || st.State != meter.StateActive {
		t.Fatalf("after sync: %+v", st)
	}
	if out, code = runLicet(t, "agent", "run", "--data", data, "--product", "app", "--tick", "100ms", "--", "sh", "-c", "exit 0"); code != 0 {
		t.Fatalf("run after top-up: %d %s", code, out)
	}
	if out, code = runLicet(t, "agent", "payg", "login-check", "--data", data, "--user", "alice"); code != 0 {
		t.Fatalf("login-check with credit: %d %s", code, out)
	}

	// Top-up by file: two packets concatenated; then the same file again.
	v.Sell("dev-1", 60)
	v.Sell("dev-1", 60)
	ps := v.Packets("dev-1")
	file := filepath.Join(t.TempDir(), "packets.txt")
	os.WriteFile(file, []byte(ps[3]+"\n"+ps[2]), 0o644)
	if out, code = runLicet(t, "agent", "payg", "import", "--data", data, "--hw-root", hw, file); code != 0 || !strings.Contains(out, "Applied packet 3") || !strings.Contains(out, "Applied packet 4") {
		t.Fatalf("import: %d %s", code, out)
	}
	if out, code = runLicet(t, "agent", "payg", "import", "--data", data, "--hw-root", hw, file); code != 3 || !strings.Contains(out, "replayed") {
		t.Fatalf("import replayed: %d %s", code, out)
	}
	if st := paygStatus(t, data); st.HighestSequence != 4 || st.BalanceSeconds < 3715 {
		t.Fatalf("after import: %+v", st)
	}

	// Tampering shows in status and login-check.
	logFile := filepath.Join(data, "payg", meter.LogFile)
	b, _ := os.ReadFile(logFile)
	os.WriteFile(logFile, bytes.Replace(b, []byte(`"seconds":60`), []byte(`"seconds":99`), 1), 0o600)
	if out, code = runLicet(t, "agent", "payg", "status", "--data", data); code != 3 || !strings.Contains(out, "tampered") || !strings.Contains(out, "MAC") {
		t.Fatalf("status tampered: %d %s", code, out)
	}
	if out, code = runLicet(t, "agent", "payg", "login-check", "--data", data, "--user", "alice"); code != 4 || !strings.Contains(out, "tampered") {
		t.Fatalf("login-check tampered: %d %s", code, out)
	}
}

// The PAM path: pamtester against a service whose account stack calls
// 'licet agent payg login-check' through pam_exec, the way
// deploy/pam/licet-payg does.
func TestAgentPaygPAM(t *testing.T) {
	require := os.Getenv("LICET_REQUIRE_PAMTESTER") == "1"
	skip := func(why string) {
		if require {
			t.Fatalf("LICET_REQUIRE_PAMTESTER=1 but %s", why)
		}
		t.Skip(why + " (apt-get install pamtester, run as root)")
	}
	if os.Geteuid() != 0 {
		skip("not root: the test writes a PAM service under /etc/pam.d")
	}
	pamtester, err := exec.LookPath("pamtester")
	if err != nil {
		skip("pamtester is not installed")
	}
	bin := filepath.Join(t.TempDir(), "licet")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/licet/licet/cmd/licet").CombinedOutput(); err != nil {
		t.Fatalf("build licet: %v\n%s", err, out)
	}
	p := paygtest.NewPKI(t, time.Now())
	v, srv := paygtest.NewVendor(t, p)
	v.Codes["CODE-1"] = 2
	hw := paygtest.FakeHardware(t, "cccccccccccccccccccccccccccccccc")
	data := filepath.Join(t.TempDir(), "agent")
	for _, args := range [][]string{
		{"agent", "init", "--data", data, "--hw-root", hw},
		{"agent", "payg", "register", "--data", data, "--hw-root", hw, "--server", srv.URL, "--code", "CODE-1"},
	} {
		if out, code := runLicet(t, args...); code != 0 {
			t.Fatal(out)
		}
	}
	service := fmt.Sprintf("licet-payg-test-%d", os.Getpid())
	pamFile := filepath.Join("/etc/pam.d", service)
	conf := fmt.Sprintf("auth required pam_permit.so\naccount requisite pam_exec.so quiet %s agent payg login-check --data %s --top-up-user topup\naccount required pam_permit.so\n", bin, data)
	if err := os.WriteFile(pamFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pamFile) })
	login := func(user string) bool {
		out, err := exec.Command(pamtester, service, user, "acct_mgmt").CombinedOutput()
		t.Logf("pamtester %s %s acct_mgmt: %v %s", service, user, err, strings.TrimSpace(string(out)))
		return err == nil
	}
	if !login("alice") {
		t.Fatal("login refused with credit")
	}
	// A metered program spends the 2 s of credit.
	if out, code := runLicet(t, "agent", "run", "--data", data, "--product", "app", "--tick", "100ms", "--", "sleep", "30"); code != 3 {
		t.Fatalf("run down: %d %s", code, out)
	}
	if login("alice") {
		t.Fatal("login allowed with the credit spent")
	}
	if !login("topup") {
		t.Fatal("the top-up account was refused")
	}
	v.Sell("dev-1", 600)
	if out, code := runLicet(t, "agent", "payg", "sync", "--data", data, "--hw-root", hw); code != 0 {
		t.Fatal(out)
	}
	if !login("alice") {
		t.Fatal("login refused after a top-up")
	}
}

// TestAgentPaygSyncForgedPacket: 'licet agent payg sync' given an answer
// with another device's packet first exits 3 naming the packet, yet installs
// the answer's compliance bundle, records the sync, and notes the forged
// packet for the supervisor's packets check, as import does.
func TestAgentPaygSyncForgedPacket(t *testing.T) {
	p := paygtest.NewPKI(t, time.Now())
	v, srv := paygtest.NewVendor(t, p)
	v.Codes["CODE-1"] = 0
	hw := paygtest.FakeHardware(t, "dddddddddddddddddddddddddddddddd")
	data := filepath.Join(t.TempDir(), "agent")
	if out, code := runLicet(t, "agent", "init", "--data", data, "--hw-root", hw); code != 0 {
		t.Fatal(out)
	}
	if out, code := runLicet(t, "agent", "payg", "register", "--data", data, "--hw-root", hw, "--server", srv.URL, "--code", "CODE-1"); code != 0 {
		t.Fatalf("register: %d %s", code, out)
	}
	// A packet for another device, signed by the vendor, sealed to a key
	// that is not this device's.
	dec, err := keys.GenerateDecrypter()
	if err != nil {
		t.Fatal(err)
	}
	forged, err := packet.Make(packet.Packet{DeviceID: "dev-9", Sequence: 1, Seconds: 99999, ServerTime: time.Now().UTC(), Sale: "stolen"}, p.Prov.Signer, p.Chain, dec.PublicBytes())
	if err != nil {
		t.Fatal(err)
	}
	v.Sell("dev-1", 600)
	v.Answer = func(ps []string) []string { return append([]string{string(forged)}, ps...) }
	d := &policy.Document{Version: 1, Thresholds: policy.Thresholds{Sanction: 70, NonOperational: 40, Margin: 10},
		Policies: []policy.Policy{{ID: "packets", Check: policy.CheckPackets, Weight: 10, Fix: "call support"}}}
	d.Defaults()
	bundle, err := policy.Sign(d, p.Prov.Signer, p.Chain)
	if err != nil {
		t.Fatal(err)
	}
	v.Policy = string(bundle)

	out, code := runLicet(t, "agent", "payg", "sync", "--data", data, "--hw-root", hw)
	if code != 3 || !strings.Contains(out, "packet 1 of 2") || !strings.Contains(out, "Installed compliance policy bundle version 1") {
		t.Fatalf("sync with a forged packet: %d %s", code, out)
	}
	if st := paygStatus(t, data); st.LastSync == nil || st.HighestSequence != 0 {
		t.Fatalf("after sync: %+v", st)
	}
	st, err := complianceSupervisor(data).Evaluate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	noted := false
	for _, r := range st.Results {
		noted = noted || r.ID == "packets" && !r.Pass && strings.Contains(r.Detail, "does not verify")
	}
	if !noted {
		t.Fatalf("the packets check does not see the forged packet: %+v", st.Results)
	}

	// The next, good answer applies the device's packet.
	v.Answer = nil
	if out, code := runLicet(t, "agent", "payg", "sync", "--data", data, "--hw-root", hw); code != 0 || !strings.Contains(out, "Applied packet 1") {
		t.Fatalf("next sync: %d %s", code, out)
	}
}
