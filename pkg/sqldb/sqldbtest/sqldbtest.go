// Package sqldbtest opens real databases for tests: an embedded SQLite file
// in a temporary directory, and a fresh schema in a real PostgreSQL.
//
// PostgreSQL is found at $EVA_TEST_POSTGRES (default
// postgres://postgres@127.0.0.1:5432/test). When it is unreachable, tests
// that need it fail if $CI or $EVA_REQUIRE_POSTGRES is set, and otherwise
// skip with a loud message.
package sqldbtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eva-org/eva/pkg/netfault"
	"github.com/eva-org/eva/pkg/sqldb"
)

// DefaultPostgres is used when $EVA_TEST_POSTGRES is unset.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Each runs f as a subtest against each driver.
func Each(t *testing.T, f func(t *testing.T, db sqldb.DB)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { f(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
}

// SQLite opens an embedded database in a temporary directory.
func SQLite(tb testing.TB) sqldb.DB {
	tb.Helper()
	db, err := sqldb.OpenSQLite(context.Background(), filepath.Join(tb.TempDir(), "eva.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return db
}

// PostgresURL is the test server's URL.
func PostgresURL() string {
	if u := os.Getenv("EVA_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultPostgres
}

// Required reports whether tests must fail, not skip, without PostgreSQL.
func Required() bool {
	return os.Getenv("CI") != "" || os.Getenv("EVA_REQUIRE_POSTGRES") != ""
}

var schemaSeq atomic.Int64

// Postgres opens a pool on a fresh schema that is dropped after the test.
func Postgres(tb testing.TB) sqldb.DB {
	tb.Helper()
	return openSchema(tb, func(cfg *pgxpool.Config) { cfg.MaxConns = 8 })
}

// PostgresBehind opens a pool on a fresh schema of the test server, reached
// through a fault-injecting TCP proxy that the test controls (down, cut,
// latency); both end with the test.
func PostgresBehind(tb testing.TB) (sqldb.DB, *netfault.Proxy) {
	tb.Helper()
	var proxy *netfault.Proxy
	db := openSchema(tb, func(cfg *pgxpool.Config) {
		var err error
		proxy, err = netfault.Start(net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = proxy.Close() })
		_, port, _ := net.SplitHostPort(proxy.Addr())
		p, _ := strconv.Atoi(port)
		cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(p)
		cfg.ConnConfig.ConnectTimeout = time.Second
		cfg.MaxConns = 8
	})
	return db, proxy
}

// openSchema opens a pool on a fresh schema of the test server (Schema),
// configured by configure first; both end with the test.
func openSchema(tb testing.TB, configure func(cfg *pgxpool.Config)) sqldb.DB {
	tb.Helper()
	url, schema := Schema(tb)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	configure(cfg)
	db, err := sqldb.OpenPostgresConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return db
}

// Schema creates a fresh schema and returns the server URL and its name;
// the schema is dropped after the test. A URL that selects it is
// url + "&search_path=" + schema (see URLWithSchema).
func Schema(tb testing.TB) (url, schema string) {
	tb.Helper()
	url = PostgresURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not reachable at %s: %v", url, err)
		if Required() {
			tb.Fatal(msg)
		}
		tb.Skip("SKIPPING: " + msg + " (set CI=true or EVA_REQUIRE_POSTGRES=1 to fail instead)")
	}
	defer conn.Close(ctx)
	schema = fmt.Sprintf("t_%d_%d_%s", time.Now().UnixNano(), schemaSeq.Add(1), sanitize(tb.Name()))
	if len(schema) > 63 {
		schema = schema[:63]
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Logf("drop schema %s: %v", schema, err)
		}
	})
	return url, schema
}

// URLWithSchema returns a PostgreSQL URL whose connections use schema.
func URLWithSchema(url, schema string) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
