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
