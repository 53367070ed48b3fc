package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licet/licet/internal/tpmseal/swtpmtest"
)

// TestComplianceTPMSnapshot runs the real agent commands with the state
// sealed in a TPM 2.0 (swtpm): status says so with the counter; a copy of
// the compliance directory put back after a later write is refused by the
// login check and the run wrapper (fail closed), and once the vendor's
// bundle is back the tampering is scored.
func TestComplianceTPMSnapshot(t *testing.T) {
	tpm := swtpmtest.Start(t)
	t.Setenv("LICET_TPM", tpm.Path) // every licet process below seals with it
	v := newVendor(t, "")
	dir, data, hw := sellAndRegister(t, v, "acme-t")

	fault := filepath.Join(dir, "fault")
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte(fmt.Sprintf(`version: 1
thresholds: {sanction: 70, nonoperational: 40, margin: 10}
evaluate_every: 1m
policies:
  - {id: credit, check: credit, weight: 40, fix: top up}
  - {id: intact, check: policy_intact, weight: 40, fix: call support for a reset}
  - {id: a, check: command, weight: 20, command: [sh, -c, "test ! -e %s"], fix: remove the fault}
`, fault)), 0o644)
	ok(t, v.admin("vendor", "policy", "publish", pol)...)
	if r := licet(t, nil, "agent", "payg", "sync", "--data", data, "--hw-root", hw); r.code != 0 {
		t.Fatalf("sync: %s", r)
	}
	out := ok(t, "agent", "compliance", "evaluate", "--data", data)
	if !strings.Contains(out, "compliant, score 100") || !strings.Contains(out, "seal: TPM 2.0: sealed, counter ") {
		t.Fatalf("evaluate does not say the TPM seals the state:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "compliance", "seal.key")); err == nil {
		t.Fatal("a device-local key file exists although the TPM seals the state")
	}

	// Copy the directory, write again (a changed score), put the copy back.
	snap := filepath.Join(dir, "snapshot")
	copyDir(t, filepath.Join(data, "compliance"), snap)
	os.WriteFile(fault, nil, 0o644)
	if out := ok(t, "agent", "compliance", "evaluate", "--data", data); !strings.Contains(out, "score 80") {
		t.Fatalf("the fault is not scored:\n%s", out)
	}
	os.Remove(fault)
	os.RemoveAll(filepath.Join(data, "compliance"))
	copyDir(t, snap, filepath.Join(data, "compliance"))

	r := licet(t, nil, "agent", "compliance", "status", "--data", data)
	if r.code != 4 || !strings.Contains(r.stdout, "restored snapshot") {
		t.Fatalf("status on a restored snapshot: %s", r)
	}
	if r := licet(t, nil, "agent", "payg", "login-check", "--data", data, "--user", "alice", "--top-up-user", "topup"); r.code == 0 || !strings.Contains(r.stdout, "restored snapshot") {
		t.Fatalf("login on a restored snapshot: %s", r)
	}
	if r := licet(t, nil, "agent", "run", "--data", data, "--product", "p", "--tick", "100ms", "--", "true"); r.code == 0 {
		t.Fatalf("run on a restored snapshot: %s", r)
	}

	// The supervisor records it; the next sync brings the bundle back and
	// the tampering is scored until the vendor's reset.
	licet(t, nil, "agent", "compliance", "evaluate", "--data", data)
	if r := licet(t, nil, "agent", "payg", "sync", "--data", data, "--hw-root", hw); r.code != 0 {
		t.Fatalf("sync after the snapshot: %s", r)
	}
	out = ok(t, "agent", "compliance", "evaluate", "--data", data)
	if !strings.Contains(out, "score 60") || !strings.Contains(out, "call support for a reset") {
		t.Fatalf("the restored snapshot is not scored after the sync:\n%s", out)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
