package postgres

import (
	"context"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licet/licet/internal/ids"
)

// DefaultTestServer is where tests look for PostgreSQL when
// $LICET_TEST_POSTGRES is not set; .ci/run creates this role.
const DefaultTestServer = "postgres://licet:licet@127.0.0.1:5432/postgres?sslmode=disable"

// TestDSN creates a fresh, empty database for one test and returns its URL;
// the database is dropped when the test ends. The server comes from
// $LICET_TEST_POSTGRES (a URL whose user may CREATE DATABASE) or
// DefaultTestServer. Without a server answering within 2 seconds the test
// is skipped with a one-line reason, unless $LICET_REQUIRE_POSTGRES is set
// (as in CI), when it fails.
func TestDSN(t testing.TB) string {
	t.Helper()
	server := os.Getenv("LICET_TEST_POSTGRES")
	if server == "" {
		server = DefaultTestServer
	}
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("LICET_TEST_POSTGRES is not a URL: %v", err)
	}
	name := "licet_test_" + hex.EncodeToString(ids.Random(6))
	if prev, down := downServers.Load(server); down {
		err = prev.(error) // probed already by this test binary: do not wait again
	} else {
		err = admin(server, 2*time.Second, "CREATE DATABASE "+name)
	}
	if err != nil && !reachable(err) {
		downServers.Store(server, err)
		if os.Getenv("LICET_REQUIRE_POSTGRES") != "" {
			t.Fatalf("PostgreSQL required but not reachable at %s: %v", redact(server), err)
		}
		t.Skipf("no PostgreSQL at %s (set LICET_TEST_POSTGRES to a URL whose user may CREATE DATABASE): %v", redact(server), oneLine(err))
	}
	if err != nil {
		t.Fatalf("create test database on %s: %v", redact(server), err)
	}
	t.Cleanup(func() {
		if err := admin(server, 30*time.Second, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// downServers holds the servers found unreachable, with the error.
var downServers sync.Map

// unreachable marks an error of connecting, as opposed to one of the statement.
type unreachable struct{ error }

func reachable(err error) bool {
	_, ok := err.(unreachable)
	return !ok
}

// admin runs one statement on the server over a connection of its own,
// which it closes: tests keep no idle administrative connections.
func admin(server string, timeout time.Duration, stmt string) error {
	db, err := sql.Open("pgx", server)
	if err != nil {
		return unreachable{err}
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return unreachable{err}
	}
	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

// oneLine returns the first line of err's text.
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return strings.Replace(u.String(), "%", "", -1)
}
