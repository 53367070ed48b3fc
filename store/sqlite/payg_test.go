package sqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/licet/licet/store/storetest"
)

// TestBilling runs the billing ledger conformance suite on SQLite, a new
// database file per subtest.
func TestBilling(t *testing.T) {
	t.Parallel()
	storetest.TestBilling(t, func(t *testing.T) storetest.PaygStore {
		return openVendor(t, filepath.Join(t.TempDir(), "vendor.db"))
	})
}

// TestProvisioning runs the device provisioning conformance suite on
// SQLite, a new database file per subtest.
func TestProvisioning(t *testing.T) {
	t.Parallel()
	storetest.TestProvisioning(t, func(t *testing.T) storetest.PaygStore {
		return openVendor(t, filepath.Join(t.TempDir(), "vendor.db"))
	})
}
