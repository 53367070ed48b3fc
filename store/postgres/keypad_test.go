package postgres_test

import (
	"testing"

	"github.com/licet/licet/payg/keypadvendor"
	"github.com/licet/licet/store"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/storetest"
)

// TestKeypad runs the keypad device store conformance suite on PostgreSQL,
// a new database per subtest.
func TestKeypad(t *testing.T) {
	t.Parallel()
	storetest.TestKeypad(t, func(t *testing.T) keypadvendor.Store { return openVendor(t) })
}

// TestSharedKeypad opens two vendor stores on one database concurrently and
// issues tokens to one device from both.
func TestSharedKeypad(t *testing.T) {
	t.Parallel()
	a, b := storetest.OpenBoth(t, postgres.TestDSN(t), store.OpenVendor)
	storetest.TestSharedKeypad(t, a.(keypadvendor.Store), b.(keypadvendor.Store))
}
