package sqldb_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// BenchmarkTxParallel measures durable single-row transactions from
// parallel callers: on SQLite they are group-committed (one fsync for many);
// on PostgreSQL, PostgreSQL groups commits itself.
func BenchmarkTxParallel(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(testing.TB) sqldb.DB
	}{{"sqlite", sqldbtest.SQLite}, {"postgres", sqldbtest.Postgres}} {
		b.Run(tc.name, func(b *testing.B) {
			db := tc.open(b)
			ctx := context.Background()
			if err := db.Migrate(ctx, testMigrations); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := next.Add(1)
					err := db.Tx(ctx, func(q sqldb.Querier) error {
						_, err := q.Exec(ctx, `INSERT INTO items (id, owner) VALUES ($1, $2)`, id, "bench")
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkInsertRows measures writing 4,096 rows of twelve columns in
// one transaction, one statement per row and many rows a statement
// (InsertRows), on both drivers: ns/op is per row.
func BenchmarkInsertRows(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(testing.TB) sqldb.DB
	}{{"sqlite", sqldbtest.SQLite}, {"postgres", sqldbtest.Postgres}} {
		for _, per := range []int{1, 4, 8, 16, 32, 64, 256} {
			b.Run(fmt.Sprintf("%s/rows-%d", tc.name, per), func(b *testing.B) {
				db := tc.open(b)
				ctx := context.Background()
				if _, err := db.Exec(ctx, `CREATE TABLE wide (id TEXT PRIMARY KEY, a BIGINT, b BIGINT, c BIGINT, d TEXT, e TEXT,
					f TEXT, g BIGINT, h BIGINT, i TEXT, j TEXT, k BIGINT)`); err != nil {
					b.Fatal(err)
				}
				const n = 4096
				b.ReportAllocs()
				for round := 0; b.Loop(); round++ {
					rows := make([][]any, n)
					for i := range rows {
						rows[i] = []any{fmt.Sprintf("%d-%d", round, i), int64(i), int64(2), int64(3), "submitted", "routine",
							"shelter", int64(4), int64(5), "0123456789abcdef", "someone", int64(6)}
					}
					err := db.Tx(ctx, func(q sqldb.Querier) error {
						return sqldb.InsertRowsAtMost(ctx, q, `INSERT INTO wide (id, a, b, c, d, e, f, g, h, i, j, k)`,
							`ON CONFLICT (id) DO UPDATE SET a = excluded.a`, rows, per)
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
			})
		}
	}
}
