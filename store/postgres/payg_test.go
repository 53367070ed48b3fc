package postgres_test

import (
	"testing"

	"github.com/licet/licet/store/storetest"
)

// TestBilling runs the billing ledger conformance suite on PostgreSQL, a
// new database per subtest.
func TestBilling(t *testing.T) {
	t.Parallel()
	storetest.TestBilling(t, func(t *testing.T) storetest.PaygStore { return openVendor(t) })
}

// TestProvisioning runs the device provisioning conformance suite on
// PostgreSQL, a new database per subtest.
func TestProvisioning(t *testing.T) {
	t.Parallel()
	storetest.TestProvisioning(t, func(t *testing.T) storetest.PaygStore { return openVendor(t) })
}
