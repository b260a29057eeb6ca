package sqldb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

type pgDB struct {
	pool *pgxpool.Pool
}

// OpenPostgres connects a pool to PostgreSQL. Unless the URL sets
// pool_max_conns, the pool holds up to defaultMaxConns connections: the
// services of one process share it, and pgx's default (four on two cores)
// starves them as soon as a round trip is slow.
func OpenPostgres(ctx context.Context, url string) (DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url %s: %w", redact(url), err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	return OpenPostgresConfig(ctx, cfg)
}

// defaultMaxConns bounds a pool whose URL does not.
const defaultMaxConns = 32

// OpenPostgresConfig connects a pool configured by the caller (tests set
// a search_path per test schema this way).
func OpenPostgresConfig(ctx context.Context, cfg *pgxpool.Config) (DB, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return &pgDB{pool: pool}, nil
}

func (d *pgDB) Dialect() Dialect               { return Postgres }
func (d *pgDB) Ping(ctx context.Context) error { return classify(d.pool.Ping(ctx)) }
func (d *pgDB) Close()                         { d.pool.Close() }

// Exec outside a transaction is tried again only when the statement never
// reached the server: a statement sent may have committed.
func (d *pgDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return absorb(ctx, notSent, func(ctx context.Context) (int64, error) { return pgExec(ctx, d.pool, q, args) })
}

// Query outside a transaction is a read: it is tried again while the
// database is out of reach, within retryBudget.
func (d *pgDB) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	return absorb(ctx, IsUnavailable, func(ctx context.Context) (Rows, error) { return pgQuery(ctx, d.pool, q, args) })
}

// QueryRow outside a transaction is a read, tried again like Query.
func (d *pgDB) QueryRow(ctx context.Context, q string, args ...any) Row {
	return retriedRow{ctx: ctx, query: func(ctx context.Context) Row { return pgRow{d.pool.QueryRow(ctx, q, args...)} }}
}

// Tx runs fn in a transaction. When the database is out of reach before
// the commit (at begin, or in fn's statements), the transaction rolls back
// and runs again, within retryBudget; a commit that fails is not run
// again, since it may have committed. A transaction that deadlocked with
// another is run again too.
func (d *pgDB) Tx(ctx context.Context, fn func(Querier) error) error {
	_, err := absorb(ctx, func(err error) bool { return beforeCommit(err) || lostToAnother(err) }, func(ctx context.Context) (struct{}, error) {
		tx, err := d.pool.Begin(ctx)
		if err != nil {
			return struct{}{}, err
		}
		if err := fn(pgTx{tx}); err != nil {
			_ = tx.Rollback(ctx)
			return struct{}{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return struct{}{}, commitError{classify(err)}
		}
		return struct{}{}, nil
	})
	return err
}

func (d *pgDB) Migrate(ctx context.Context, m Migrations) error {
	db := stdlib.OpenDBFromPool(d.pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID(m.Name)))
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, m.Postgres,
		goose.WithTableName("goose_"+m.Name), goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate %s: %w", m.Name, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", m.Name, err)
	}
	return nil
}

// lockID gives each migration set its own advisory lock.
func lockID(name string) int64 {
	var h int64 = 0x45564100 // "EVA"
	for _, c := range name {
		h = h*31 + int64(c)
	}
	return h
}

type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return pgExec(ctx, t.tx, q, args)
}

func (t pgTx) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	return pgQuery(ctx, t.tx, q, args)
}

func (t pgTx) QueryRow(ctx context.Context, q string, args ...any) Row {
	return pgRow{t.tx.QueryRow(ctx, q, args...)}
}

// copyRows is CopyRows on PostgreSQL: the rows are copied into
// eva_copy_<table> (the columns of table, made by the first copy of the
// transaction and dropped at its end), written to table from there, and
// the temporary table emptied for the next copy.
func (t pgTx) copyRows(ctx context.Context, table string, cols []string, tail string, rows [][]any) error {
	stage := pgx.Identifier{"eva_copy_" + table}.Sanitize()
	list := make([]string, len(cols))
	for i, c := range cols {
		list[i] = pgx.Identifier{c}.Sanitize()
	}
	names := strings.Join(list, ", ")
	if _, err := t.tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+stage+` ON COMMIT DROP AS SELECT `+names+` FROM `+
		pgx.Identifier{table}.Sanitize()+` WITH NO DATA`); err != nil {
		return classify(err)
	}
	if _, err := t.tx.CopyFrom(ctx, pgx.Identifier{"eva_copy_" + table}, cols, pgx.CopyFromRows(rows)); err != nil {
		return classify(err)
	}
	insert := `INSERT INTO ` + pgx.Identifier{table}.Sanitize() + ` (` + names + `) SELECT ` + names + ` FROM ` + stage
	if tail != "" {
		insert += " " + tail
	}
	if _, err := t.tx.Exec(ctx, insert); err != nil {
		return classify(err)
	}
	_, err := t.tx.Exec(ctx, `TRUNCATE `+stage)
	return classify(err)
}

func pgExec(ctx context.Context, q pgQuerier, query string, args []any) (int64, error) {
	tag, err := q.Exec(ctx, query, args...)
	if err != nil {
		return 0, classify(err)
	}
	return tag.RowsAffected(), nil
}

func pgQuery(ctx context.Context, q pgQuerier, query string, args []any) (Rows, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, classify(err)
	}
	return pgRows{rows}, nil
}

type pgRows struct{ pgx.Rows }

func (r pgRows) Scan(dest ...any) error { return classify(r.Rows.Scan(dest...)) }
func (r pgRows) Err() error             { return classify(r.Rows.Err()) }

type pgRow struct{ row pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNoRows
	}
	return classify(err)
}

// lostToAnother reports a transaction that PostgreSQL rolled back because
// it deadlocked with, or could not be serialized after, another one: it is
// safe and right to run it again.
func lostToAnother(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40P01" || pg.Code == "40001")
}

// IsUniqueViolation reports whether err is a unique or primary key
// violation, on either driver.
func IsUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	return isSQLiteUnique(err)
}
