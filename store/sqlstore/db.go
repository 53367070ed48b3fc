// Package sqlstore implements licet's stores once, over database/sql, for
// both SQLite and PostgreSQL; a Dialect carries the few differences. The
// backends (packages store/sqlite and store/postgres) open the connection and
// pick the dialect; the shared conformance suite (store/storetest) proves that
// both behave the same.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/errs"
)

// Dialect describes what differs between the SQL databases licet supports.
type Dialect struct {
	Name string // "sqlite" or "postgres"
	// Numbered turns '?' placeholders into $1, $2, ….
	Numbered bool
	// BlobType is the column type of byte strings.
	BlobType string
	// IsUnique reports whether err is a unique-constraint violation.
	IsUnique func(error) bool
	// GroupCommit runs the transactions of one process in batches: one
	// database transaction, one savepoint per caller, one commit (one fsync)
	// for all. For SQLite, where writers take turns anyway.
	GroupCommit bool
	// LockMigrations, if set, runs inside the migration transaction first, so
	// that processes starting together apply each migration once.
	LockMigrations string
}

// DB is a database with its dialect.
type DB struct {
	SQL *sql.DB
	d   Dialect

	stmts   sync.Map   // rebound query text -> *sql.Stmt
	qmu     sync.Mutex // guards queue and leading
	queue   []*txRequest
	leading bool // a goroutine is committing batches
}

// txRequest is one caller's transaction waiting for a group commit.
type txRequest struct {
	ctx  context.Context
	fn   func(c conn) error
	done chan error
}

// maxBatch bounds how many transactions share one commit.
const maxBatch = 256

// New wraps an open database.
func New(db *sql.DB, d Dialect) *DB { return &DB{SQL: db, d: d} }

// Close closes the prepared statements and the database.
func (db *DB) Close() error {
	db.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return db.SQL.Close()
}

// Dialect returns the database's dialect.
func (db *DB) Dialect() Dialect { return db.d }

// rebind rewrites '?' placeholders for the dialect.
func (db *DB) rebind(q string) string {
	if !db.d.Numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// conn runs rebound queries on a database or a transaction, as prepared
// statements kept for the life of the database: SQLite would otherwise parse
// every statement of every transaction again.
type conn struct {
	db *DB
	q  querier
	tx *sql.Tx // nil outside a transaction
}

// stmt returns the prepared statement of q, bound to the transaction if any.
// A statement that cannot be prepared falls back to a plain query.
func (c conn) stmt(ctx context.Context, q string) querier {
	q = c.db.rebind(q)
	st, ok := c.db.stmts.Load(q)
	if !ok {
		prepared, err := c.db.SQL.PrepareContext(ctx, q)
		if err != nil {
			return nil
		}
		if prev, loaded := c.db.stmts.LoadOrStore(q, prepared); loaded {
			prepared.Close()
			st = prev
		} else {
			st = prepared
		}
	}
	if c.tx != nil {
		return stmtQuerier{c.tx.StmtContext(ctx, st.(*sql.Stmt))}
	}
	return stmtQuerier{st.(*sql.Stmt)}
}

// stmtQuerier runs a prepared statement; the query text is already in it.
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return s.st.ExecContext(ctx, args...)
}

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}

func (s stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return s.st.QueryRowContext(ctx, args...)
}

func (c conn) on(ctx context.Context, q string) querier {
	if st := c.stmt(ctx, q); st != nil {
		return st
	}
	return c.q
}

func (c conn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.on(ctx, q).ExecContext(ctx, c.db.rebind(q), args...)
}

func (c conn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.on(ctx, q).QueryContext(ctx, c.db.rebind(q), args...)
}

func (c conn) row(ctx context.Context, q string, args ...any) *sql.Row {
	return c.on(ctx, q).QueryRowContext(ctx, c.db.rebind(q), args...)
}

func (db *DB) conn() conn { return conn{db: db, q: db.SQL} }

// tx runs fn in a transaction, committing if it returns nil.
func (db *DB) tx(ctx context.Context, fn func(c conn) error) error {
	if db.d.GroupCommit {
		return db.groupTx(ctx, fn)
	}
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "begin transaction")
	}
	if err := fn(conn{db: db, q: tx, tx: tx}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return errs.Wrap(errs.Internal, err, "commit transaction")
	}
	return nil
}

// groupTx queues fn for the next group commit and waits for its outcome. A
// caller that finds no batch running commits one batch, then hands the
// leadership to a new goroutine if more requests queued meanwhile, so that
// no caller waits longer than the batch it is in and the one before.
func (db *DB) groupTx(ctx context.Context, fn func(c conn) error) error {
	r := &txRequest{ctx: ctx, fn: fn, done: make(chan error, 1)}
	db.qmu.Lock()
	db.queue = append(db.queue, r)
	lead := !db.leading
	db.leading = true
	db.qmu.Unlock()
	if lead {
		db.lead()
	}
	return <-r.done
}

// lead commits one batch of queued requests and passes the leadership on.
func (db *DB) lead() {
	db.qmu.Lock()
	n := min(len(db.queue), maxBatch)
	batch := db.queue[:n:n]
	db.queue = db.queue[n:]
	db.qmu.Unlock()
	db.commitBatch(batch)
	db.qmu.Lock()
	if len(db.queue) == 0 {
		db.leading = false
	} else {
		go db.lead()
	}
	db.qmu.Unlock()
}

// commitBatch runs each request under its own savepoint in one transaction:
// a request that fails is rolled back alone; the commit covers the rest.
func (db *DB) commitBatch(batch []*txRequest) {
	results := make([]error, len(batch))
	tx, err := db.SQL.BeginTx(context.Background(), nil)
	if err != nil {
		for _, r := range batch {
			r.done <- errs.Wrap(errs.Internal, err, "begin transaction")
		}
		return
	}
	c := conn{db: db, q: tx, tx: tx}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = errs.Wrap(errs.Internal, err, "request ended before its transaction ran")
			continue
		}
		if _, err := tx.Exec("SAVEPOINT licet_tx"); err != nil {
			results[i] = errs.Wrap(errs.Internal, err, "begin savepoint")
			continue
		}
		results[i] = r.fn(c)
		if results[i] != nil {
			tx.Exec("ROLLBACK TO licet_tx")
		}
		tx.Exec("RELEASE licet_tx")
	}
	if err := tx.Commit(); err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = errs.Wrap(errs.Internal, err, "commit transaction")
			}
		}
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}

// dbErr classifies a database error; what names the operation.
func (db *DB) dbErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	if db.d.IsUnique != nil && db.d.IsUnique(err) {
		return errs.Wrap(errs.Conflict, err, "%s: it exists already", what)
	}
	return errs.Wrap(errs.Internal, err, "%s", what)
}

// Times are stored as Unix nanoseconds, UTC.
func toNanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func toNullNanos(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// Lists and maps are stored as JSON text.
func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only string slices and maps are stored
	}
	return string(b)
}

func fromJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return errs.Wrap(errs.Internal, err, "stored JSON is damaged")
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Migrate applies the role's embedded migrations ("vendor" or "site") that
// the database has not seen yet, each in its own transaction, recording them
// in licet_migrations.
func (db *DB) Migrate(ctx context.Context, role string) error {
	files, err := fs.Glob(migrations, "migrations/"+role+"/*.sql")
	if err != nil || len(files) == 0 {
		return errs.E(errs.Internal, "no migrations for role %q", role)
	}
	sort.Strings(files)
	for _, f := range files {
		base := f[strings.LastIndex(f, "/")+1:]
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return errs.E(errs.Internal, "migration %s is not numbered", f)
		}
		body, _ := migrations.ReadFile(f)
		if err := db.applyMigration(ctx, role, version, string(body)); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, role string, version int, body string) error {
	return db.tx(ctx, func(c conn) error {
		if db.d.LockMigrations != "" {
			if _, err := c.exec(ctx, db.d.LockMigrations); err != nil {
				return errs.Wrap(errs.Internal, err, "lock migrations")
			}
		}
		if _, err := c.exec(ctx, `CREATE TABLE IF NOT EXISTS licet_migrations (
			role TEXT NOT NULL, version INTEGER NOT NULL, applied BIGINT NOT NULL, PRIMARY KEY (role, version))`); err != nil {
			return errs.Wrap(errs.Internal, err, "create migrations table")
		}
		var n int
		if err := c.row(ctx, `SELECT COUNT(*) FROM licet_migrations WHERE role = ? AND version = ?`, role, version).Scan(&n); err != nil {
			return errs.Wrap(errs.Internal, err, "read migrations table")
		}
		if n > 0 {
			return nil
		}
		for _, stmt := range strings.Split(body, ";") {
			stmt = strings.TrimSpace(strings.ReplaceAll(stmt, "BLOB", db.d.BlobType))
			if stmt == "" {
				continue
			}
			if _, err := c.exec(ctx, stmt); err != nil {
				return errs.Wrap(errs.Internal, err, "apply %s migration %d: %.60s", role, version, stmt)
			}
		}
		_, err := c.exec(ctx, `INSERT INTO licet_migrations (role, version, applied) VALUES (?, ?, ?)`, role, version, time.Now().UnixNano())
		return errs.Wrap(errs.Internal, err, "record %s migration %d", role, version)
	})
}

// notFound builds the NotFound error of a missing object.
func notFound(what, id string) error {
	return errs.E(errs.NotFound, "%s %q not found", what, id)
}

// scanErr maps sql.ErrNoRows to NotFound.
func (db *DB) scanErr(err error, what, id string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(what, id)
	}
	return db.dbErr(err, fmt.Sprintf("read %s %q", what, id))
}
