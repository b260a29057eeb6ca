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
	gate *gate
}

// gated is the pool, through the gate.
func (d *pgDB) gated() gatedPool { return gatedPool{pool: d.pool, gate: d.gate} }

// OpenPostgres connects a pool to PostgreSQL. Unless the URL sets
// pool_max_conns, the pool holds up to defaultMaxConns connections: the
// services of one process share it, and a pool as small as pgx's default
// (four on two cores) starves them as soon as a round trip is slow. The
// pool's gate keeps the connections in use near twice the CPUs while
// round trips are quick (gate).
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
// a search_path per test schema this way), with its gate.
func OpenPostgresConfig(ctx context.Context, cfg *pgxpool.Config) (DB, error) {
	return openPostgres(ctx, cfg, newGate(gatePlaces(cfg.MaxConns), gateWait))
}

func openPostgres(ctx context.Context, cfg *pgxpool.Config, g *gate) (DB, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return &pgDB{pool: pool, gate: g}, nil
}

func (d *pgDB) Dialect() Dialect               { return Postgres }
func (d *pgDB) Ping(ctx context.Context) error { return classify(d.pool.Ping(ctx)) }
func (d *pgDB) Close()                         { d.pool.Close() }

// Exec outside a transaction is tried again when the statement never
// reached the server, or when PostgreSQL rolled it back because it
// deadlocked with another transaction (it did nothing); a statement sent
// and not answered may have committed, and is not.
func (d *pgDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return absorb(ctx, didNothing, func(ctx context.Context) (int64, error) { return pgExec(ctx, d.gated(), q, args) })
}

// Query outside a transaction is a read: it is tried again while the
// database is out of reach, within retryBudget.
func (d *pgDB) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	return absorb(ctx, IsUnavailable, func(ctx context.Context) (Rows, error) { return pgQuery(ctx, d.gated(), q, args) })
}

// QueryRow outside a transaction is a read, tried again like Query.
func (d *pgDB) QueryRow(ctx context.Context, q string, args ...any) Row {
	return retriedRow{ctx: ctx, query: func(ctx context.Context) Row { return pgRow{d.gated().QueryRow(ctx, q, args...)} }}
}

// Tx runs fn in a transaction. When the database is out of reach before
// the commit (at begin, or in fn's statements), the transaction rolls back
// and runs again, within retryBudget; a commit that fails is not run
// again, since it may have committed. A transaction that deadlocked with
// another is run again too. The transaction's BEGIN is sent with its
// first statement, and the writes given to Defer with the statement that
// follows them or with the COMMIT: one round trip each time (a pipeline).
func (d *pgDB) Tx(ctx context.Context, fn func(Querier) error) error {
	_, err := absorb(ctx, func(err error) bool { return beforeCommit(err) || lostToAnother(err) }, func(ctx context.Context) (struct{}, error) {
		took := d.gate.enter(ctx)
		defer d.gate.exit(took)
		c, err := d.pool.Acquire(ctx)
		if err != nil {
			return struct{}{}, err
		}
		// A connection left inside a transaction (a failed rollback) is
		// closed by the pool rather than reused.
		defer c.Release()
		t := &pgTx{conn: c.Conn(), unsent: []unsent{{sql: "begin"}}}
		if err := fn(t); err != nil {
			t.rollback(ctx)
			return struct{}{}, err
		}
		return struct{}{}, t.commit(ctx)
	})
	return err
}

// autocommit implements Autocommit: fn's statement goes to the pool
// outside a transaction, and PostgreSQL commits it as it ends (one round
// trip). fn runs again under Exec's rule, not Tx's: only when the
// statement did nothing (never sent, or a deadlock's victim), since once
// sent it may have committed, as a Tx's COMMIT may have.
func (d *pgDB) autocommit(ctx context.Context, fn func(Querier) error) error {
	_, err := absorb(ctx, didNothing, func(context.Context) (struct{}, error) {
		return struct{}{}, fn(pgPool{d.gated()})
	})
	return err
}

// pgPool runs each statement on a connection of the pool, outside a
// transaction, and does not run it again: Autocommit does, when right.
type pgPool struct{ pool gatedPool }

func (p pgPool) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return pgExec(ctx, p.pool, q, args)
}

func (p pgPool) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	return pgQuery(ctx, p.pool, q, args)
}

func (p pgPool) QueryRow(ctx context.Context, q string, args ...any) Row {
	return pgRow{p.pool.QueryRow(ctx, q, args...)}
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

// pgTx is a transaction on one connection. Its statements are not all
// sent at once: the BEGIN waits for the first statement, and the writes
// given to Defer for the next statement or the COMMIT, and each goes with
// it in one pipeline, so that the transaction costs the round trips of
// its statements and no more.
type pgTx struct {
	conn   *pgx.Conn
	unsent []unsent // in order: the BEGIN until it is sent, then deferred writes
	begun  bool     // the BEGIN was sent
}

// unsent is a statement of a transaction waiting for the next to be sent.
type unsent struct {
	sql  string
	args []any
}

func (t *pgTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if len(t.unsent) == 0 {
		return pgExec(ctx, t.conn, q, args)
	}
	br, err := t.send(ctx, &unsent{q, args})
	if err != nil {
		return 0, classify(err)
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag.RowsAffected(), classify(err)
}

func (t *pgTx) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	if len(t.unsent) == 0 {
		return pgQuery(ctx, t.conn, q, args)
	}
	br, err := t.send(ctx, &unsent{q, args})
	if err != nil {
		return nil, classify(err)
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, classify(err)
	}
	return pgRows{batchRows{Rows: rows, br: br}}, nil
}

func (t *pgTx) QueryRow(ctx context.Context, q string, args ...any) Row {
	if len(t.unsent) == 0 {
		return pgRow{t.conn.QueryRow(ctx, q, args...)}
	}
	br, err := t.send(ctx, &unsent{q, args})
	if err != nil {
		return errRow{classify(err)}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

// deferExec implements deferrer: the statement waits for the next.
func (t *pgTx) deferExec(q string, args []any) { t.unsent = append(t.unsent, unsent{q, args}) }

// send sends the unsent statements and then last (when not nil) in one
// pipeline, and reads the results of the unsent ones: the results of
// last are the caller's to read, and the batch's to close. An unsent
// statement's error is returned, naming it; the statements after it did
// not run.
func (t *pgTx) send(ctx context.Context, last *unsent) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	for _, u := range t.unsent {
		b.Queue(u.sql, u.args...)
	}
	if last != nil {
		b.Queue(last.sql, last.args...)
	}
	sent := t.unsent
	t.unsent, t.begun = nil, true
	br := t.conn.SendBatch(ctx, b)
	for _, u := range sent {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, unsentError{sql: u.sql, err: err}
		}
	}
	return br, nil
}

// commit sends the unsent statements and the COMMIT in one pipeline. A
// transaction that never sent a statement has nothing to commit. An
// unsent statement's failure, reported by the server, means nothing was
// committed; a failure to reach the server once the COMMIT may have gone
// is a commitError (it may have committed).
func (t *pgTx) commit(ctx context.Context) error {
	if !t.begun && len(t.unsent) == 1 { // the BEGIN alone
		return nil
	}
	br, err := t.send(ctx, &unsent{sql: "commit"})
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) || pgconn.SafeToRetry(err) {
			return classify(err) // refused before the COMMIT, or never sent
		}
		return commitError{classify(err)}
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return commitError{classify(err)}
	case tag.String() != "COMMIT":
		// A statement failed earlier and its error was not returned:
		// PostgreSQL rolled the transaction back.
		return errRolledBack
	}
	return nil
}

// errRolledBack is a COMMIT that PostgreSQL answered with ROLLBACK.
var errRolledBack = errors.New("commit: the transaction had failed and was rolled back")

// rollback ends a failed transaction; when it cannot, the connection
// stays in the transaction and the pool closes it on release.
func (t *pgTx) rollback(ctx context.Context) {
	t.unsent = nil
	if t.begun {
		_, _ = t.conn.Exec(ctx, "rollback")
	}
}

// unsentError is the failure of a statement that waited for another (a
// deferred write, or the BEGIN), returned by the statement it was sent
// with; it unwraps to the driver's error.
type unsentError struct {
	sql string
	err error
}

func (e unsentError) Error() string {
	sql := e.sql
	if i := strings.IndexByte(sql, '\n'); i >= 0 {
		sql = sql[:i] + " ..."
	}
	return fmt.Sprintf("statement sent with the next (%s): %v", sql, e.err)
}
func (e unsentError) Unwrap() error { return e.err }

// batchRows are rows of a pipeline: closing them closes it.
type batchRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r batchRows) Close() {
	r.Rows.Close()
	_ = r.br.Close()
}

// batchRow is a row of a pipeline: scanning it closes the pipeline.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := pgRow{r.row}.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = classify(cerr)
	}
	return err
}

// copyRows is CopyRows on PostgreSQL: the rows are copied into
// eva_copy_<table> (the columns of table, made by the first copy of the
// transaction and dropped at its end), written to table from there, and
// the temporary table emptied for the next copy.
func (t *pgTx) copyRows(ctx context.Context, table string, cols []string, tail string, rows [][]any) error {
	if len(t.unsent) > 0 { // COPY cannot be pipelined: send them first
		br, err := t.send(ctx, nil)
		if err != nil {
			return classify(err)
		}
		if err := br.Close(); err != nil {
			return classify(err)
		}
	}
	stage := pgx.Identifier{"eva_copy_" + table}.Sanitize()
	list := make([]string, len(cols))
	for i, c := range cols {
		list[i] = pgx.Identifier{c}.Sanitize()
	}
	names := strings.Join(list, ", ")
	if _, err := t.conn.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+stage+` ON COMMIT DROP AS SELECT `+names+` FROM `+
		pgx.Identifier{table}.Sanitize()+` WITH NO DATA`); err != nil {
		return classify(err)
	}
	if _, err := t.conn.CopyFrom(ctx, pgx.Identifier{"eva_copy_" + table}, cols, pgx.CopyFromRows(rows)); err != nil {
		return classify(err)
	}
	insert := `INSERT INTO ` + pgx.Identifier{table}.Sanitize() + ` (` + names + `) SELECT ` + names + ` FROM ` + stage
	if tail != "" {
		insert += " " + tail
	}
	if _, err := t.conn.Exec(ctx, insert); err != nil {
		return classify(err)
	}
	_, err := t.conn.Exec(ctx, `TRUNCATE `+stage)
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

// didNothing accepts the failures of a statement sent on its own, outside
// a transaction, after which it is known not to have run: it never
// reached the server, or PostgreSQL rolled it back as a deadlock's
// victim. Any other failure once sent may have come after its commit.
func didNothing(err error) bool { return notSent(err) || lostToAnother(err) }

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
