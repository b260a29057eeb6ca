package sqldb_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// BulkWrite writes the rows with the tables' secondary indexes
// dropped (on the embedded store) and leaves the same indexes, by the same
// SQL, the writer's page cache as it was, and the rows as written; a failure inside rolls the drop back with
// the rest; on PostgreSQL the indexes stay throughout.
func TestBulkWrite(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := t.Context()
		for _, s := range []string{
			`CREATE TABLE idx_t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, s TEXT NOT NULL)`,
			`CREATE INDEX idx_t_n ON idx_t (n DESC, id)`,
			`CREATE INDEX idx_t_s ON idx_t (s) WHERE n > 10`,
			`CREATE TABLE idx_other (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`,
			`CREATE INDEX idx_other_n ON idx_other (n)`,
		} {
			if _, err := db.Exec(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		indexes := func(q sqldb.Querier) []string {
			query := `SELECT name || ' ' || sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name`
			if db.Dialect() == sqldb.Postgres {
				query = `SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE tablename IN ('idx_t', 'idx_other') ORDER BY indexname`
			}
			out, err := sqldb.Strings(ctx, q, query)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		before := indexes(db)
		cacheSize := func() (n int64) {
			t.Helper()
			if db.Dialect() != sqldb.SQLite {
				return 0
			}
			if err := db.Tx(ctx, func(q sqldb.Querier) error { return q.QueryRow(ctx, `PRAGMA cache_size`).Scan(&n) }); err != nil {
				t.Fatal(err)
			}
			return n
		}
		cache := cacheSize()
		if len(before) < 3 {
			t.Fatalf("indexes: %q", before)
		}
		var inside []string
		err := db.Tx(ctx, func(q sqldb.Querier) error {
			return sqldb.BulkWrite(ctx, db, q, []string{"idx_t"}, func() error {
				inside = indexes(q)
				var rows [][]any
				for i := range 500 {
					rows = append(rows, []any{fmt.Sprintf("id-%03d", i), int64(i), fmt.Sprint(i % 7)})
				}
				return sqldb.InsertRows(ctx, q, `INSERT INTO idx_t (id, n, s)`, "", rows)
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if after := indexes(db); !slices.Equal(after, before) {
			t.Fatalf("indexes after: %q, before: %q", after, before)
		}
		if c := cacheSize(); c != cache {
			t.Fatalf("the writer's cache_size is %d after a bulk write, %d before", c, cache)
		}
		want := before
		if db.Dialect() == sqldb.SQLite {
			want = slices.DeleteFunc(slices.Clone(before), func(s string) bool { return s[:6] == "idx_t_" })
		}
		if !slices.Equal(inside, want) {
			t.Fatalf("indexes while writing: %q, want %q", inside, want)
		}
		var n int64
		if err := db.QueryRow(ctx, `SELECT count(*) FROM idx_t WHERE n > 10 AND s = '3'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 69 { // 17, 24, ... 493
			t.Fatalf("rows through the partial index: %d", n)
		}
		// A failure inside: the rows and the drop are rolled back.
		boom := errors.New("boom")
		err = db.Tx(ctx, func(q sqldb.Querier) error {
			return sqldb.BulkWrite(ctx, db, q, []string{"idx_t", "idx_other"}, func() error {
				if _, err := q.Exec(ctx, `DELETE FROM idx_t`); err != nil {
					return err
				}
				return boom
			})
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if after := indexes(db); !slices.Equal(after, before) {
			t.Fatalf("indexes after a rollback: %q, before: %q", after, before)
		}
		if err := db.QueryRow(ctx, `SELECT count(*) FROM idx_t`).Scan(&n); err != nil || n != 500 {
			t.Fatalf("rows after a rollback: %d %v", n, err)
		}
	})
}
