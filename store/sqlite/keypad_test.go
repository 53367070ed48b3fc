package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/store"
	"github.com/licet/licet/store/storetest"
)

// TestKeypad runs the keypad device store conformance suite on SQLite, a
// new database file per subtest.
func TestKeypad(t *testing.T) {
	t.Parallel()
	storetest.TestKeypad(t, func(t *testing.T) keypadvendor.Store {
		return openVendor(t, filepath.Join(t.TempDir(), "vendor.db"))
	})
}

// TestSharedKeypad opens two vendor stores on one file concurrently and
// issues tokens to one device from both.
func TestSharedKeypad(t *testing.T) {
	t.Parallel()
	a, b := storetest.OpenBoth(t, newSharedDSN(t), store.OpenVendor)
	storetest.TestSharedKeypad(t, a.(keypadvendor.Store), b.(keypadvendor.Store))
}
