package postgres_test

import (
	"testing"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/sqlstore"
	"github.com/licet/licet/store/storetest"
)

// TestDistribution runs the distribution store conformance suites on
// PostgreSQL, a new database per subtest.
func TestDistribution(t *testing.T) {
	t.Parallel()
	t.Run("Vendor", func(t *testing.T) {
		storetest.TestDistVendor(t, func(t *testing.T) catalog.Store {
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
		})
	})
	t.Run("Site", func(t *testing.T) {
		storetest.TestDistSite(t, func(t *testing.T) mirror.Store {
			db, err := postgres.Open(t.Context(), postgres.TestDSN(t))
			if err != nil {
				t.Fatalf("open site database: %v", err)
			}
			s, err := sqlstore.NewSite(t.Context(), db)
			if err != nil {
				db.Close()
				t.Fatalf("migrate site database: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}
