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
	BlobType:       "BYTEA",
	Name:           "postgres",
	Numbered:       true,
	GroupCommit:    true,
	IsUnique:       func(err error) bool { return pgCode(err) == "23505" },
	IsForeignKey:   func(err error) bool { return pgCode(err) == "23503" },
	LockMigrations: "SELECT pg_advisory_xact_lock(7411001)",
	LockBatch:      "SELECT pg_advisory_xact_lock(7411002)",
	SkipLocked:     "FOR UPDATE SKIP LOCKED",
	WritableCTE:    true,
	IsRetryable: func(err error) bool {
		c := pgCode(err)
		return c == "40P01" || c == "40001" // deadlock_detected, serialization_failure
	},
}

// pgCode returns the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
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
