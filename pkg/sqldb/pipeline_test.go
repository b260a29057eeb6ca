package sqldb_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

func count(t *testing.T, db sqldb.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A transaction on PostgreSQL costs the round trips of its statements:
// the BEGIN goes with the first, a deferred write with the COMMIT. A
// transaction that sends nothing costs nothing.
func TestTransactionSendsBeginAndDeferredWritesWithTheNext(t *testing.T) {
	db, trips := sqldbtest.TracedPostgres(t)
	migrated(t, db)
	ctx := context.Background()
	tx := func(id int64) error {
		return db.Tx(ctx, func(q sqldb.Querier) error {
			var n int64
			if err := q.QueryRow(ctx, `SELECT n FROM counters WHERE name = 'c'`).Scan(&n); err != nil {
				return err
			}
			if _, err := q.Exec(ctx, `UPDATE counters SET n = $1 WHERE name = 'c'`, n+1); err != nil {
				return err
			}
			return sqldb.Defer(ctx, q, `INSERT INTO items (id, owner) VALUES ($1, 'x')`, id)
		})
	}
	if err := tx(1); err != nil { // prepares the statements
		t.Fatal(err)
	}
	trips.Reset()
	if err := tx(2); err != nil {
		t.Fatal(err)
	}
	// BEGIN+SELECT, UPDATE, INSERT+COMMIT (five one by one).
	if got := trips.N(); got != 3 {
		t.Errorf("a transaction of three statements took %d round trips, want 3", got)
	}
	trips.Reset()
	if err := db.Tx(ctx, func(sqldb.Querier) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := trips.N(); got != 0 {
		t.Errorf("an empty transaction took %d round trips, want none", got)
	}
	if n := count(t, db, `SELECT n FROM counters WHERE name = 'c'`); n != 2 {
		t.Errorf("counter %d, want 2", n)
	}
	if n := count(t, db, `SELECT count(*) FROM items`); n != 2 {
		t.Errorf("%d items, want 2", n)
	}
}

// A deferred write is seen by the statements after it, and its failure
// fails the statement it was sent with, or the commit, and leaves
// nothing of the transaction behind — on both stores.
func TestDeferredWriteIsPartOfTheTransaction(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		migrated(t, db)
		ctx := context.Background()
		if _, err := db.Exec(ctx, `INSERT INTO items (id, owner) VALUES (1, 'first')`); err != nil {
			t.Fatal(err)
		}
		err := db.Tx(ctx, func(q sqldb.Querier) error {
			if err := sqldb.Defer(ctx, q, `INSERT INTO items (id, owner) VALUES (2, 'deferred')`); err != nil {
				return err
			}
			var n int64
			if err := q.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&n); err != nil || n != 2 {
				t.Errorf("after a deferred insert the transaction sees %d items (%v), want 2", n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		// Failing with the next statement.
		err = db.Tx(ctx, func(q sqldb.Querier) error {
			if _, err := q.Exec(ctx, `UPDATE counters SET n = 7 WHERE name = 'c'`); err != nil {
				return err
			}
			if err := sqldb.Defer(ctx, q, `INSERT INTO items (id, owner) VALUES (1, 'again')`); err != nil {
				return err
			}
			_, err := q.Exec(ctx, `INSERT INTO items (id, owner) VALUES (3, 'after')`)
			return err
		})
		if !sqldb.IsUniqueViolation(err) {
			t.Fatalf("a deferred duplicate, then a statement: %v, want a unique violation", err)
		}

		// Failing at the commit, through Deferring.
		err = db.Tx(ctx, func(q sqldb.Querier) error {
			if _, err := q.Exec(ctx, `UPDATE counters SET n = 8 WHERE name = 'c'`); err != nil {
				return err
			}
			_, err := sqldb.Deferring(q).Exec(ctx, `INSERT INTO items (id, owner) VALUES (2, 'again')`)
			return err
		})
		if !sqldb.IsUniqueViolation(err) {
			t.Fatalf("a deferred duplicate at the commit: %v, want a unique violation", err)
		}
		if n := count(t, db, `SELECT n FROM counters WHERE name = 'c'`); n != 0 {
			t.Errorf("counter %d after two failed transactions, want 0", n)
		}
		if n := count(t, db, `SELECT count(*) FROM items`); n != 2 {
			t.Errorf("%d items, want 2", n)
		}
		// The connection is clean for the next transaction.
		if err := db.Tx(ctx, func(q sqldb.Querier) error {
			return sqldb.Defer(ctx, q, `INSERT INTO items (id, owner) VALUES (4, 'later')`)
		}); err != nil {
			t.Fatal(err)
		}
		if n := count(t, db, `SELECT count(*) FROM items`); n != 3 {
			t.Errorf("%d items, want 3", n)
		}
	})
}

// A statement's error that fn swallows still fails the transaction on
// PostgreSQL, which answers its COMMIT with ROLLBACK: nothing commits.
func TestSwallowedErrorRollsBack(t *testing.T) {
	db, _ := sqldbtest.TracedPostgres(t)
	migrated(t, db)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO items (id, owner) VALUES (1, 'first')`); err != nil {
		t.Fatal(err)
	}
	err := db.Tx(ctx, func(q sqldb.Querier) error {
		if _, err := q.Exec(ctx, `UPDATE counters SET n = 9 WHERE name = 'c'`); err != nil {
			return err
		}
		_, _ = q.Exec(ctx, `INSERT INTO items (id, owner) VALUES (1, 'again')`)
		return nil
	})
	if err == nil {
		t.Fatal("a transaction whose statement failed committed")
	}
	if n := count(t, db, `SELECT n FROM counters WHERE name = 'c'`); n != 0 {
		t.Errorf("counter %d, want 0", n)
	}
}

// Two transactions whose deferred writes, sent with their COMMITs,
// deadlock: PostgreSQL refuses one, which did not commit, and it runs
// again as any transaction lost to another; both end applied once.
func TestDeadlockAtCommitRunsAgain(t *testing.T) {
	db := sqldbtest.Postgres(t)
	migrated(t, db)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO counters (name, n) VALUES ('d', 0)`); err != nil {
		t.Fatal(err)
	}
	var both sync.WaitGroup
	both.Add(2)
	var runs atomic.Int64
	tx := func(first, second string) error {
		var once sync.Once
		return db.Tx(ctx, func(q sqldb.Querier) error {
			runs.Add(1)
			if _, err := q.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE name = $1`, first); err != nil {
				return err
			}
			once.Do(func() { both.Done(); both.Wait() }) // both hold their first row
			return sqldb.Defer(ctx, q, `UPDATE counters SET n = n + 1 WHERE name = $1`, second)
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- tx("c", "d") }()
	go func() { errs <- tx("d", "c") }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("transaction: %v", err)
		}
	}
	if r := runs.Load(); r != 3 {
		t.Errorf("fn ran %d times, want 3 (one transaction run again)", r)
	}
	for _, name := range []string{"c", "d"} {
		if n := count(t, db, `SELECT n FROM counters WHERE name = $1`, name); n != 2 {
			t.Errorf("counter %s = %d, want 2", name, n)
		}
	}
}

// A statement outside a transaction that PostgreSQL picks as a deadlock's
// victim did nothing, and runs again: a transaction holds row c and waits
// for row d, which the statement holds while it waits for c. The
// statement's own deadlock_timeout is the shorter, so it is the one
// rolled back (without running it again, Exec returns 40P01). So does a
// statement of Autocommit.
func TestStatementThatLosesADeadlockRunsAgain(t *testing.T) {
	t.Run("exec", func(t *testing.T) {
		statementLosesADeadlock(t, func(ctx context.Context, db sqldb.DB, q string) error {
			_, err := db.Exec(ctx, q)
			return err
		})
	})
	t.Run("autocommit", func(t *testing.T) {
		statementLosesADeadlock(t, func(ctx context.Context, db sqldb.DB, q string) error {
			return sqldb.Autocommit(ctx, db, func(tx sqldb.Querier) error {
				_, err := tx.Exec(ctx, q)
				return err
			})
		})
	})
}

func statementLosesADeadlock(t *testing.T, exec func(ctx context.Context, db sqldb.DB, q string) error) {
	db := sqldbtest.Postgres(t)
	migrated(t, db)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO counters (name, n) VALUES ('d', 0)`); err != nil {
		t.Fatal(err)
	}
	stmt := make(chan error, 1)
	var runs atomic.Int64
	err := db.Tx(ctx, func(q sqldb.Querier) error {
		if runs.Add(1) > 1 {
			return nil // the transaction was the victim: nothing to show
		}
		var pid int64
		if err := q.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `SET LOCAL deadlock_timeout = '30s'`); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE name = 'c'`); err != nil {
			return err
		}
		// The statement takes d; the first time (c not yet committed by
		// this transaction), it waits until this transaction waits on d,
		// then goes for c.
		go func() {
			err := exec(ctx, db, fmt.Sprintf(`DO $$
BEGIN
	PERFORM set_config('deadlock_timeout', '20ms', true);
	UPDATE counters SET n = n + 1 WHERE name = 'd';
	IF (SELECT n FROM counters WHERE name = 'c') = 0 THEN
		FOR i IN 1..3000 LOOP -- at most 30 s, should the test fail
			EXIT WHEN EXISTS (SELECT 1 FROM pg_locks WHERE pid = %d AND NOT granted);
			PERFORM pg_sleep(0.01);
		END LOOP;
	END IF;
	UPDATE counters SET n = n + 1 WHERE name = 'c';
END $$`, pid))
			stmt <- err
		}()
		// Once the statement holds d and sleeps in its loop, take d.
		for {
			// Activity is read once a transaction unless cleared.
			if _, err := q.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
				return err
			}
			var holds bool
			if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
				WHERE wait_event = 'PgSleep' AND query LIKE $1)`, fmt.Sprintf("%%WHERE pid = %d AND NOT granted)%%", pid)).Scan(&holds); err != nil {
				return err
			}
			if holds {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		_, err := q.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE name = 'd'`)
		return err
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if err := <-stmt; err != nil {
		t.Fatalf("statement: %v", err)
	}
	if r := runs.Load(); r != 1 {
		t.Fatalf("the transaction ran %d times: it, not the statement, lost the deadlock", r)
	}
	for _, name := range []string{"c", "d"} {
		if n := count(t, db, `SELECT n FROM counters WHERE name = $1`, name); n != 2 {
			t.Errorf("counter %s = %d, want 2 (each applied once)", name, n)
		}
	}
}
