package sqldb_test

import (
	"context"
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
