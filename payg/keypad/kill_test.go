//go:build unix

package keypad

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestKillDuringWrites kills a process that writes the keypad state as fast
// as it can, several times, at whatever point it happens to be: the state
// left behind always reads back, with no recovery.
func TestKillDuringWrites(t *testing.T) {
	if dir := os.Getenv("LICET_KEYPAD_WRITER"); dir != "" {
		k, err := Open(dir)
		if err != nil {
			os.Exit(2)
		}
		s, err := k.Status(t0)
		if err != nil {
			os.Exit(2)
		}
		for now := s.Now.Add(time.Second); ; now = now.Add(time.Second) {
			if _, err := k.Observe(now); err != nil {
				os.Exit(3)
			}
		}
	}
	k, _, dir := newKeypad(t, testConfig(1))
	var lastSeen time.Time
	for i := 0; i < 5; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWrites$")
		cmd.Env = append(os.Environ(), "LICET_KEYPAD_WRITER="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+30*i) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("writer ended by itself: %v", err)
		}
		s, err := k.Status(t0)
		if err != nil || s.Recovery != "" {
			t.Fatalf("after kill %d: %+v, %v", i+1, s, err)
		}
		if !s.Now.After(lastSeen) {
			t.Fatalf("after kill %d the writer had written nothing (latest seen %v)", i+1, s.Now)
		}
		lastSeen = s.Now
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, ".keypad*.tmp-*"))
	t.Logf("%d temporary files left by the kills", len(tmps))
}
