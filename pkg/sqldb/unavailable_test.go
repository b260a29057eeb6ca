package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/netfault"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// postgresBehind opens a pool on a fresh schema behind a proxy, with a
// table t.
func postgresBehind(t *testing.T) (sqldb.DB, *netfault.Proxy) {
	t.Helper()
	db, proxy := sqldbtest.PostgresBehind(t)
	if _, err := db.Exec(context.Background(), `CREATE TABLE t (id BIGINT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return db, proxy
}

// A database that stays out of reach is CodeUnavailable — to reads,
// writes, transactions and pings — never an internal error; and, once it
// is back, the same calls succeed.
func TestOutageIsUnavailableAndHeals(t *testing.T) {
	db, proxy := postgresBehind(t)
	ctx := context.Background()
	proxy.SetDown(true)
	start := time.Now()
	var n int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n)
	if !assist.IsCode(err, assist.CodeUnavailable) || !sqldb.IsUnavailable(err) {
		t.Fatalf("read during the outage: %v, want unavailable", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("the read gave up after %v, before trying again for its budget", waited)
	}
	if _, err := db.Exec(ctx, `INSERT INTO t (id) VALUES (1)`); !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("write during the outage: %v, want unavailable", err)
	}
	if err := db.Tx(ctx, func(q sqldb.Querier) error { _, err := q.Exec(ctx, `INSERT INTO t (id) VALUES (2)`); return err }); !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("transaction during the outage: %v, want unavailable", err)
	}
	if err := db.Ping(ctx); !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("ping during the outage: %v, want unavailable", err)
	}
	var ae *assist.Error
	if assist.ErrorCode(err) == assist.CodeUnavailable && errorsAs(err, &ae) && ae.Message != "database unavailable" {
		t.Fatalf("the error crosses boundaries with detail %q", ae.Message)
	}
	proxy.SetDown(false)
	if err := db.Tx(ctx, func(q sqldb.Querier) error { _, err := q.Exec(ctx, `INSERT INTO t (id) VALUES (3)`); return err }); err != nil {
		t.Fatalf("transaction after the outage: %v", err)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the outage: %d rows, %v; want the one committed after it", n, err)
	}
}

// An outage shorter than the budget is absorbed: the caller sees only a
// slower answer.
func TestShortOutageIsAbsorbed(t *testing.T) {
	db, proxy := postgresBehind(t)
	ctx := context.Background()
	proxy.SetDown(true)
	time.AfterFunc(500*time.Millisecond, func() { proxy.SetDown(false) })
	if err := db.Tx(ctx, func(q sqldb.Querier) error { _, err := q.Exec(ctx, `INSERT INTO t (id) VALUES (1)`); return err }); err != nil {
		t.Fatalf("a transaction across a half-second outage: %v", err)
	}
	proxy.CutAll() // connections break under the pool
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("a read after every connection was cut: %d, %v", n, err)
	}
}

// A write outside a transaction that found no connection to send it on
// was not sent, and is tried again within the budget as a transaction
// is: the pool's connections were found dead (it pings one idle for a
// second) and new ones were refused.
func TestWriteThatFoundNoConnectionIsTriedAgain(t *testing.T) {
	db, proxy := postgresBehind(t)
	ctx := context.Background()
	for id, w := range writes(db) {
		t.Run(w.name, func(t *testing.T) {
			proxy.SetDown(true)
			time.Sleep(1100 * time.Millisecond) // the pool checks its idle connections
			up := make(chan struct{})
			time.AfterFunc(500*time.Millisecond, func() { proxy.SetDown(false); close(up) })
			defer func() { <-up }()
			if _, err := w.run(ctx, `INSERT INTO t (id) VALUES ($1)`, id); err != nil {
				t.Fatalf("across a half-second outage: %v", err)
			}
		})
	}
	if n := count(t, db, `SELECT count(*) FROM t`); n != int64(len(writes(db))) {
		t.Fatalf("%d rows, want %d", n, len(writes(db)))
	}
}

// A write outside a transaction whose connection broke once it was sent
// may have committed: it is not run again, and the caller is told the
// database is unavailable. pgx reports a statement sent without
// parameters (its simple protocol) whose connection broke as "conn
// closed", which it calls safe to retry; it is not.
func TestSentWriteIsNotRunAgain(t *testing.T) {
	db, proxy := postgresBehind(t)
	ctx := context.Background()
	for i, w := range writes(db) {
		for j, args := range [][]any{nil, {100*i + 1}} {
			t.Run(fmt.Sprintf("%s %d parameters", w.name, len(args)), func(t *testing.T) {
				q := fmt.Sprintf(`INSERT INTO t (id) SELECT %d FROM pg_sleep(1)`, 10*i+j)
				if len(args) > 0 {
					q = `INSERT INTO t (id) SELECT $1::bigint FROM pg_sleep(1)`
				}
				cut := time.AfterFunc(300*time.Millisecond, proxy.CutAll)
				defer cut.Stop()
				start := time.Now()
				runs, err := w.run(ctx, q, args...)
				if !sqldb.IsUnavailable(err) || !assist.IsCode(err, assist.CodeUnavailable) {
					t.Fatalf("cut after it was sent: %v after %v, want unavailable", err, time.Since(start))
				}
				if runs > 1 || time.Since(start) > 900*time.Millisecond {
					t.Fatalf("ran %d times, %v", runs, time.Since(start))
				}
			})
		}
	}
}

// write is a way to write outside a transaction.
type write struct {
	name string
	// run runs a statement and says how many times it was sent (1 for
	// Exec, which does not say).
	run func(ctx context.Context, q string, args ...any) (runs int, err error)
}

func writes(db sqldb.DB) []write {
	return []write{
		{"Exec", func(ctx context.Context, q string, args ...any) (int, error) {
			_, err := db.Exec(ctx, q, args...)
			return 1, err
		}},
		{"Autocommit", func(ctx context.Context, q string, args ...any) (int, error) {
			runs := 0
			err := sqldb.Autocommit(ctx, db, func(tx sqldb.Querier) error {
				runs++
				_, err := tx.Exec(ctx, q, args...)
				return err
			})
			return runs, err
		}},
	}
}

// A statement the database refuses is not an outage.
func TestRefusedStatementIsNotUnavailable(t *testing.T) {
	db, _ := postgresBehind(t)
	_, err := db.Exec(context.Background(), `INSERT INTO nowhere VALUES (1)`)
	if err == nil || sqldb.IsUnavailable(err) || assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("a bad statement: %v, want an ordinary error", err)
	}
}

func errorsAs(err error, target **assist.Error) bool { return errors.As(err, target) }
