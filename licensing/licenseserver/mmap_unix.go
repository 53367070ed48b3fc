//go:build linux || darwin || freebsd || netbsd || openbsd

package licenseserver

import (
	"os"
	"syscall"
)

// mapImage maps the image file at path read-only into memory, so the pool
// workers hash it without reading it again; done unmaps it.
func mapImage(path string, size int64) (data []byte, done func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.Size() != size || size <= 0 {
		return nil, nil, &os.PathError{Op: "map", Path: path, Err: syscall.EINVAL}
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
