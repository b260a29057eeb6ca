package sqldb_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

var testMigrations = sqldb.Migrations{
	Name: "sqldbtest",
	Postgres: fstest.MapFS{"00001_init.sql": {Data: []byte(`-- +goose Up
CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE items (id BIGINT PRIMARY KEY, owner TEXT NOT NULL);
`)}},
	SQLite: fstest.MapFS{"00001_init.sql": {Data: []byte(`-- +goose Up
CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, owner TEXT NOT NULL);
`)}},
}

func migrated(t *testing.T, db sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	if err := db.Migrate(ctx, testMigrations); err != nil {
		t.Fatal(err)
	}
	// Applying again changes nothing.
	if err := db.Migrate(ctx, testMigrations); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO counters (name, n) VALUES ('c', 0)`); err != nil {
		t.Fatal(err)
	}
}

// Concurrent transactions each see a consistent state and none is lost,
// while a failing one in the same group leaves no trace.
func TestTxAtomicUnderConcurrency(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		migrated(t, db)
		ctx := context.Background()
		const workers, each = 16, 25
		var wg sync.WaitGroup
		errBoom := errors.New("boom")
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					id := int64(w*1000 + i)
					err := db.Tx(ctx, func(q sqldb.Querier) error {
						if _, err := q.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE name = 'c'`); err != nil {
							return err
						}
						if _, err := q.Exec(ctx, `INSERT INTO items (id, owner) VALUES ($1, $2)`, id, "w"); err != nil {
							return err
						}
						if i%5 == 0 {
							return errBoom // must undo both writes above
						}
						return nil
					})
					if i%5 == 0 && !errors.Is(err, errBoom) {
						t.Errorf("tx %d: got %v, want boom", id, err)
					} else if i%5 != 0 && err != nil {
						t.Errorf("tx %d: %v", id, err)
					}
				}
			}()
		}
		wg.Wait()
		var n, items int64
		if err := db.QueryRow(ctx, `SELECT n FROM counters WHERE name = 'c'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&items); err != nil {
			t.Fatal(err)
		}
		want := int64(workers * each * 4 / 5)
		if n != want || items != want {
			t.Fatalf("counter %d, items %d, want both %d", n, items, want)
		}
	})
}

func TestUniqueViolationAndNoRows(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		migrated(t, db)
		ctx := context.Background()
		if _, err := db.Exec(ctx, `INSERT INTO items (id, owner) VALUES ($1, $2)`, 1, "a"); err != nil {
			t.Fatal(err)
		}
		_, err := db.Exec(ctx, `INSERT INTO items (id, owner) VALUES ($1, $2)`, 1, "b")
		if !sqldb.IsUniqueViolation(err) {
			t.Fatalf("duplicate insert: %v, want a unique violation", err)
		}
		var owner string
		if err := db.QueryRow(ctx, `SELECT owner FROM items WHERE id = $1`, 2).Scan(&owner); !errors.Is(err, sqldb.ErrNoRows) {
			t.Fatalf("missing row: %v, want ErrNoRows", err)
		}
		// Parameters bind by number, not by position of first use.
		var got string
		if err := db.QueryRow(ctx, `SELECT owner FROM items WHERE owner = $2 AND id = $1`, 1, "a").Scan(&got); err != nil || got != "a" {
			t.Fatalf("numbered parameters: %q, %v", got, err)
		}
	})
}

// A data directory whose name holds a URI's special characters ('#', '?',
// '%') opens the file at exactly that path, with its pragmas: unescaped,
// "#" would end the path and drop synchronous=FULL without a word.
func TestSQLiteOpensAPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "eva#2?x=1%41")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "eva.db")
	db, err := sqldb.OpenSQLite(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Tx(t.Context(), func(q sqldb.Querier) error {
		_, err := q.Exec(t.Context(), `CREATE TABLE t (x INTEGER)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not at the path given: %v", err)
	}
	var sync int64
	if err := db.QueryRow(t.Context(), `PRAGMA synchronous`).Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if sync != 2 {
		t.Fatalf("synchronous = %d, want 2 (FULL)", sync)
	}
}
