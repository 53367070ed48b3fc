// Package faultpoint lets crash tests stop a real licet process at a named
// point, so that they can kill it there with SIGKILL and check what survives.
// A point is armed only by the environment variable LICET_FAULTPOINT; in any
// other process Hit does nothing.
package faultpoint

import (
	"fmt"
	"os"
	"time"
)

var armed = os.Getenv("LICET_FAULTPOINT")

// Hit blocks forever if the point name is armed, after printing
// "faultpoint NAME reached" to standard error so that a test knows when to
// kill the process.
func Hit(name string) {
	if armed == "" || armed != name {
		return
	}
	fmt.Fprintf(os.Stderr, "faultpoint %s reached\n", name)
	for {
		time.Sleep(time.Hour)
	}
}
