// Package postgres opens licet's PostgreSQL database through pgx v5, for
// vendors and sites that outgrow one machine: several licet processes may
// share one database.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/licet/licet/errs"
	"github.com/licet/licet/store/sqlstore"
)

// Dialect is PostgreSQL's SQL dialect.
var Dialect = sqlstore.Dialect{
	Name:        "postgres",
	Numbered:    true,
	GroupCommit: true,
	BlobType:    "BYTEA",
	IsUnique: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505"
	},
	LockMigrations: "SELECT pg_advisory_xact_lock(7411001)",
}

// Open connects to the PostgreSQL database at url (postgres://…).
func Open(ctx context.Context, url string) (*sqlstore.DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, errs.Wrap(errs.Usage, err, "bad PostgreSQL URL")
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, errs.Wrap(errs.Internal, err, "cannot reach PostgreSQL; check the --db URL and that the server runs")
	}
	return sqlstore.New(db, Dialect), nil
}
