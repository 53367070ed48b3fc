package postgres_test

import (
	"testing"

	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/sqlstore"
	"github.com/licet/licet/store/storetest"
)

// openPaygVendor opens a migrated vendor store on a new test database.
func openPaygVendor(t *testing.T) storetest.PaygStore {
	db, err := postgres.Open(t.Context(), postgres.TestDSN(t))
	if err != nil {
		t.Fatalf("open vendor database: %v", err)
	}
	v, err := sqlstore.NewVendor(t.Context(), db)
	if err != nil {
		db.Close()
		t.Fatalf("migrate vendor database: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// TestBilling runs the billing ledger conformance suite on PostgreSQL, a
// new database per subtest.
func TestBilling(t *testing.T) {
	t.Parallel()
	storetest.TestBilling(t, openPaygVendor)
}

// TestProvisioning runs the device provisioning conformance suite on
// PostgreSQL, a new database per subtest.
func TestProvisioning(t *testing.T) {
	t.Parallel()
	storetest.TestProvisioning(t, openPaygVendor)
}
