package sqldb_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// gated opens a pool on a fresh schema of the test server whose gate has
// the given places and wait.
func gated(t *testing.T, places int, wait time.Duration) sqldb.DB {
	t.Helper()
	url, schema := sqldbtest.Schema(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	db, err := sqldb.OpenPostgresGated(context.Background(), cfg, places, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// holdPlace runs a transaction that holds a place of db's gate until the
// returned release is called (or the test ends); release returns the
// transaction's error.
func holdPlace(t *testing.T, db sqldb.DB) (release func() error) {
	t.Helper()
	ctx := context.Background()
	holding, hold, ended := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(hold) }) })
	go func() {
		ended <- db.Tx(ctx, func(q sqldb.Querier) error {
			if _, err := q.Exec(ctx, `SELECT 1`); err != nil {
				return err
			}
			close(holding)
			<-hold
			return nil
		})
	}()
	select {
	case <-holding:
	case err := <-ended:
		t.Fatalf("the holding transaction ended: %v", err)
	}
	return func() error { once.Do(func() { close(hold) }); return <-ended }
}

// gatePaths are every way a caller reaches PostgreSQL through a DB.
func gatePaths(db sqldb.DB) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"exec": func(ctx context.Context) error { _, err := db.Exec(ctx, `SELECT 1`); return err },
		"query closed": func(ctx context.Context) error {
			rows, err := db.Query(ctx, `SELECT 1`)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		},
		"query read to the end": func(ctx context.Context) error {
			rows, err := db.Query(ctx, `SELECT generate_series(1, 3)`)
			if err != nil {
				return err
			}
			for rows.Next() {
			}
			return rows.Err()
		},
		"row": func(ctx context.Context) error { var n int; return db.QueryRow(ctx, `SELECT 1`).Scan(&n) },
		"autocommit": func(ctx context.Context) error {
			return sqldb.Autocommit(ctx, db, func(q sqldb.Querier) error { _, err := q.Exec(ctx, `SELECT 1`); return err })
		},
		"transaction": func(ctx context.Context) error {
			return db.Tx(ctx, func(q sqldb.Querier) error { _, err := q.Exec(ctx, `SELECT 1`); return err })
		},
	}
}

// Every way to PostgreSQL passes the pool's gate: while a transaction
// holds its only place, a statement, a query, a row, an autocommit write
// and another transaction each wait (the gate's wait is an hour here),
// run once the place is given back, and give it back in turn (a query's
// when its rows are closed or read to the end, a row's once scanned).
func TestEveryWayToPostgreSQLWaitsAtTheGate(t *testing.T) {
	for name := range gatePaths(nil) {
		t.Run(name, func(t *testing.T) {
			db := gated(t, 1, time.Hour) // its own: a place left taken fails only this path
			run := gatePaths(db)[name]
			release := holdPlace(t, db)
			done := make(chan error, 1)
			go func() { done <- run(context.Background()) }()
			select {
			case err := <-done:
				t.Fatalf("ran while the gate's only place was held (error: %v)", err)
			case <-time.After(100 * time.Millisecond): // still waiting, as it should
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if g, _ := sqldb.Gate(db); g.InUse != 0 || g.Beyond != 0 {
				t.Fatalf("after it: %d places in use, %d callers beyond; want none", g.InUse, g.Beyond)
			}
		})
	}
}

// When no place is given back for the gate's wait (every round trip
// slow, or a caller that holds a place and needs another), each way goes
// on without a place, on a connection of the pool beyond the gate.
func TestEveryWayToPostgreSQLGoesBeyondAStuckGate(t *testing.T) {
	db := gated(t, 1, 20*time.Millisecond)
	release := holdPlace(t, db)
	paths := gatePaths(db)
	for name, run := range paths {
		if err := run(context.Background()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if g, _ := sqldb.Gate(db); g.Beyond != int64(len(paths)) {
		t.Fatalf("%d callers went beyond, want %d", g.Beyond, len(paths))
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
}

// The gate's figures are metrics: its places, those in use, and the
// callers that went beyond.
func TestGateMetrics(t *testing.T) {
	db := gated(t, 2, 20*time.Millisecond)
	reg := prometheus.NewPedanticRegistry()
	for _, c := range sqldb.GateMetrics(db) {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	want := func(in, beyond int) string {
		return fmt.Sprintf(`# HELP eva_db_gate_beyond_total Statements and transactions that went on without a place, none having been given back for 25ms.
# TYPE eva_db_gate_beyond_total counter
eva_db_gate_beyond_total %d
# HELP eva_db_gate_in_use The gate's places in use now.
# TYPE eva_db_gate_in_use gauge
eva_db_gate_in_use %d
# HELP eva_db_gate_places Connections to PostgreSQL the gate lets be in use at once while they are given back (ADR 44).
# TYPE eva_db_gate_places gauge
eva_db_gate_places 2
`, beyond, in)
	}
	defer holdPlace(t, db)()
	release := holdPlace(t, db)
	if _, err := db.Exec(context.Background(), `SELECT 1`); err != nil { // beyond the two held
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(2, 1))); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(1, 1))); err != nil {
		t.Fatal(err)
	}
	if len(sqldb.GateMetrics(sqldbtest.SQLite(t))) != 0 {
		t.Fatal("SQLite has gate metrics, and no gate")
	}
}
