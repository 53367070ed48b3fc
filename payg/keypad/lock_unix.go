//go:build unix

package keypad

import (
	"os"
	"path/filepath"
	"syscall"

	"github.com/licet/licet/errs"
)

// lock takes an exclusive lock on the keypad in dir, so that two entries at
// once (two processes, or a script racing the wait) are taken one after the
// other, each seeing the state the other left. It returns the unlock.
func lock(dir string) (func(), error) {
	p := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open %s", p)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, errs.Wrap(errs.Internal, err, "lock %s", p)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
