package sqlite_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licet/licet/auth"
	"github.com/licet/licet/licensing/clearinghouse"
	"github.com/licet/licet/licensing/licenseserver"
	"github.com/licet/licet/store"
	"github.com/licet/licet/store/sqlite"
	"github.com/licet/licet/store/sqlstore"
	"github.com/licet/licet/store/storetest"
)

// openDB opens the SQLite database at path and closes it when the test ends.
func openDB(t *testing.T, path string) *sqlstore.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openVendor opens and migrates the vendor database at path.
func openVendor(t *testing.T, path string) *sqlstore.Vendor {
	t.Helper()
	v, err := sqlstore.NewVendor(t.Context(), openDB(t, path))
	if err != nil {
		t.Fatalf("migrate vendor database: %v", err)
	}
	return v
}

// openSite opens and migrates the site database at path.
func openSite(t *testing.T, path string) *sqlstore.Site {
	t.Helper()
	s, err := sqlstore.NewSite(t.Context(), openDB(t, path))
	if err != nil {
		t.Fatalf("migrate site database: %v", err)
	}
	return s
}

// TestVendor runs the vendor store conformance suite on SQLite, a new
// database file per subtest.
func TestVendor(t *testing.T) {
	t.Parallel()
	storetest.TestVendor(t, func(t *testing.T) clearinghouse.Store {
		return openVendor(t, filepath.Join(t.TempDir(), "vendor.db"))
	})
}

// TestSite runs the site store conformance suite on SQLite, a new database
// file per subtest.
func TestSite(t *testing.T) {
	t.Parallel()
	storetest.TestSite(t, func(t *testing.T) licenseserver.Store {
		return openSite(t, filepath.Join(t.TempDir(), "site.db"))
	})
}

// newSharedDSN names a new database file for two stores to share.
func newSharedDSN(t *testing.T) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "shared.db")
}

// TestSharedSite opens two site stores on one file concurrently (as two
// processes would) and grants seats from both.
func TestSharedSite(t *testing.T) {
	t.Parallel()
	a, b := storetest.OpenBoth(t, newSharedDSN(t), store.OpenSite)
	storetest.TestSharedSite(t, a, b)
}

// TestSharedVendor opens two vendor stores on one file concurrently and
// allocates serial numbers and uses an enrollment code from both.
func TestSharedVendor(t *testing.T) {
	t.Parallel()
	a, b := storetest.OpenBoth(t, newSharedDSN(t), store.OpenVendor)
	storetest.TestSharedVendor(t, a, b)
}

// migration is a row of licet_migrations.
type migration struct {
	role    string
	version int
	applied int64
}

// migrations reads licet_migrations.
func migrations(t *testing.T, db *sqlstore.DB) []migration {
	t.Helper()
	rows, err := db.SQL.QueryContext(t.Context(), `SELECT role, version, applied FROM licet_migrations ORDER BY role, version`)
	if err != nil {
		t.Fatalf("read licet_migrations: %v", err)
	}
	defer rows.Close()
	var out []migration
	for rows.Next() {
		var m migration
		if err := rows.Scan(&m.role, &m.version, &m.applied); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateOnce opens one database file again and again, with both roles:
// each migration is applied and recorded once, and the data survives.
func TestMigrateOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "licet.db") // the directory is created too
	secret := "licet_reopen"
	var first []migration
	for round, name := range []string{"create", "reopen", "reopen again"} {
		t.Run(name, func(t *testing.T) {
			site := openSite(t, path)
			vendor := openVendor(t, path)
			if round == 0 {
				if err := site.AddToken(t.Context(), &auth.Token{ID: "tok_1", Name: "n", Hash: auth.HashToken(secret), Created: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := site.TokenByHash(t.Context(), auth.HashToken(secret)); err != nil {
				t.Errorf("round %d: token lost: %v", round, err)
			}
			ms := migrations(t, site.DB)
			count := map[string]int{}
			seen := map[migration]bool{}
			for _, m := range ms {
				count[m.role]++
				key := migration{role: m.role, version: m.version}
				if seen[key] {
					t.Errorf("round %d: migration %s %d recorded twice", round, m.role, m.version)
				}
				seen[key] = true
			}
			for _, role := range []string{"site", "vendor"} {
				if want := storetest.MigrationFiles(t, role); count[role] != want {
					t.Errorf("round %d: %d %s migrations recorded, want %d", round, count[role], role, want)
				}
			}
			if round == 0 {
				first = ms
				return
			}
			if len(ms) != len(first) {
				t.Fatalf("round %d: %d migrations recorded, want %d", round, len(ms), len(first))
			}
			for i := range ms {
				if ms[i] != first[i] {
					t.Errorf("round %d: migration %+v became %+v: applied again", round, first[i], ms[i])
				}
			}
			if _, err := vendor.AllocateSerials(t.Context(), 1); err != nil {
				t.Errorf("round %d: vendor store unusable after reopening: %v", round, err)
			}
		})
	}
}

// TestFileMode checks that a new database file is readable by its owner only.
func TestFileMode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "licet.db")
	s := openSite(t, path)
	// Write, so that the journal files exist too.
	if err := s.AddToken(t.Context(), &auth.Token{ID: "tok_1", Name: "n", Hash: auth.HashToken("licet_x"), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if os.IsNotExist(err) && p != path {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(p), mode)
		}
	}
}

// TestSharedLeases opens two site stores on one file and grants seats from
// both with leased seats.
func TestSharedLeases(t *testing.T) {
	t.Parallel()
	a, b := storetest.OpenBoth(t, newSharedDSN(t), store.OpenSite)
	storetest.TestSharedLeases(t, a, b)
}

// Answered challenges are swept once expired (a few every few answers),
// and temporary files (a group commit's savepoints) stay in memory.
func TestAnsweredChallengesSwept(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "site.db")
	s := openSite(t, path)
	ctx := t.Context()
	count := func() int {
		var n int
		if err := s.SQL.QueryRowContext(ctx, `SELECT count(*) FROM s_used_challenges`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 40 {
		if err := s.ConsumeChallenge(ctx, fmt.Sprintf("ch-expired-%d", i), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("%d expired answered challenges are left after 40 answers; they are swept as answers come", n)
	}
	for i := range 5 {
		if err := s.ConsumeChallenge(ctx, fmt.Sprintf("ch-live-%d", i), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 5 {
		t.Fatalf("%d answered challenges recorded, want the 5 that have not expired", n)
	}
	if err := s.ConsumeChallenge(ctx, "ch-live-0", time.Now().Add(time.Hour)); err == nil {
		t.Fatal("a challenge was recorded as answered twice")
	}
	var temp int
	if err := s.SQL.QueryRowContext(ctx, `PRAGMA temp_store`).Scan(&temp); err != nil || temp != 2 {
		t.Fatalf("temp_store = %d (%v), want 2 (memory)", temp, err)
	}
}

// TestCheckpointInBackground: after a commit, the write-ahead log is copied
// into the database file by the background checkpointer, long before
// SQLite's own checkpoint threshold (sqlite.AutoCheckpoint pages), and the
// rows are still there after a reopen.
func TestCheckpointInBackground(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vendor.db")
	v := openVendor(t, path)
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	for i := range 20 {
		c := &clearinghouse.Customer{ID: fmt.Sprint("cust-", i), Name: strings.Repeat("n", 2000), Created: time.Now()}
		if err := v.CreateCustomer(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() < before+20*2000 {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (%d before 40 KB of rows) 10 s after the commits: the log was not checkpointed", size(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOrderTemporaryMigration runs vendor migration 016 on a SQLite file
// with orders from before it.
func TestOrderTemporaryMigration(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "vendor.db")
	var db *sqlstore.DB
	storetest.TestOrderTemporaryMigration(t, path, store.OpenVendor, func(q string) error {
		if db == nil {
			db = openDB(t, path)
		}
		_, err := db.SQL.ExecContext(t.Context(), q)
		return err
	})
}
