// Package sqlite opens licet's embedded SQLite database (modernc.org/sqlite,
// pure Go): WAL journal, full synchronous commits, a busy timeout, foreign
// keys, and BEGIN IMMEDIATE for every transaction, so read-then-write
// transactions serialise instead of failing with SQLITE_BUSY.
//
// A large transaction (a batch sale of 10,000 packets writes about 20 MB)
// keeps its pages in memory until it commits: each connection may cache
// CacheKiB of pages, and statement journals stay in memory, instead of
// being spilled to files halfway. The write-ahead log is copied into the
// database in the background after commits (sqlstore.Dialect.Checkpoint),
// not inside the commit that crosses SQLite's threshold; SQLite's own
// automatic checkpoint stays as a bound, at AutoCheckpoint pages.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/licet/licet/errs"
	"github.com/licet/licet/store/sqlstore"
)

// Dialect is SQLite's SQL dialect.
var Dialect = sqlstore.Dialect{
	BlobType:    "BLOB",
	Name:        "sqlite",
	GroupCommit: true,
	IsUnique: func(err error) bool {
		c := code(err)
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	IsForeignKey: func(err error) bool { return code(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY },
	// PASSIVE: neither writers nor readers wait for it.
	Checkpoint: "PRAGMA wal_checkpoint(PASSIVE)",
}

// CacheKiB is the most page cache, in KiB, each connection keeps: enough
// for a batch sale of 10,000 packets (the pages it writes and the index
// pages it reads) to stay in memory until it commits; at 32 MiB such a
// batch already spills. SQLite allocates it as pages are used, so a small
// database stays small; a process has at most MaxConns connections, so a
// server that reads a large database everywhere may hold MaxConns times
// this much.
const CacheKiB = 64 << 10

// MaxConns is the most connections a process opens to one database.
const MaxConns = 8

// AutoCheckpoint is the size of the write-ahead log, in pages, at which a
// commit checkpoints it itself, if the background checkpoints fell behind.
const AutoCheckpoint = 16384

// code returns the extended result code of a SQLite error, or 0.
func code(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// BusyTimeout is how long, in milliseconds, a connection waits for another
// writer (of this process or another) before failing with SQLITE_BUSY.
const BusyTimeout = 10000

// DSN returns the modernc.org/sqlite data source name of the database file
// at path: WAL journal, full synchronous commits, the busy timeout, foreign
// keys on, the page cache and checkpoint threshold above, temporary files
// in memory, and BEGIN IMMEDIATE for transactions (_txlock=immediate).
// Temporary files hold what a savepoint or a statement may have to undo
// inside a transaction that has not committed (a group commit takes a
// savepoint per request): nothing of them is needed after a crash, and in
// a file each costs system calls.
func DSN(path string) string {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", fmt.Sprintf("busy_timeout(%d)", BusyTimeout), "foreign_keys(1)",
		fmt.Sprintf("cache_size(-%d)", CacheKiB), "temp_store(MEMORY)", fmt.Sprintf("wal_autocheckpoint(%d)", AutoCheckpoint)} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	// The name is a URI (file:…): escape what SQLite would read as URI syntax.
	name := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	return "file:" + name + "?" + q.Encode()
}

// ping opens the first connection. Switching a new database to WAL takes a
// lock for which SQLite does not wait (it answers SQLITE_BUSY at once), so
// processes opening a new database together try again, for up to the busy
// timeout.
func ping(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(BusyTimeout * time.Millisecond)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := db.PingContext(ctx)
		if err == nil || code(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// Open opens the SQLite database at path (a "sqlite:" prefix is allowed),
// creating it, readable by its owner only (mode 0600), and its directory if
// needed. The caller migrates it (sqlstore.NewVendor, sqlstore.NewSite).
func Open(ctx context.Context, path string) (*sqlstore.DB, error) {
	path = strings.TrimPrefix(path, "sqlite:")
	if path == "" {
		return nil, errs.E(errs.Usage, "no SQLite database path given")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "create the directory of database %s", path)
	}
	// Create the file first, so that SQLite does not create it with the umask's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open database %s; check the path and its permissions", path)
	}
	f.Close()
	db, err := sql.Open("sqlite", DSN(path))
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "open database %s", path)
	}
	db.SetMaxOpenConns(MaxConns)
	if err := ping(ctx, db); err != nil {
		db.Close()
		return nil, errs.Wrap(errs.Internal, err, "open database %s; check that it is a licet SQLite database", path)
	}
	return sqlstore.New(db, Dialect), nil
}
