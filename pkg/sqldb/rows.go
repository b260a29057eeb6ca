package sqldb

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// maxRowsPerStatement bounds the rows InsertRows puts in one statement:
// 256 rows of a dozen columns stay far below both drivers' limits on
// bound parameters (65,535 in PostgreSQL, 32,766 in SQLite).
const maxRowsPerStatement = 256

// InsertRows runs `head VALUES (...), (...) tail` for rows, each row a
// tuple of the same number of values, many rows a statement: one round
// trip and one statement run for up to 256 rows instead of one each
// (about 100 bound values a statement on the embedded driver).
// head is "INSERT INTO t (cols)"; tail is empty or "ON CONFLICT ...". The
// statements have 256, 128, ... 1 rows, so that a few shapes of
// statement are prepared and cached, whatever the number of rows. Rows
// given to an ON CONFLICT DO UPDATE tail must have distinct keys
// (PostgreSQL refuses to update a row twice in one statement).
//
// Errors: rows of different lengths; those of q.Exec.
func InsertRows(ctx context.Context, q Querier, head, tail string, rows [][]any) error {
	most := maxRowsPerStatement
	if l, ok := q.(paramLimiter); ok && len(rows) > 0 {
		most = max(1, l.maxParams()/len(rows[0]))
	}
	return insertRows(ctx, q, head, tail, rows, most)
}

// paramLimiter is a Querier whose statements are best kept to a few bound
// parameters: the embedded driver looks each parameter's name up in a
// list (modernc.org/sqlite's bind), so a statement's cost grows with the
// square of its parameters; about a hundred is its sweet spot
// (BenchmarkInsertRows).
type paramLimiter interface{ maxParams() int }

func (liteTx) maxParams() int { return 100 }

func insertRows(ctx context.Context, q Querier, head, tail string, rows [][]any, most int) error {
	for i, r := range rows {
		if len(r) != len(rows[0]) {
			return fmt.Errorf("insert rows: row %d has %d values, row 0 has %d", i, len(r), len(rows[0]))
		}
	}
	for len(rows) > 0 {
		n := most
		for n > len(rows) {
			n /= 2
		}
		if _, err := q.Exec(ctx, valuesStatement(head, tail, len(rows[0]), n), flatten(rows[:n])...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// valuesStatement is head VALUES ($1, ... $cols), ... (n tuples) tail.
func valuesStatement(head, tail string, cols, n int) string {
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
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p))
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
