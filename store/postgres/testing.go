package postgres

import (
	"context"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
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
// DefaultTestServer. Without a reachable server the test is skipped with a
// one-line reason, unless $LICET_REQUIRE_POSTGRES is set (as in CI), when it fails.
func TestDSN(t testing.TB) string {
	t.Helper()
	server := os.Getenv("LICET_TEST_POSTGRES")
	if server == "" {
		server = DefaultTestServer
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", server)
	if err == nil {
		err = admin.PingContext(ctx)
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		if os.Getenv("LICET_REQUIRE_POSTGRES") != "" {
			t.Fatalf("PostgreSQL required but not reachable at %s: %v", redact(server), err)
		}
		t.Skipf("no PostgreSQL: set LICET_TEST_POSTGRES or start one at %s (%v)", redact(server), err)
	}
	name := "licet_test_" + hex.EncodeToString(ids.Random(6))
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
		admin.Close()
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
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
