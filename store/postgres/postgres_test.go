package postgres_test

import (
	"testing"

	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/store"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/sqlstore"
	"github.com/licet/licet/store/storetest"
)

// openVendor opens a migrated vendor store on a new test database.
func openVendor(t *testing.T) *sqlstore.Vendor {
	t.Helper()
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

// openSite opens a migrated site store on a new test database.
func openSite(t *testing.T) *sqlstore.Site {
	t.Helper()
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
}

// TestVendor runs the vendor store conformance suite on PostgreSQL, a new
// database per subtest.
func TestVendor(t *testing.T) {
	t.Parallel()
	storetest.TestVendor(t, func(t *testing.T) clearinghouse.Store { return openVendor(t) })
}

// TestSite runs the site store conformance suite on PostgreSQL, a new
// database per subtest.
func TestSite(t *testing.T) {
	t.Parallel()
	storetest.TestSite(t, func(t *testing.T) licenseserver.Store { return openSite(t) })
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
	want := storetest.MigrationFiles(t, role)
	var rows, versions int
	err = db.SQL.QueryRowContext(t.Context(), `SELECT COUNT(*), COUNT(DISTINCT version) FROM licet_migrations WHERE role = $1`, role).Scan(&rows, &versions)
	if err != nil {
		t.Fatalf("read licet_migrations: %v", err)
	}
	if rows != want || versions != want {
		t.Errorf("%d rows for %d versions of %s migrations recorded, want %d of each", rows, versions, role, want)
	}
}

// TestSharedSite opens two site stores on one database concurrently and
// grants seats from both: 100 goroutines each against 60 seats.
func TestSharedSite(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	a, b := storetest.OpenBoth(t, dsn, store.OpenSite)
	checkMigrations(t, dsn, "site")
	storetest.TestSharedSite(t, a, b)
}

// TestSharedVendor opens two vendor stores on one database concurrently and
// allocates serial numbers and uses an enrollment code from both.
func TestSharedVendor(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	a, b := storetest.OpenBoth(t, dsn, store.OpenVendor)
	checkMigrations(t, dsn, "vendor")
	storetest.TestSharedVendor(t, a, b)
}

// TestSharedLeases opens four site stores on one database (four serving
// processes) and grants seats from all of them with leased seats.
func TestSharedLeases(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	a, b := storetest.OpenBoth(t, dsn, store.OpenSite)
	c, d := storetest.OpenBoth(t, dsn, store.OpenSite)
	storetest.TestSharedLeases(t, a, b, c, d)
}

// TestOrderTemporaryMigration runs vendor migration 016 on a PostgreSQL
// database with orders from before it.
func TestOrderTemporaryMigration(t *testing.T) {
	t.Parallel()
	dsn := postgres.TestDSN(t)
	db, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	storetest.TestOrderTemporaryMigration(t, dsn, store.OpenVendor, func(q string) error {
		_, err := db.SQL.ExecContext(t.Context(), q)
		return err
	})
}
