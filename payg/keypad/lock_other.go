//go:build !unix

package keypad

import "sync"

var mu sync.Mutex

// lock serialises the keypad's operations within this process; on systems
// without flock, two processes entering tokens at once are not serialised.
func lock(dir string) (func(), error) {
	mu.Lock()
	return mu.Unlock, nil
}
