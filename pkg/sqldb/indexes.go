package sqldb

import (
	"context"
	"fmt"
)

// BulkWrite runs fn, which writes many rows to tables in the transaction
// q of db, with the tables' secondary indexes dropped, and makes them
// again after it from their own definitions, in q: each index is then
// built once from the rows, not kept up to date row by row. The indexes
// are the same after (the same SQL makes them), and if fn or the rebuild
// fails, q's rollback restores them. Meanwhile the connection's page
// cache holds up to 256 MiB, so that the transaction's pages are not
// spilled to the write-ahead log before the commit. Only the embedded
// (SQLite) store does this: its readers keep reading their snapshot of
// the write-ahead log meanwhile; on PostgreSQL, DROP INDEX would lock the
// tables against every reader until commit, so there it just runs fn.
// The indexes behind PRIMARY KEY and UNIQUE constraints are kept (upserts
// need them).
//
// Errors: those of fn and of q.
func BulkWrite(ctx context.Context, db DB, q Querier, tables []string, fn func() error) error {
	lq, ok := q.(liteTx)
	if db.Dialect() != SQLite || !ok || len(tables) == 0 {
		return fn()
	}
	rows, err := q.Query(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
		AND tbl_name IN (`+Placeholders(1, len(tables))+`) ORDER BY name`, Args(tables)...)
	if err != nil {
		return fmt.Errorf("indexes of %v: %w", tables, err)
	}
	var names, defs []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return fmt.Errorf("indexes of %v: %w", tables, err)
		}
		names, defs = append(names, name), append(defs, def)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("indexes of %v: %w", tables, err)
	}
	// The pages written stay in memory until the commit: with SQLite's
	// default cache (2 MB) a rebuild's pages spill to the write-ahead log
	// and are written again. Restored after, for the writer's other work.
	var cache int64
	if err := lq.tx.QueryRowContext(lq.ctx, `PRAGMA cache_size`).Scan(&cache); err != nil {
		return fmt.Errorf("cache size: %w", classify(err))
	}
	if err := lq.ddl(fmt.Sprintf(`PRAGMA cache_size = %d`, bulkCacheKiB)); err != nil {
		return err
	}
	defer lq.ddl(fmt.Sprintf(`PRAGMA cache_size = %d`, cache))
	for _, name := range names {
		if err := lq.ddl(`DROP INDEX "` + name + `"`); err != nil {
			return fmt.Errorf("drop index %s: %w", name, err)
		}
	}
	if err := fn(); err != nil {
		return err
	}
	for i, def := range defs {
		if err := lq.ddl(def); err != nil {
			return fmt.Errorf("make index %s again: %w", names[i], err)
		}
	}
	return nil
}

// bulkCacheKiB is the page cache of a bulk write (negative: KiB), at most
// what it holds: 256 MiB.
const bulkCacheKiB = -256 << 10

// ddl runs a schema statement on the transaction's own connection, not
// prepared on the writer's pool and cached as Exec's are: prepared on
// another connection, CREATE INDEX would meet the index this transaction
// dropped (SQLite checks the name when it prepares).
func (t liteTx) ddl(q string) error {
	_, err := t.tx.ExecContext(t.ctx, q)
	return classify(err)
}
