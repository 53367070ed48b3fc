package postgres_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/licet/licet/clearinghouse"
	"github.com/licet/licet/licenseserver"
	"github.com/licet/licet/store"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/storetest"
)

// TestVendor runs the vendor store conformance suite on PostgreSQL, a new
// database per subtest.
func TestVendor(t *testing.T) {
	t.Parallel()
	storetest.TestVendor(t, func(t *testing.T) clearinghouse.Store {
		v, err := store.OpenVendor(t.Context(), postgres.TestDSN(t))
		if err != nil {
			t.Fatalf("open vendor database: %v", err)
		}
		t.Cleanup(func() { v.Close() })
		return v
	})
}

// TestSite runs the site store conformance suite on PostgreSQL, a new
// database per subtest.
func TestSite(t *testing.T) {
	t.Parallel()
	storetest.TestSite(t, func(t *testing.T) licenseserver.Store {
		s, err := store.OpenSite(t.Context(), postgres.TestDSN(t))
		if err != nil {
			t.Fatalf("open site database: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// openBoth opens two stores on one fresh database at the same time, as two
// licet processes starting together would: both run the migrations.
func openBoth[S interface{ Close() error }](t *testing.T, dsn string, open func(ctx context.Context, dsn string) (S, error)) (S, S) {
	t.Helper()
	var stores [2]S
	var errList [2]error
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errList[i] = open(t.Context(), dsn) })
	}
	wg.Wait()
	for i, err := range errList {
		if err != nil {
			t.Fatalf("open store %d of 2 concurrently: %v", i+1, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	return stores[0], stores[1]
}

// checkMigrations checks that each of the role's migrations is recorded
// once in the database dsn.
func checkMigrations(t *testing.T, dsn, role string) {
	t.Helper()
	db, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	files, err := filepath.Glob(filepath.Join("..", "sqlstore", "migrations", "postgres", role, "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s migrations found (%v)", role, err)
	}
	var rows, versions int
	err = db.SQL.QueryRowContext(t.Context(), `SELECT COUNT(*), COUNT(DISTINCT version) FROM licet_migrations WHERE role = $1`, role).Scan(&rows, &versions)
	if err != nil {
		t.Fatalf("read licet_migrations: %v", err)
	}
	if rows != len(files) || versions != len(files) {
		t.Errorf("%d rows for %d versions of %s migrations recorded, want %d of each", rows, versions, role, len(files))
	}
}

// TestSharedSite opens two site stores on one database concurrently and
// grants seats from both: 100 goroutines each against 60 seats.
func TestSharedSite(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	a, b := openBoth(t, dsn, store.OpenSite)
	checkMigrations(t, dsn, "site")
	storetest.TestSharedSite(t, a, b)
}

// TestSharedVendor opens two vendor stores on one database concurrently and
// allocates serial numbers and uses an enrollment code from both.
func TestSharedVendor(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	a, b := openBoth(t, dsn, store.OpenVendor)
	checkMigrations(t, dsn, "vendor")
	storetest.TestSharedVendor(t, a, b)
}
