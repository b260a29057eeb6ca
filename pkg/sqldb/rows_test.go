package sqldb_test

import (
	"fmt"
	"strings"
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

// CopyRows leaves a table as InsertRows leaves another: the same rows
// written in the same transactions, a few (InsertRows itself) and many
// (on PostgreSQL, copied), new and updated, twice in one transaction
// (the temporary table emptied between), with a value of every kind the
// read models write; rows of the wrong length are refused.
func TestCopyRows(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := t.Context()
		for _, table := range []string{"by_insert", "by_copy"} {
			if _, err := db.Exec(ctx, `CREATE TABLE `+table+` (id TEXT PRIMARY KEY, n BIGINT NOT NULL, s TEXT NOT NULL,
				other TEXT NOT NULL DEFAULT 'kept')`); err != nil {
				t.Fatal(err)
			}
		}
		cols := []string{"id", "n", "s"}
		tail := `ON CONFLICT (id) DO UPDATE SET n = excluded.n, s = excluded.s`
		rows := func(from, to int, s string) [][]any {
			var out [][]any
			for i := from; i < to; i++ {
				out = append(out, []any{fmt.Sprintf("id-%04d", i), int64(i) - 500, fmt.Sprintf("%s %d é\"\\\n\x01 <&>", s, i)})
			}
			return out
		}
		for _, batches := range [][][][]any{
			{rows(0, 1, "one")}, {rows(1, 16, "fifteen")}, {rows(16, 32, "sixteen")}, {rows(32, 332, "many")},
			{rows(100, 711, "again"), rows(700, 1000, "and again")}, {rows(5, 6, "one again"), rows(0, 40, "forty")},
		} {
			err := db.Tx(ctx, func(q sqldb.Querier) error {
				for _, b := range batches {
					if err := sqldb.InsertRows(ctx, q, `INSERT INTO by_insert (id, n, s)`, tail, b); err != nil {
						return err
					}
					if err := sqldb.CopyRows(ctx, q, "by_copy", cols, tail, b); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		read := func(table string) []string {
			rs, err := db.Query(ctx, `SELECT id, n, s, other FROM `+table+` ORDER BY id`)
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			var out []string
			for rs.Next() {
				var id, s, other string
				var n int64
				if err := rs.Scan(&id, &n, &s, &other); err != nil {
					t.Fatal(err)
				}
				out = append(out, fmt.Sprintf("%s|%d|%q|%s", id, n, s, other))
			}
			if err := rs.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		}
		want, got := read("by_insert"), read("by_copy")
		if len(want) != 1000 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("copied: %d rows, inserted: %d rows; first differences:\n%v\n%v", len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
		}
		bad := append(rows(2000, 2020, "bad"), []any{"id-short", int64(1)})
		if err := db.Tx(ctx, func(q sqldb.Querier) error { return sqldb.CopyRows(ctx, q, "by_copy", cols, tail, bad) }); err == nil {
			t.Fatal("rows of different lengths were taken")
		}
		if got := read("by_copy"); len(got) != 1000 {
			t.Fatalf("after the refused rows: %d rows; want 1000", len(got))
		}
	})
}

// UpsertRows inserts new rows and updates existing ones, their seldom
// columns too where they changed (a NULL among them), in batches of one,
// some and more than a statement holds. On SQLite it names a seldom
// column in an UPDATE only for a row where it changed: a trigger "AFTER
// UPDATE OF" those columns, which fires for every row of an UPDATE that
// names one of them, as SQLite rewrites the index entries of those
// columns, counts the rows.
func TestUpsertRows(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := t.Context()
		lite := db.Dialect() == sqldb.SQLite
		stmts := []string{`CREATE TABLE upserted (id TEXT PRIMARY KEY, n BIGINT NOT NULL, ref TEXT, cat TEXT NOT NULL, made BIGINT NOT NULL)`,
			`CREATE INDEX upserted_ref ON upserted (ref, cat)`}
		if lite {
			stmts = append(stmts, `CREATE TABLE seldom_named (n BIGINT NOT NULL)`, `INSERT INTO seldom_named VALUES (0)`,
				`CREATE TRIGGER upserted_seldom AFTER UPDATE OF ref, cat ON upserted BEGIN UPDATE seldom_named SET n = n + 1; END`)
		}
		for _, stmt := range stmts {
			if _, err := db.Exec(ctx, stmt); err != nil {
				t.Fatal(err)
			}
		}
		type row struct {
			n, made int64
			ref     *string
			cat     string
		}
		want := map[string]row{}
		rows := func(from, to int, n int64, ref func(i int) *string, cat string) [][]any {
			var out [][]any
			for i := from; i < to; i++ {
				id, r := fmt.Sprintf("id-%04d", i), ref(i)
				out = append(out, []any{id, n, r, cat, n})
				made := n // made is not set again: it keeps the first write's n
				if old, ok := want[id]; ok {
					made = old.made
				}
				want[id] = row{n: n, made: made, ref: r, cat: cat}
			}
			return out
		}
		cols, set, seldom := []string{"id", "n", "ref", "cat", "made"}, []string{"n"}, []string{"ref", "cat"}
		upsert := func(rows [][]any) {
			t.Helper()
			if err := db.Tx(ctx, func(q sqldb.Querier) error { return sqldb.UpsertRows(ctx, q, "upserted", cols, set, seldom, rows) }); err != nil {
				t.Fatal(err)
			}
		}
		named := func() int64 {
			t.Helper()
			var n int64
			if err := db.QueryRow(ctx, `SELECT n FROM seldom_named`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		same := func(i int) *string { r := fmt.Sprintf("ref-%d", i); return &r }
		amended := func(i int) *string { r := fmt.Sprintf("ref-%d-amended", i); return &r }
		erased := func(int) *string { return nil }

		upsert(rows(0, 300, 1, same, "shelter")) // new rows, more than a statement holds
		upsert(rows(0, 300, 2, same, "shelter")) // the same seldom columns
		upsert(rows(5, 6, 3, same, "shelter"))   // one row
		if lite && named() != 0 {
			t.Fatalf("rows whose seldom columns did not change had them named in an update %d times", named())
		}
		upsert(rows(10, 13, 4, amended, "shelter"))
		upsert(rows(13, 15, 5, same, "medical"))
		upsert(rows(15, 16, 6, erased, "shelter"))
		upsert(append(rows(16, 17, 7, erased, "shelter"), rows(17, 20, 7, same, "shelter")...))
		upsert(rows(15, 16, 8, erased, "shelter")) // NULL again: not a change
		if lite && named() != 7 {
			t.Fatalf("seldom columns named in an update for %d rows; want the 7 that changed", named())
		}

		rs, err := db.Query(ctx, `SELECT id, n, ref, cat, made FROM upserted`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		got := map[string]row{}
		for rs.Next() {
			var (
				id string
				r  row
			)
			if err := rs.Scan(&id, &r.n, &r.ref, &r.cat, &r.made); err != nil {
				t.Fatal(err)
			}
			got[id] = r
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		show := func(r row) string {
			ref := "NULL"
			if r.ref != nil {
				ref = *r.ref
			}
			return fmt.Sprintf("n=%d made=%d ref=%s cat=%s", r.n, r.made, ref, r.cat)
		}
		for id, w := range want {
			if show(got[id]) != show(w) {
				t.Errorf("%s: %s, want %s", id, show(got[id]), show(w))
			}
		}
		if len(got) != len(want) {
			t.Errorf("%d rows, want %d", len(got), len(want))
		}
		err = db.Tx(ctx, func(q sqldb.Querier) error {
			return sqldb.UpsertRows(ctx, q, "upserted", cols, set, []string{"nope"}, rows(0, 1, 9, same, "shelter"))
		})
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("a seldom column not among the columns: %v, want an error naming it", err)
		}
	})
}

// Pad lengthens a list to a power of two with its last value, which an IN
// list (In) takes without a change in its answer.
func TestPadAndIn(t *testing.T) {
	for _, tc := range []struct{ n, want int }{{0, 0}, {1, 1}, {2, 2}, {3, 4}, {5, 8}, {8, 8}, {129, 256}} {
		vs := make([]any, tc.n)
		for i := range vs {
			vs[i] = i
		}
		got := sqldb.Pad(vs)
		if len(got) != tc.want || (tc.n > 0 && (got[tc.n-1] != tc.n-1 || got[len(got)-1] != tc.n-1)) {
			t.Fatalf("Pad of %d values = %v, want %d values ending in %d", tc.n, got, tc.want, tc.n-1)
		}
	}
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := t.Context()
		if _, err := db.Exec(ctx, `CREATE TABLE in_t (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO in_t (id) VALUES ('a'), ('b'), ('c'), ('d')`); err != nil {
			t.Fatal(err)
		}
		in, args := sqldb.In(1, []any{"a", "c", "x"})
		if in != "$1, $2, $3, $4" {
			t.Fatalf("In = %q, want four placeholders", in)
		}
		got, err := sqldb.Strings(ctx, db, `SELECT id FROM in_t WHERE id IN (`+in+`) ORDER BY id`, args...)
		if err != nil || fmt.Sprint(got) != "[a c]" {
			t.Fatalf("IN padded = %v, %v; want [a c]", got, err)
		}
		byID, err := sqldb.ByID(ctx, db, `SELECT id FROM in_t`, []string{"a", "x", "c"}, func(r sqldb.Row) (string, error) {
			var id string
			return id, r.Scan(&id)
		}, func(id string) string { return id })
		if err != nil || len(byID) != 2 || byID["a"] != "a" || byID["c"] != "c" {
			t.Fatalf("ByID = %v, %v; want a and c", byID, err)
		}
	})
}

// ByID looks ids up by the key on PostgreSQL at any size of the table:
// its statement for a batch of 128 ids, prepared and run on a new, empty
// table until the server keeps one plan for it, still uses the key's
// index once the table holds thousands of rows and was never analyzed
// (as in a new database's first minute). With an IN list, the kept plan
// scanned the whole table (this test failed: 1 scan, 0 index lookups).
func TestByIDUsesTheKeyAfterItsTableGrew(t *testing.T) {
	db := sqldbtest.Postgres(t)
	ctx := t.Context()
	err := db.Tx(ctx, func(q sqldb.Querier) error { // one connection: one prepared statement
		if _, err := q.Exec(ctx, `CREATE TABLE grown (id TEXT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
			return err
		}
		ids := make([]string, 128) // a consumer's batch, at most
		for i := range ids {
			ids[i] = fmt.Sprintf("id-%05d", i*37)
		}
		type row struct {
			id string
			n  int64
		}
		lookUp := func() (map[string]row, error) {
			return sqldb.ByID(ctx, q, `SELECT id, n FROM grown`, ids, func(r sqldb.Row) (row, error) {
				var v row
				return v, r.Scan(&v.id, &v.n)
			}, func(v row) string { return v.id })
		}
		for range 10 { // past the five custom plans before a generic one
			if got, err := lookUp(); err != nil || len(got) != 0 {
				return fmt.Errorf("ByID on the empty table = %v, %v", got, err)
			}
		}
		if _, err := q.Exec(ctx, `INSERT INTO grown SELECT 'id-' || lpad(g::text, 5, '0'), g FROM generate_series(0, 4999) g`); err != nil {
			return err
		}
		scans := func() (seq, idx int64, err error) {
			err = q.QueryRow(ctx, `SELECT seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_xact_user_tables
				WHERE relid = 'grown'::regclass`).Scan(&seq, &idx)
			return seq, idx, err
		}
		seq0, idx0, err := scans()
		if err != nil {
			return err
		}
		got, err := lookUp()
		if err != nil || len(got) != len(ids) || got["id-00037"].n != 37 {
			return fmt.Errorf("ByID after the inserts = %v, %v; want the 128 rows", got, err)
		}
		seq, idx, err := scans()
		if err != nil {
			return err
		}
		if seq != seq0 || idx == idx0 {
			return fmt.Errorf("ByID scanned the table %d times and its index %d times; want only the index", seq-seq0, idx-idx0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
