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
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/licet/licet/errs"
)

// Dialect describes what differs between the SQL databases licet supports.
type Dialect struct {
	// Name is "sqlite" or "postgres".
	Name string
	// BlobType is the column type of byte strings. Migrations say BLOB, and
	// it replaces that word, the only difference of the two schemas.
	BlobType string
	// Numbered turns '?' placeholders into $1, $2, ….
	Numbered bool
	// IsUnique reports whether err is a unique-constraint violation.
	IsUnique func(error) bool
	// IsForeignKey reports whether err is a foreign-key violation: a row
	// that refers to a missing one.
	IsForeignKey func(error) bool
	// GroupCommit runs the transactions of one process in batches: one
	// database transaction, one savepoint per caller, one commit (one fsync)
	// for all. For SQLite, where writers take turns anyway.
	GroupCommit bool
	// LockMigrations, if set, runs inside the migration transaction first, so
	// that processes starting together apply each migration once.
	LockMigrations string
	// LockBatch, if set, runs first in every group-commit transaction, so that
	// the batches of several processes sharing the database take turns: two
	// batches that each hold row locks of their first requests would otherwise
	// deadlock on their later ones.
	LockBatch string
	// IsRetryable reports whether err is a lock conflict that the database
	// resolved by failing the statement (deadlock, serialization failure):
	// the transaction is run again, in a later batch.
	IsRetryable func(error) bool
	// Checkpoint, if set, is the statement that copies the write-ahead log
	// into the database (SQLite's "PRAGMA wal_checkpoint(PASSIVE)"), run in
	// the background after commits. SQLite would otherwise run it inside
	// the commit that crosses its threshold, and a large transaction's
	// commit would wait for the copy of every page it wrote.
	Checkpoint string
	// SkipLocked, if set, ends a SELECT of rows to take so that rows another
	// transaction has locked are passed over ("FOR UPDATE SKIP LOCKED").
	// SQLite has one writer at a time and needs none.
	SkipLocked string
	// WritableCTE says that a statement may modify rows in its WITH clause
	// (PostgreSQL): a grant then sends two statements fewer, each a round
	// trip to the server. SQLite has no such statements, and no round trips.
	WritableCTE bool
}

// DB is a database with its dialect.
type DB struct {
	SQL *sql.DB
	d   Dialect

	stmts   sync.Map   // rebound query text -> *sql.Stmt
	qmu     sync.Mutex // guards queue and leading
	queue   []*txRequest
	leading bool // a goroutine is committing batches

	ckptOnce sync.Once
	ckpt     chan struct{}  // a commit since the last checkpoint (Dialect.Checkpoint)
	closed   chan struct{}  // closed by Close
	ckptDone sync.WaitGroup // the checkpointer
}

// txRequest is one caller's transaction waiting for a group commit.
type txRequest struct {
	ctx   context.Context
	fn    func(c conn) error
	done  chan error
	tries int // runs that failed on a lock conflict
	// light requests take the dialect's LockBatch only when they update a
	// row that every process updates (conn.lockShared); a batch of light
	// requests alone runs beside other processes' batches.
	light bool
}

// batchLock records whether a batch took the dialect's LockBatch.
type batchLock struct {
	tx     *sql.Tx
	locked bool
}

// maxTries bounds how often a transaction runs that keeps failing on lock
// conflicts (see Dialect.IsRetryable).
const maxTries = 5

// errAgain marks, in a batch, a request that runs again in a later batch.
var errAgain = errors.New("run again")

// maxBatch bounds how many transactions share one commit.
const maxBatch = 256

// New wraps an open database.
func New(db *sql.DB, d Dialect) *DB {
	return &DB{SQL: db, d: d, ckpt: make(chan struct{}, 1), closed: make(chan struct{})}
}

// committed notes a commit: the checkpointer (started by the first) copies
// the write-ahead log into the database off the committing path. Commits
// made while a checkpoint runs share the next one.
func (db *DB) committed() {
	if db.d.Checkpoint == "" {
		return
	}
	db.ckptOnce.Do(func() {
		db.ckptDone.Add(1)
		go db.checkpointer()
	})
	select {
	case db.ckpt <- struct{}{}:
	default:
	}
}

// checkpointer runs Dialect.Checkpoint after commits until Close. A failed
// checkpoint is tried again after the next commit; meanwhile SQLite's own
// automatic checkpoint (see package sqlite) bounds the log.
func (db *DB) checkpointer() {
	defer db.ckptDone.Done()
	for {
		select {
		case <-db.closed:
			return
		case <-db.ckpt:
			db.SQL.Exec(db.d.Checkpoint)
		}
	}
}

// Close stops the checkpointer and closes the prepared statements and the
// database.
func (db *DB) Close() error {
	select {
	case <-db.closed:
	default:
		close(db.closed)
	}
	db.ckptDone.Wait()
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
	// ctx, if set, replaces the context of every statement: a group commit
	// runs a request's statements without its cancellation (see commitBatch).
	ctx context.Context
	// batch is the group-commit batch the statements run in; nil outside one.
	batch *batchLock
}

// lockShared takes the dialect's LockBatch for the rest of the batch, if the
// batch has not taken it: a light request calls it before it updates a row
// that the batches of other processes update too (a pack or counter row), so
// that two batches never hold such rows in opposite orders.
func (c conn) lockShared(ctx context.Context) error {
	if c.batch == nil || c.batch.locked || c.db.d.LockBatch == "" {
		return nil
	}
	if _, err := c.batch.tx.ExecContext(c.use(ctx), c.db.d.LockBatch); err != nil {
		return c.db.dbErr(err, "take the batch lock")
	}
	c.batch.locked = true
	return nil
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

// use returns the context a statement runs with.
func (c conn) use(ctx context.Context) context.Context {
	if c.ctx != nil {
		return c.ctx
	}
	return ctx
}

// exec runs a statement. Its error is the driver's, marked errs.Private: it
// names tables, constraints and values, so remote callers never see its text.
func (c conn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = c.use(ctx)
	res, err := c.on(ctx, q).ExecContext(ctx, c.db.rebind(q), args...)
	if err == nil && c.tx == nil {
		c.db.committed() // a statement outside a transaction commits itself
	}
	return res, errs.Private(err)
}

// query runs a query; its error is marked errs.Private like exec's.
func (c conn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = c.use(ctx)
	rows, err := c.on(ctx, q).QueryContext(ctx, c.db.rebind(q), args...)
	return rows, errs.Private(err)
}

func (c conn) row(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = c.use(ctx)
	return c.on(ctx, q).QueryRowContext(ctx, c.db.rebind(q), args...)
}

func (db *DB) conn() conn { return conn{db: db, q: db.SQL} }

// tx runs fn in a transaction, committing if it returns nil.
func (db *DB) tx(ctx context.Context, fn func(c conn) error) error {
	if db.d.GroupCommit {
		return db.groupTx(ctx, fn, false)
	}
	return db.directTx(ctx, fn)
}

// lightTx is tx for a transaction that calls conn.lockShared before it
// updates rows shared by every process (see txRequest.light).
func (db *DB) lightTx(ctx context.Context, fn func(c conn) error) error {
	if db.d.GroupCommit {
		return db.groupTx(ctx, fn, true)
	}
	return db.directTx(ctx, fn)
}

// directTx runs fn in a transaction of its own, outside any group commit,
// again after a lock conflict: for short transactions that must not wait
// for a batch, or hold a row lock for one.
func (db *DB) directTx(ctx context.Context, fn func(c conn) error) error {
	for try := 1; ; try++ {
		err := db.tx1(ctx, fn)
		if err == nil || try == maxTries || !db.retryable(err) {
			return err
		}
	}
}

// tx1 runs fn in a transaction, once.
func (db *DB) tx1(ctx context.Context, fn func(c conn) error) error {
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
	db.committed()
	return nil
}

// groupTx queues fn for the next group commit and waits for its outcome. A
// caller that finds no batch running commits one batch, then hands the
// leadership to a new goroutine if more requests queued meanwhile, so that
// no caller waits longer than the batch it is in and the one before.
func (db *DB) groupTx(ctx context.Context, fn func(c conn) error, light bool) error {
	r := &txRequest{ctx: ctx, fn: fn, done: make(chan error, 1), light: light}
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
// a request that fails is rolled back alone; the commit covers the rest. A
// request that failed on a lock conflict is queued again, ahead of the
// others, to run after this batch has committed and released its locks.
func (db *DB) commitBatch(batch []*txRequest) {
	results := make([]error, len(batch))
	tx, err := db.SQL.BeginTx(context.Background(), nil)
	bl := &batchLock{tx: tx}
	if err == nil && db.d.LockBatch != "" && slices.ContainsFunc(batch, func(r *txRequest) bool { return !r.light }) {
		if _, err = tx.Exec(db.d.LockBatch); err != nil {
			tx.Rollback()
		}
		bl.locked = true
	}
	if err != nil {
		for _, r := range batch {
			r.done <- errs.Wrap(errs.Internal, err, "begin transaction")
		}
		return
	}
	var again []*txRequest
	// The savepoint statements run prepared, like the requests' (SQLite
	// would parse them again for every request).
	sp, bg := conn{db: db, q: tx, tx: tx}, context.Background()
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = errs.Wrap(errs.Internal, err, "request ended before its transaction ran")
			continue
		}
		if _, err := sp.exec(bg, "SAVEPOINT licet_tx"); err != nil {
			results[i] = errs.Wrap(errs.Internal, err, "begin savepoint")
			continue
		}
		// A request that has started runs to its end: cancelling a statement
		// midway can abort the whole database transaction (SQLite rolls it
		// back, pgx closes the connection), and with it the other requests
		// of the batch.
		results[i] = runRequest(r, conn{db: db, q: tx, tx: tx, ctx: context.WithoutCancel(r.ctx), batch: bl})
		if results[i] != nil {
			sp.exec(bg, "ROLLBACK TO licet_tx")
			if db.retryable(results[i]) && r.tries+1 < maxTries {
				r.tries++
				results[i] = errAgain
				again = append(again, r)
			}
		}
		sp.exec(bg, "RELEASE licet_tx")
	}
	if err := tx.Commit(); err != nil {
		for i := range results {
			if results[i] == nil {
				results[i] = errs.Wrap(errs.Internal, err, "commit transaction")
			}
		}
	} else {
		db.committed()
	}
	for i, r := range batch {
		if results[i] != errAgain {
			r.done <- results[i]
		}
	}
	if len(again) > 0 { // lead, which called us, sees the queue and goes on
		db.qmu.Lock()
		db.queue = append(again, db.queue...)
		db.qmu.Unlock()
	}
}

// runRequest runs one request of a batch; a panic fails the request alone
// instead of stranding every caller that waits on the batch.
func runRequest(r *txRequest, c conn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errs.E(errs.Internal, "database transaction panicked: %v", p)
		}
	}()
	return r.fn(c)
}

// isUnique reports whether err is a unique-constraint violation.
func (db *DB) isUnique(err error) bool {
	return err != nil && db.d.IsUnique != nil && db.d.IsUnique(err)
}

// retryable reports whether err is a lock conflict worth another run.
func (db *DB) retryable(err error) bool {
	return err != nil && db.d.IsRetryable != nil && db.d.IsRetryable(err)
}

// isFK reports whether err is a foreign-key violation.
func (db *DB) isFK(err error) bool {
	return err != nil && db.d.IsForeignKey != nil && db.d.IsForeignKey(err)
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
	err = errs.Private(err) // a Scan's error comes unmarked
	if db.isUnique(err) {
		return errs.Wrap(errs.Conflict, err, "%s: it exists already", what)
	}
	if db.isFK(err) {
		return errs.Wrap(errs.NotFound, err, "%s: it refers to an object that does not exist", what)
	}
	return errs.Wrap(errs.Internal, err, "%s", what)
}

// Times are stored as Unix nanoseconds, UTC; the zero time.Time (outside
// the range of int64 nanoseconds) is stored as zeroNanos.
const zeroNanos = math.MinInt64

func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return zeroNanos
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == zeroNanos {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func toNullNanos(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: toNanos(*t), Valid: true}
}

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// nullInt stores an optional number: NULL for nil.
func nullInt(n *int) sql.NullInt64 {
	if n == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*n), Valid: true}
}

// fromNullInt reads an optional number: nil for NULL.
func fromNullInt(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	v := int(n.Int64)
	return &v
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

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	body    string
}

// migrationsFor returns the embedded migrations of a role, by version.
func (db *DB) migrationsFor(role string) ([]migration, error) {
	dir := "migrations/" + role
	files, err := fs.Glob(migrations, dir+"/*.sql")
	if err != nil || len(files) == 0 {
		return nil, errs.E(errs.Internal, "no %s migrations for role %q in this build of licet", db.d.Name, role)
	}
	var out []migration
	seen := map[int]string{}
	for _, f := range files {
		base := path.Base(f)
		num, _, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if err != nil || version < 1 {
			return nil, errs.E(errs.Internal, "migration %s is not numbered NNN_name.sql", f)
		}
		if prev, dup := seen[version]; dup {
			return nil, errs.E(errs.Internal, "migrations %s and %s have the same number", prev, base)
		}
		seen[version] = base
		body, err := migrations.ReadFile(f)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "read migration %s", f)
		}
		out = append(out, migration{version: version, name: base, body: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// statements splits a migration into its statements: "--" comment lines are
// dropped, and statements end with ";" (migrations hold no literal ';').
func statements(body string) []string {
	var b strings.Builder
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	var out []string
	for _, st := range strings.Split(b.String(), ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out
}

// Migrate applies, in one transaction, the role's embedded migrations
// ("vendor" or "site") that the database has not seen yet, and records each
// in licet_migrations. Processes that start together take turns: SQLite's
// BEGIN IMMEDIATE and the dialect's LockMigrations serialise them, so each
// migration is applied once.
func (db *DB) Migrate(ctx context.Context, role string) error {
	ms, err := db.migrationsFor(role)
	if err != nil {
		return err
	}
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "begin the %s schema migration; check that the database is reachable and writable", role)
	}
	defer tx.Rollback()
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, db.rebind(q), args...)
		return err
	}
	if db.d.LockMigrations != "" {
		if err := exec(db.d.LockMigrations); err != nil {
			return errs.Wrap(errs.Internal, err, "lock the %s schema migration", role)
		}
	}
	if err := exec(`CREATE TABLE IF NOT EXISTS licet_migrations (
		role TEXT NOT NULL, version INT NOT NULL, applied BIGINT NOT NULL, PRIMARY KEY (role, version))`); err != nil {
		return errs.Wrap(errs.Internal, err, "create the licet_migrations table")
	}
	rows, err := tx.QueryContext(ctx, db.rebind(`SELECT version FROM licet_migrations WHERE role = ?`), role)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "read the licet_migrations table")
	}
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return errs.Wrap(errs.Internal, err, "read the licet_migrations table")
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return errs.Wrap(errs.Internal, err, "read the licet_migrations table")
	}
	latest := ms[len(ms)-1].version
	for v := range applied {
		if v > latest {
			return errs.E(errs.Internal, "the %s database has schema version %d but this licet knows only up to %d: run a newer licet", role, v, latest)
		}
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		for _, st := range statements(strings.ReplaceAll(m.body, "BLOB", db.d.BlobType)) {
			if err := exec(st); err != nil {
				return errs.Wrap(errs.Internal, err, "apply %s migration %s: %.60s", role, m.name, st)
			}
		}
		if err := exec(`INSERT INTO licet_migrations (role, version, applied) VALUES (?, ?, ?)`, role, m.version, time.Now().UnixNano()); err != nil {
			return errs.Wrap(errs.Internal, err, "record %s migration %s", role, m.name)
		}
	}
	if err := tx.Commit(); err != nil {
		return errs.Wrap(errs.Internal, err, "commit the %s schema migration", role)
	}
	db.committed()
	return nil
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
