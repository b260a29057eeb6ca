package sqldbtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eva-org/eva/pkg/sqldb"
)

// StatementCounter is a database that counts, in N, the statements it
// runs, in its transactions or outside them, for tests that hold a store
// to a number of statements. Its Querier hides the drivers' own paths (COPY and
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

// Exec, Query and QueryRow run a statement outside a transaction, counted.
func (c *StatementCounter) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return countingQuerier{q: c.DB, n: &c.N}.Exec(ctx, query, args...)
}

func (c *StatementCounter) Query(ctx context.Context, query string, args ...any) (sqldb.Rows, error) {
	return countingQuerier{q: c.DB, n: &c.N}.Query(ctx, query, args...)
}

func (c *StatementCounter) QueryRow(ctx context.Context, query string, args ...any) sqldb.Row {
	return countingQuerier{q: c.DB, n: &c.N}.QueryRow(ctx, query, args...)
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

// RoundTrips counts what the pgx connections of a pool send: each
// statement sent on its own and each pipeline (batch) is one round trip.
type RoundTrips struct{ n atomic.Int64 }

// N is the round trips counted since the last Reset.
func (r *RoundTrips) N() int64 { return r.n.Load() }

// Reset starts the count again from zero.
func (r *RoundTrips) Reset() { r.n.Store(0) }

// Step runs step alone on the count and writes down its round trips as
// "what N", for SameSteps.
func (r *RoundTrips) Step(what string, step func()) string {
	r.Reset()
	step()
	return fmt.Sprintf("%s %d", what, r.N())
}

// SameSteps logs the round trips of a sequence of steps (RoundTrips.Step)
// and fails tb when they are not want.
func SameSteps(tb testing.TB, got, want []string) {
	tb.Helper()
	tb.Logf("round trips: %s", strings.Join(got, ", "))
	if !slices.Equal(got, want) {
		tb.Errorf("round trips:\n got %s\nwant %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (r *RoundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (r *RoundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer.
func (r *RoundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (r *RoundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd implements pgx.BatchTracer.
func (r *RoundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TracedPostgres is a one-connection pool on a fresh schema (as Postgres)
// whose round trips are counted.
func TracedPostgres(tb testing.TB) (sqldb.DB, *RoundTrips) {
	tb.Helper()
	trips := &RoundTrips{}
	db := openSchema(tb, func(cfg *pgxpool.Config) {
		cfg.MaxConns = 1
		cfg.ConnConfig.Tracer = trips
	})
	return db, trips
}
