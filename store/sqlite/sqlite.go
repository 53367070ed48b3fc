// Package sqlite opens licet's embedded SQLite database (modernc.org/sqlite,
// pure Go): WAL journal, full synchronous commits, a busy timeout, foreign
// keys, and BEGIN IMMEDIATE for every transaction, so read-then-write
// transactions serialise instead of failing with SQLITE_BUSY.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/store/sqlstore"
)

// Dialect is SQLite's SQL dialect.
var Dialect = sqlstore.Dialect{
	Name:        "sqlite",
	BlobType:    "BLOB",
	GroupCommit: true,
	IsUnique: func(err error) bool {
		var e *sqlite.Error
		if errors.As(err, &e) {
			c := e.Code()
			return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		}
		return false
	},
}

// Open opens (creating with mode 0600 if needed) the SQLite database at path.
func Open(ctx context.Context, path string) (*sqlstore.DB, error) {
	path = strings.TrimPrefix(path, "sqlite:")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "create database directory")
	}
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
	} else {
		return nil, errs.Wrap(errs.Internal, err, "open database %s", path)
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(30000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open database %s", path)
	}
	db.SetMaxOpenConns(8)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, errs.Wrap(errs.Internal, err, "open database %s", path)
	}
	return sqlstore.New(db, Dialect), nil
}
