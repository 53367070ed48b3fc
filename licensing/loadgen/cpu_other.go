//go:build !unix

package loadgen

// ownCPU is the CPU time this process has used so far: -1, unknown on
// this system.
func ownCPU() float64 { return -1 }
