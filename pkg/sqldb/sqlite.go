package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// liteDB is the embedded driver. Reads go to a pool of read-only
// connections; every write goes through one writer goroutine that runs the
// transactions of concurrent callers inside one SQLite transaction, each in
// its own savepoint, and commits them together: one fsync for many callers
// (group commit) with full durability (synchronous=FULL).
type liteDB struct {
	r, w *sql.DB
	// migrate serializes migrations of services sharing the database in
	// one process (PostgreSQL uses advisory locks instead).
	migrate sync.Mutex
	reqs    chan *liteReq
	stop    chan struct{}
	done    chan struct{}
	// Prepared statements, by query text: parsing SQL costs more than
	// running it. rstmts serve reads from the pool; wstmts are used only
	// by the writer goroutine, on its one connection.
	rstmts sync.Map
	rcount atomic.Int64
	wstmts map[string]*sql.Stmt
}

// maxStmts bounds each statement cache; queries built at run time (lists
// with optional filters) have few shapes, but a bound keeps it safe.
const maxStmts = 512

type liteReq struct {
	ctx  context.Context
	fn   func(Querier) error
	errc chan error
}

// uriPath escapes what would end or alter the path part of a file: URI
// ('%', '?' and '#'): unescaped, a directory such as "/srv/eva#2" would
// open "/srv/eva" instead, without the pragmas that follow (synchronous
// FULL among them), and nothing would say so.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
}

// maxGroup bounds how many callers one commit serves.
const maxGroup = 256

// OpenSQLite opens (creating if needed) the database file at path in WAL
// mode with full fsync on commit. Temporary files (the statement journal
// that each group member's savepoint writes) are kept in memory: on a
// file, they cost a write system call per page changed.
func OpenSQLite(ctx context.Context, path string) (DB, error) {
	pragmas := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(ON)", "temp_store(MEMORY)"} {
		pragmas.Add("_pragma", p)
	}
	if path == "" || strings.HasPrefix(path, ":memory:") {
		return nil, errors.New("sqlite: give a file path (an in-memory database would be lost, and split between connections)")
	}
	uri := "file:" + uriPath(path) + "?" + pragmas.Encode()
	w, err := sql.Open("sqlite", uri+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// The writer goroutine runs one transaction at a time; the second
	// connection lets it prepare a statement while its transaction holds
	// the first (the transaction then prepares it once on its own
	// connection, and database/sql keeps both).
	w.SetMaxOpenConns(2)
	w.SetMaxIdleConns(2)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", uri)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	readers := runtime.GOMAXPROCS(0) * 2
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	d := &liteDB{r: r, w: w, reqs: make(chan *liteReq, maxGroup), stop: make(chan struct{}), done: make(chan struct{}),
		wstmts: map[string]*sql.Stmt{}}
	// The writer's CPU shows in profiles under its database's name
	// (`go tool pprof -tagfocus eva-db=approval.db`): every handler's
	// statements and every commit of the file run on it.
	go pprof.Do(context.Background(), pprof.Labels("eva-db", filepath.Base(path)), func(context.Context) { d.writer() })
	return d, nil
}

func (d *liteDB) Dialect() Dialect               { return SQLite }
func (d *liteDB) Ping(ctx context.Context) error { return classify(d.r.PingContext(ctx)) }

func (d *liteDB) Close() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
		<-d.done
		d.r.Close()
		d.w.Close()
	}
}

func (d *liteDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := d.Tx(ctx, func(tx Querier) error {
		var err error
		n, err = tx.Exec(ctx, q, args...)
		return err
	})
	return n, err
}

func (d *liteDB) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	st, err := d.readStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, classify(err)
	}
	return liteRows{rows}, nil
}

func (d *liteDB) QueryRow(ctx context.Context, q string, args ...any) Row {
	st, err := d.readStmt(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return liteRow{st.QueryRowContext(ctx, args...)}
}

// readStmt returns the prepared statement for q on the read pool.
func (d *liteDB) readStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := d.rstmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := d.r.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if d.rcount.Load() >= maxStmts {
		return st, nil // not cached; database/sql closes it with the pool
	}
	if prev, loaded := d.rstmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	d.rcount.Add(1)
	return st, nil
}

// writeStmt returns q prepared on the writer's connection, bound to tx.
// Only the writer goroutine calls it.
func (d *liteDB) writeStmt(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	st, ok := d.wstmts[q]
	if !ok {
		var err error
		if st, err = d.w.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
		if len(d.wstmts) < maxStmts {
			d.wstmts[q] = st
		}
	}
	// database/sql prepares st on the transaction's connection the first
	// time, and reuses it after.
	return tx.StmtContext(ctx, st), nil
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// Tx hands fn to the writer and waits for the commit that includes it.
func (d *liteDB) Tx(ctx context.Context, fn func(Querier) error) error {
	req := &liteReq{ctx: ctx, fn: fn, errc: make(chan error, 1)}
	select {
	case d.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-d.stop:
		return errors.New("sqlite: closed")
	}
	// Once queued the transaction runs to its end, so that the caller
	// learns whether it committed.
	return classify(<-req.errc)
}

func (d *liteDB) writer() {
	defer close(d.done)
	batch := make([]*liteReq, 0, maxGroup)
	for {
		select {
		case <-d.stop:
			d.drain(errors.New("sqlite: closed"))
			return
		case req := <-d.reqs:
			batch = append(batch[:0], req)
		more:
			for len(batch) < maxGroup {
				select {
				case req := <-d.reqs:
					batch = append(batch, req)
				default:
					break more
				}
			}
			d.commit(batch)
		}
	}
}

func (d *liteDB) drain(err error) {
	for {
		select {
		case req := <-d.reqs:
			req.errc <- err
		default:
			return
		}
	}
}

// commit runs a group of transactions, each in a savepoint, and commits
// the group. A caller whose fn fails has its savepoint rolled back; if the
// commit itself fails, every caller gets the error.
func (d *liteDB) commit(batch []*liteReq) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		for _, req := range batch {
			req.errc <- fmt.Errorf("sqlite begin: %w", err)
		}
		return
	}
	for i, req := range batch {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT g"); err != nil {
			errs[i] = fmt.Errorf("sqlite savepoint: %w", err)
			continue
		}
		errs[i] = d.runFn(req, tx)
		if errs[i] != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO g"); err != nil {
				// The transaction is unusable: fail the whole group.
				tx.Rollback()
				for _, r := range batch {
					r.errc <- fmt.Errorf("sqlite rollback to savepoint: %w", err)
				}
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE g"); err != nil {
			tx.Rollback()
			for _, r := range batch {
				r.errc <- fmt.Errorf("sqlite release savepoint: %w", err)
			}
			return
		}
	}
	if err := tx.Commit(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("sqlite commit: %w", err)
			}
		}
	}
	for i, req := range batch {
		req.errc <- errs[i]
	}
}

// runFn runs one caller's fn; its statements use a context that ignores the
// caller's cancellation, since interrupting SQLite inside a transaction
// would roll back the whole group.
func (d *liteDB) runFn(req *liteReq, tx *sql.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sqlite transaction panicked: %v", r)
		}
	}()
	return req.fn(liteTx{d: d, tx: tx, ctx: context.WithoutCancel(req.ctx)})
}

func (d *liteDB) Migrate(ctx context.Context, m Migrations) error {
	d.migrate.Lock()
	defer d.migrate.Unlock()
	p, err := goose.NewProvider(goose.DialectSQLite3, d.w, m.SQLite,
		goose.WithTableName("goose_"+m.Name), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate %s: %w", m.Name, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", m.Name, err)
	}
	return nil
}

// liteTx runs one caller's statements with a pinned context.
type liteTx struct {
	d   *liteDB
	tx  *sql.Tx
	ctx context.Context
}

func (t liteTx) Exec(_ context.Context, q string, args ...any) (int64, error) {
	st, err := t.d.writeStmt(t.ctx, t.tx, q)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(t.ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t liteTx) Query(_ context.Context, q string, args ...any) (Rows, error) {
	st, err := t.d.writeStmt(t.ctx, t.tx, q)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(t.ctx, args...)
	if err != nil {
		return nil, err
	}
	return liteRows{rows}, nil
}

func (t liteTx) QueryRow(_ context.Context, q string, args ...any) Row {
	st, err := t.d.writeStmt(t.ctx, t.tx, q)
	if err != nil {
		return errRow{err}
	}
	return liteRow{st.QueryRowContext(t.ctx, args...)}
}

type liteRows struct{ *sql.Rows }

func (r liteRows) Close()                 { r.Rows.Close() }
func (r liteRows) Scan(dest ...any) error { return classify(r.Rows.Scan(dest...)) }
func (r liteRows) Err() error             { return classify(r.Rows.Err()) }

type liteRow struct{ row *sql.Row }

func (r liteRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoRows
	}
	return classify(err)
}

func isSQLiteUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
