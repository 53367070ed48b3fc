package meter_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/licet/licet/payg/meter"
)

func TestLogindSessions(t *testing.T) {
	dir := t.TempDir()
	s := meter.SystemSessions{LogindDir: dir}
	write := func(name, content string) { os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644) }
	want := func(active bool) {
		t.Helper()
		if got, err := s.Active(); err != nil || got != active {
			t.Fatalf("Active() = %v, %v; want %v", got, err, active)
		}
	}
	want(false)
	write("c1", "UID=0\nCLASS=greeter\nSTATE=active\n")
	write("c2", "UID=1000\nCLASS=user\nSTATE=closing\n")
	want(false)
	write("3", "UID=1000\nUSER=alice\nCLASS=user\nSTATE=online\n")
	want(true)
	// No logind directory: utmp, here missing.
	s = meter.SystemSessions{LogindDir: filepath.Join(dir, "none"), UtmpFile: filepath.Join(dir, "utmp")}
	want(false)
}

// Terminate ends the active logind sessions of every user but the top-up
// account, through loginctl (here a script that records its arguments).
func TestLogindTerminate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) { os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644) }
	write("3", "UID=1000\nUSER=alice\nCLASS=user\nSTATE=active\n")
	write("4", "UID=1001\nUSER=topup\nCLASS=user\nSTATE=active\n")
	write("5", "UID=1002\nUSER=bob\nCLASS=user\nSTATE=closing\n")
	write("c1", "UID=0\nUSER=gdm\nCLASS=greeter\nSTATE=active\n")
	calls := filepath.Join(t.TempDir(), "calls")
	loginctl := filepath.Join(t.TempDir(), "loginctl")
	os.WriteFile(loginctl, []byte("#!/bin/sh\necho \"$@\" >> "+calls+"\n"), 0o755)
	ended, err := meter.SystemSessions{LogindDir: dir, Loginctl: loginctl}.Terminate([]string{"topup"})
	if err != nil || len(ended) != 1 || ended[0] != "3 (alice)" {
		t.Fatalf("Terminate: %v %v", ended, err)
	}
	if b, _ := os.ReadFile(calls); string(b) != "terminate-session 3\n" {
		t.Fatalf("loginctl was run as: %q", b)
	}
	if _, err := (meter.SystemSessions{LogindDir: filepath.Join(dir, "none"), Loginctl: loginctl}).Terminate(nil); err == nil {
		t.Fatal("Terminate without logind ended something")
	}
	if _, err := (meter.SystemSessions{LogindDir: dir, Loginctl: filepath.Join(dir, "no-loginctl")}).Terminate(nil); err == nil {
		t.Fatal("Terminate without loginctl did not say so")
	}
}
