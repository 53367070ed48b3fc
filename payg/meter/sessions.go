package meter

import (
	"bufio"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
