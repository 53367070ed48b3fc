// Package swtpmtest starts Debian's TPM 2.0 simulator (swtpm) for tests.
package swtpmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// RequireEnv, when set to 1, turns a missing swtpm into a test failure
// instead of a skip (CI sets it).
const RequireEnv = "LICET_REQUIRE_SWTPM"

// TPM is a running swtpm.
type TPM struct {
	// Path is the TPM's address for tpmseal: "unix:SOCKET".
	Path string
	// StateDir holds the simulated TPM's persistent state (its seeds and
	// NV); starting another TPM on the same directory is a reboot.
	StateDir string
	cmd      *exec.Cmd
}

// Start starts a new TPM 2.0 with its own state (another chip) and stops
// it when the test ends. Without swtpm it skips the test, or fails it when
// LICET_REQUIRE_SWTPM=1.
func Start(t testing.TB) *TPM { return StartIn(t, t.TempDir()) }

// StartIn starts a TPM 2.0 on the persistent state in dir: the same chip as
// an earlier TPM on dir, once that one is stopped.
func StartIn(t testing.TB, dir string) *TPM {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("swtpm is not installed but %s=1: apt-get install -y swtpm swtpm-tools", RequireEnv)
		}
		t.Skip("swtpm is not installed (apt-get install -y swtpm swtpm-tools); skipping the TPM test (set " + RequireEnv + "=1 to make this a failure)")
	}
	sock := filepath.Join(t.TempDir(), "tpm.sock") // short: unix socket paths are limited to 108 bytes
	ctrl := sock + ".ctrl"
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--server", "type=unixio,path="+sock,
		"--ctrl", "type=unixio,path="+ctrl,
		"--flags", "not-need-init,startup-clear",
		"--tpmstate", "dir="+dir)
	out, _ := os.Create(filepath.Join(dir, "swtpm.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	tpm := &TPM{Path: "unix:" + sock, StateDir: dir, cmd: cmd}
	t.Cleanup(tpm.Stop)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "swtpm.log"))
			t.Fatalf("swtpm did not open %s within 10s: %s", sock, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return tpm
}

// Stop stops the TPM (as at power-off); it may be called more than once.
func (p *TPM) Stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}
