// Package store opens licet's databases by DSN: a postgres:// URL selects
// PostgreSQL, anything else is a SQLite file path (optionally "sqlite:PATH").
// Opening runs the embedded migrations.
package store

import (
	"context"
	"strings"

	"github.com/licet/licet/store/postgres"
	"github.com/licet/licet/store/sqlite"
	"github.com/licet/licet/store/sqlstore"
)

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func open(ctx context.Context, dsn string) (*sqlstore.DB, error) {
	if IsPostgres(dsn) {
		return postgres.Open(ctx, dsn)
	}
	return sqlite.Open(ctx, dsn)
}

// OpenVendor opens and migrates a vendor database.
func OpenVendor(ctx context.Context, dsn string) (*sqlstore.Vendor, error) {
	db, err := open(ctx, dsn)
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
func OpenSite(ctx context.Context, dsn string) (*sqlstore.Site, error) {
	db, err := open(ctx, dsn)
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
