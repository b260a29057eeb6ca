package sqldb

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxRowsPerStatement bounds the rows InsertRows puts in one statement:
// 256 rows of a dozen columns stay far below both drivers' limits on
// bound parameters (65,535 in PostgreSQL, 32,766 in SQLite).
const maxRowsPerStatement = 256

// InsertRows runs `head VALUES (...), (...) tail` for rows, each row a
// tuple of the same number of values, many rows a statement: one round
// trip and one statement run for up to 256 rows instead of one each.
// head is "INSERT INTO t (cols)"; tail is empty or "ON CONFLICT ..." (with
// no parameter of its own). The statements have 256, 128, ... 1 rows, so
// that a few shapes of statement are prepared and cached, whatever the
// number of rows. Rows given to an ON CONFLICT DO UPDATE tail must have
// distinct keys (PostgreSQL refuses to update a row twice in one
// statement).
//
// Errors: rows of different lengths; those of q.Exec.
func InsertRows(ctx context.Context, q Querier, head, tail string, rows [][]any) error {
	return insertRows(ctx, q, head, tail, rows, maxRowsPerStatement)
}

// CopyRows writes rows into the columns cols of table (an unqualified
// name, found on the search path) as InsertRows(ctx, q, "INSERT INTO
// table (cols)", tail, rows) does (tail the same ON CONFLICT clause): the
// same rows, inserted or updated. In a transaction
// of PostgreSQL, 256 rows or more are copied (COPY, binary) into a
// temporary table of those columns, made for the transaction, and
// written from it by one INSERT ... SELECT with tail: a rebuild's 1,024
// rows cost the client one COPY instead of four statements of 2,816
// parameters each, and the server one statement to plan. Elsewhere, and
// for fewer rows, it is InsertRows.
//
// Errors: rows of different lengths; those of the statements.
func CopyRows(ctx context.Context, q Querier, table string, cols []string, tail string, rows [][]any) error {
	c, ok := q.(rowCopier)
	if !ok || len(rows) < copyMinRows {
		return InsertRows(ctx, q, "INSERT INTO "+table+" ("+strings.Join(cols, ", ")+")", tail, rows)
	}
	for i, r := range rows {
		if len(r) != len(cols) {
			return fmt.Errorf("copy rows: row %d has %d values for %d columns", i, len(r), len(cols))
		}
	}
	return c.copyRows(ctx, table, cols, tail, rows)
}

// copyMinRows is the fewest rows CopyRows copies: one full statement of
// InsertRows. For fewer, the temporary table (made in the transaction,
// in the catalog) and the extra statements cost more than they save, and
// a live consumer's batch (128 events at most by default), which writes
// its cases with the same ProjectAll as a rebuild, never makes one.
const copyMinRows = maxRowsPerStatement

// UpsertRows writes rows, each a value for each of cols, into table:
// a row whose key (the column cols[0]) is new is inserted; an existing
// one gets the values of the columns in set and in seldom, as CopyRows
// with "ON CONFLICT (key) DO UPDATE SET" all of them does.
//
// seldom are columns that an index holds and few writes change (a case's
// category, once filed). SQLite rewrites the index entry of every column
// an UPDATE names, changed or not: each row's entry in an index of
// random order (a reference hash) is a page the commit writes, most
// often the same bytes again. PostgreSQL compares the values (a HOT
// update), so there the one statement stays. In a transaction of SQLite,
// the upsert sets only set, and a second statement sets seldom on the
// rows where one of them differs. Outside a transaction it is the one
// statement, so that no one sees half a row.
//
// Errors: a seldom column not in cols; those of CopyRows and the update.
func UpsertRows(ctx context.Context, q Querier, table string, cols, set, seldom []string, rows [][]any) error {
	key := cols[0]
	all := append(slices.Clip(set), seldom...)
	if _, inTx := q.(anonymousParams); !inTx || len(seldom) == 0 {
		return CopyRows(ctx, q, table, cols, onConflictSet(key, all), rows)
	}
	at := make([]int, 0, 1+len(seldom))
	for _, c := range append([]string{key}, seldom...) {
		i := slices.Index(cols, c)
		if i < 0 {
			return fmt.Errorf("upsert rows: seldom column %s is not one of %s", c, strings.Join(cols, ", "))
		}
		at = append(at, i)
	}
	if err := CopyRows(ctx, q, table, cols, onConflictSet(key, set), rows); err != nil {
		return err
	}
	changed := make([][]any, len(rows))
	for i, r := range rows {
		changed[i] = make([]any, len(at))
		for j, k := range at {
			changed[i][j] = r[k]
		}
	}
	sets, differs := make([]string, len(seldom)), make([]string, len(seldom))
	for i, c := range seldom {
		sets[i] = c + " = v." + c
		differs[i] = table + "." + c + " IS DISTINCT FROM v." + c
	}
	head := "WITH v (" + key + ", " + strings.Join(seldom, ", ") + ") AS ("
	tail := ") UPDATE " + table + " SET " + strings.Join(sets, ", ") + " FROM v WHERE " + table + "." + key + " = v." + key +
		" AND (" + strings.Join(differs, " OR ") + ")"
	return insertRows(ctx, q, head, tail, changed, maxRowsPerStatement)
}

// onConflictSet is "ON CONFLICT (key) DO UPDATE SET c = excluded.c, ...".
func onConflictSet(key string, cols []string) string {
	sets := make([]string, len(cols))
	for i, c := range cols {
		sets[i] = c + " = excluded." + c
	}
	return "ON CONFLICT (" + key + ") DO UPDATE SET " + strings.Join(sets, ", ")
}

// rowCopier is a Querier that can copy rows (PostgreSQL's transaction).
type rowCopier interface {
	copyRows(ctx context.Context, table string, cols []string, tail string, rows [][]any) error
}

// anonymousParams is a Querier of the embedded driver, which binds a
// numbered parameter ($1) by looking its name up in a list of every
// parameter of the statement (modernc.org/sqlite's bind): a statement's
// cost then grows with the square of its parameters (at 256 rows, 40 % of
// a replay's CPU). An anonymous parameter (?) has no name to look up, so
// InsertRows writes those there.
type anonymousParams interface{ anonymousParams() }

func (liteTx) anonymousParams() {}

func insertRows(ctx context.Context, q Querier, head, tail string, rows [][]any, most int) error {
	for i, r := range rows {
		if len(r) != len(rows[0]) {
			return fmt.Errorf("insert rows: row %d has %d values, row 0 has %d", i, len(r), len(rows[0]))
		}
	}
	_, anonymous := q.(anonymousParams)
	for len(rows) > 0 {
		n := most
		for n > len(rows) {
			n /= 2
		}
		if _, err := q.Exec(ctx, valuesStatement(head, tail, len(rows[0]), n, anonymous), flatten(rows[:n])...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// valuesStatement is head VALUES ($1, ... $cols), ... (n tuples) tail, or
// with every parameter ? when anonymous.
func valuesStatement(head, tail string, cols, n int, anonymous bool) string {
	var b strings.Builder
	b.Grow(len(head) + len(tail) + n*cols*6 + 8)
	b.WriteString(head)
	b.WriteString(" VALUES ")
	p := 1
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range cols {
			if j > 0 {
				b.WriteString(", ")
			}
			if anonymous {
				b.WriteByte('?')
			} else {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(p))
			}
			p++
		}
		b.WriteByte(')')
	}
	if tail != "" {
		b.WriteByte(' ')
		b.WriteString(tail)
	}
	return b.String()
}

func flatten(rows [][]any) []any {
	out := make([]any, 0, len(rows)*len(rows[0]))
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}
