//go:build unix

package loadgen

import "syscall"

// ownCPU is the CPU time (user and system, in seconds) this process has
// used so far; -1 if it cannot be read.
func ownCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
