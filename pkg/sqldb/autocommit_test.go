package sqldb_test

import (
	"context"
	"errors"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// A write whose rows are read back commits on its own, on both stores:
// the row written is returned and stays; a write that writes nothing
// returns no row; a second statement is refused.
func TestAutocommitWritesOneStatement(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		migrated(t, db)
		ctx := context.Background()
		insert := func(id int64, owner string) (string, error) {
			var got string
			err := sqldb.Autocommit(ctx, db, func(q sqldb.Querier) error {
				return q.QueryRow(ctx, `INSERT INTO items (id, owner) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING owner`,
					id, owner).Scan(&got)
			})
			return got, err
		}
		if got, err := insert(1, "first"); err != nil || got != "first" {
			t.Fatalf("insert: %q, %v", got, err)
		}
		if got, err := insert(1, "again"); !errors.Is(err, sqldb.ErrNoRows) {
			t.Fatalf("insert of a key there: %q, %v; want no row", got, err)
		}
		var owners []string
		err := sqldb.Autocommit(ctx, db, func(q sqldb.Querier) error {
			owners = nil // fn may run again
			rows, err := q.Query(ctx, `UPDATE items SET owner = owner || '!' RETURNING owner`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var o string
				if err := rows.Scan(&o); err != nil {
					return err
				}
				owners = append(owners, o)
			}
			return rows.Err()
		})
		if err != nil || len(owners) != 1 || owners[0] != "first!" {
			t.Fatalf("update: %q, %v", owners, err)
		}
		if n := count(t, db, `SELECT count(*) FROM items WHERE owner = 'first!'`); n != 1 {
			t.Errorf("%d rows updated after the update, want 1", n)
		}
		err = sqldb.Autocommit(ctx, db, func(q sqldb.Querier) error {
			if _, err := q.Exec(ctx, `UPDATE counters SET n = 1 WHERE name = 'c'`); err != nil {
				return err
			}
			_, err := q.Exec(ctx, `UPDATE counters SET n = 2 WHERE name = 'c'`)
			return err
		})
		if err == nil {
			t.Fatal("Autocommit ran a second statement")
		}
		if n := count(t, db, `SELECT n FROM counters WHERE name = 'c'`); n == 2 {
			t.Errorf("the second statement ran")
		}
	})
}

// On PostgreSQL a statement run by Autocommit costs one round trip; the
// same statement in a Tx costs two (the BEGIN with it, then the COMMIT).
func TestAutocommitIsOneRoundTrip(t *testing.T) {
	db, trips := sqldbtest.TracedPostgres(t)
	migrated(t, db)
	ctx := context.Background()
	update := func(q sqldb.Querier) error {
		var n int64
		return q.QueryRow(ctx, `UPDATE counters SET n = n + 1 WHERE name = 'c' RETURNING n`).Scan(&n)
	}
	if err := sqldb.Autocommit(ctx, db, update); err != nil { // prepares the statement
		t.Fatal(err)
	}
	trips.Reset()
	if err := sqldb.Autocommit(ctx, db, update); err != nil {
		t.Fatal(err)
	}
	if got := trips.N(); got != 1 {
		t.Errorf("Autocommit took %d round trips, want 1", got)
	}
	trips.Reset()
	if err := db.Tx(ctx, update); err != nil {
		t.Fatal(err)
	}
	if got := trips.N(); got != 2 {
		t.Errorf("the same statement in a Tx took %d round trips, want 2", got)
	}
	if n := count(t, db, `SELECT n FROM counters WHERE name = 'c'`); n != 3 {
		t.Errorf("counter %d, want 3", n)
	}
}
