package sqldb_test

import (
	"fmt"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// InsertRows writes every row, in statements of 256, 128, ... rows, and
// its ON CONFLICT tail updates rows already there; rows of different
// lengths are refused before anything is written.
func TestInsertRows(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := t.Context()
		if _, err := db.Exec(ctx, `CREATE TABLE rows_t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, s TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		const head, tail = `INSERT INTO rows_t (id, n, s)`, `ON CONFLICT (id) DO UPDATE SET n = excluded.n, s = excluded.s`
		rows := func(from, to int, s string) [][]any {
			var out [][]any
			for i := from; i < to; i++ {
				out = append(out, []any{fmt.Sprintf("id-%04d", i), int64(i), s})
			}
			return out
		}
		for _, n := range []int{0, 1, 300} {
			err := db.Tx(ctx, func(q sqldb.Querier) error { return sqldb.InsertRows(ctx, q, head, tail, rows(0, n, "first")) })
			if err != nil {
				t.Fatalf("%d rows: %v", n, err)
			}
		}
		// 200 of them again and 411 new: updated and inserted.
		if err := db.Tx(ctx, func(q sqldb.Querier) error { return sqldb.InsertRows(ctx, q, head, tail, rows(100, 711, "second")) }); err != nil {
			t.Fatal(err)
		}
		var total, sum, second int64
		if err := db.QueryRow(ctx, `SELECT count(*), sum(n) FROM rows_t`).Scan(&total, &sum); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, `SELECT count(*) FROM rows_t WHERE s = 'second'`).Scan(&second); err != nil {
			t.Fatal(err)
		}
		if total != 711 || sum != 710*711/2 || second != 611 {
			t.Fatalf("got %d rows (sum %d), %d updated; want 711 (sum %d), 611", total, sum, second, 710*711/2)
		}
		bad := append(rows(1000, 1002, "bad"), []any{"id-short", int64(1)})
		if err := db.Tx(ctx, func(q sqldb.Querier) error { return sqldb.InsertRows(ctx, q, head, tail, bad) }); err == nil {
			t.Fatal("rows of different lengths were taken")
		}
		if err := db.QueryRow(ctx, `SELECT count(*) FROM rows_t`).Scan(&total); err != nil || total != 711 {
			t.Fatalf("after the refused rows: %d rows, %v; want 711", total, err)
		}
	})
}
