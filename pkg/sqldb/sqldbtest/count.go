package sqldbtest

import (
	"context"

	"github.com/eva-org/eva/pkg/sqldb"
)

// StatementCounter is a database that counts, in N, the statements run in
// its transactions, for tests that hold a store to a number of
// statements. Its Querier hides the drivers' own paths (COPY and
// pipelines on PostgreSQL, anonymous parameters on SQLite): the
// statements are the same, sent the plain way, one by one. It is not for
// concurrent transactions.
type StatementCounter struct {
	sqldb.DB
	N int
}

// Tx runs fn in a transaction of the database whose statements are
// counted.
func (c *StatementCounter) Tx(ctx context.Context, fn func(q sqldb.Querier) error) error {
	return c.DB.Tx(ctx, func(q sqldb.Querier) error { return fn(countingQuerier{q: q, n: &c.N}) })
}

type countingQuerier struct {
	q sqldb.Querier
	n *int
}

func (c countingQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	*c.n++
	return c.q.Exec(ctx, query, args...)
}

func (c countingQuerier) Query(ctx context.Context, query string, args ...any) (sqldb.Rows, error) {
	*c.n++
	return c.q.Query(ctx, query, args...)
}

func (c countingQuerier) QueryRow(ctx context.Context, query string, args ...any) sqldb.Row {
	*c.n++
	return c.q.QueryRow(ctx, query, args...)
}
