package meter

import (
	"bufio"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/licet/licet/errs"
)

// Sessions says whether a user session is active, the condition under
// which the daemon meters use.
type Sessions interface {
	Active() (bool, error)
}

// SystemSessions reads the user sessions of this machine: systemd-logind's
// session files in LogindDir when that directory exists (a session counts
// when its CLASS is user and its STATE active or online), else the utmp
// file's live USER_PROCESS entries.
type SystemSessions struct {
	LogindDir string // default /run/systemd/sessions
	UtmpFile  string // default /var/run/utmp
	Loginctl  string // the loginctl program Terminate runs; default "loginctl" on $PATH
}

// Active reports whether any user session is active.
func (s SystemSessions) Active() (bool, error) {
	dir := s.LogindDir
	if dir == "" {
		dir = "/run/systemd/sessions"
	}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() || strings.HasSuffix(e.Name(), ".ref") {
				continue
			}
			if logindActive(filepath.Join(dir, e.Name())) {
				return true, nil
			}
		}
		return false, nil
	}
	utmp := s.UtmpFile
	if utmp == "" {
		utmp = "/var/run/utmp"
	}
	return utmpActive(utmp)
}

func logindActive(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	class, state := "user", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "CLASS":
			class = v
		case "STATE":
			state = v
		}
	}
	return class == "user" && (state == "active" || state == "online")
}

// utmpActive scans glibc's utmp records (384 bytes on Linux: ut_type
// int16 at 0, ut_pid int32 at 4) for a USER_PROCESS whose process lives.
func utmpActive(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	const size, userProcess = 384, 7
	for len(data) >= size {
		rec := data[:size]
		data = data[size:]
		typ := int16(binary.LittleEndian.Uint16(rec[0:2]))
		pid := int(int32(binary.LittleEndian.Uint32(rec[4:8])))
		if typ != userProcess || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			return true, nil
		}
	}
	return false, nil
}

// Terminator is what Sessions may also do: end the user sessions of every
// user but the listed ones (the top-up accounts), and say whose it ended.
// The daemon uses it when the credit runs out (Daemon.EndSessionsAfter).
type Terminator interface {
	Terminate(except []string) (ended []string, err error)
}

// Terminate ends the active user sessions of systemd-logind, except those
// of the users in except, with 'loginctl terminate-session ID'; it returns
// the sessions ended as "ID (USER)". Without logind (no session directory,
// or no loginctl) it ends nothing and says so: utmp sessions have no
// manager to ask, and killing their processes by hand is left to the
// administrator.
func (s SystemSessions) Terminate(except []string) ([]string, error) {
	dir := s.LogindDir
	if dir == "" {
		dir = "/run/systemd/sessions"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, errs.E(errs.Internal, "cannot end the user sessions: no systemd-logind session directory %s", dir)
	}
	loginctl := s.Loginctl
	if loginctl == "" {
		loginctl = "loginctl"
	}
	path, err := exec.LookPath(loginctl)
	if err != nil {
		return nil, errs.E(errs.Internal, "cannot end the user sessions: %s is not installed", loginctl)
	}
	var ended []string
	var firstErr error
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".ref") || !logindActive(filepath.Join(dir, e.Name())) {
			continue
		}
		user := logindUser(filepath.Join(dir, e.Name()))
		if slices.Contains(except, user) {
			continue
		}
		if out, err := exec.Command(path, "terminate-session", e.Name()).CombinedOutput(); err != nil {
			if firstErr == nil {
				firstErr = errs.E(errs.Internal, "loginctl terminate-session %s (%s): %v %s", e.Name(), user, err, strings.TrimSpace(string(out)))
			}
			continue
		}
		ended = append(ended, e.Name()+" ("+user+")")
	}
	return ended, firstErr
}

// logindUser returns the USER of a logind session file.
func logindUser(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "USER="); ok {
			return v
		}
	}
	return ""
}
