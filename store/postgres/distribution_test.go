package postgres_test

import (
	"testing"

	"github.com/licet/licet/distribution/catalog"
	"github.com/licet/licet/distribution/mirror"
	"github.com/licet/licet/store/storetest"
)

// TestDistribution runs the distribution store conformance suites on
// PostgreSQL, a new database per subtest.
func TestDistribution(t *testing.T) {
	t.Parallel()
	t.Run("Vendor", func(t *testing.T) {
		storetest.TestDistVendor(t, func(t *testing.T) catalog.Store { return openVendor(t) })
	})
	t.Run("Site", func(t *testing.T) {
		storetest.TestDistSite(t, func(t *testing.T) mirror.Store { return openSite(t) })
	})
}
