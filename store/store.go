// Package store opens licet's databases by DSN: a postgres:// or
// postgresql:// URL selects PostgreSQL, anything else is a SQLite file path
// (optionally written "sqlite:PATH"). Opening runs the role's embedded
// migrations. Vendor tables are prefixed v_ and site tables s_, so a vendor
// and a site may share one database.
package store

import (
	"context"
	"strings"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/sqlite"
	"github.com/licet/licet/store/sqlstore"
)

// OpenVendor and OpenSite have the signatures clearinghouse.Open and
// licenseserver.Init expect, so callers pass them as they are.
var (
	_ clearinghouse.OpenStore = OpenVendor
	_ licenseserver.OpenStore = OpenSite
)

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens the database dsn names, without migrating it.
func Open(ctx context.Context, dsn string) (*sqlstore.DB, error) {
	if strings.TrimPrefix(dsn, "sqlite:") == "" {
		return nil, errs.E(errs.Usage, "no database given: use a SQLite file path or a postgres:// URL")
	}
	if IsPostgres(dsn) {
		return postgres.Open(ctx, dsn)
	}
	return sqlite.Open(ctx, dsn)
}

// OpenVendor opens and migrates a vendor database.
func OpenVendor(ctx context.Context, dsn string) (clearinghouse.StoreCloser, error) {
	db, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	v, err := sqlstore.NewVendor(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return v, nil
}

// OpenSite opens and migrates a site database.
func OpenSite(ctx context.Context, dsn string) (licenseserver.StoreCloser, error) {
	db, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	s, err := sqlstore.NewSite(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
