// Package sqldb is the small SQL surface EVA's stores are written against,
// with two drivers: PostgreSQL through pgx/v5 for production, and an
// embedded SQLite (pure Go, nothing to install) for `eva dev` and tests.
//
// Stores write portable SQL: $1-style parameters, INSERT ... ON CONFLICT,
// RETURNING, integers for money and for times (Unix microseconds), TEXT and
// BLOB/BYTEA declared per dialect in migrations. Every store interface has
// one conformance suite that runs against both drivers.
package sqldb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// Dialect names a driver.
type Dialect string

// Dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// ErrNoRows is returned by Row.Scan when the query selected nothing.
var ErrNoRows = errors.New("sqldb: no rows")

// Querier runs statements, inside or outside a transaction.
type Querier interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Rows is a result set; always Close it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is a single-row result. Scan returns ErrNoRows when there is none.
type Row interface {
	Scan(dest ...any) error
}

// DB is a database handle shared by goroutines. Outside a transaction,
// Query and QueryRow are for reads: on the embedded driver they run on
// its pool of readers, where a write (an INSERT ... RETURNING) would wait
// on the writer's lock and queue behind its group commits. Write with
// Exec, which goes to the writer there and is one round trip on
// PostgreSQL, or in Tx.
type DB interface {
	Querier
	// Tx runs fn in a transaction: all of fn's writes commit together when
	// it returns nil, none when it returns an error. fn must do no other
	// I/O: on the embedded driver transactions of concurrent callers are
	// committed together (group commit) by a single writer.
	Tx(ctx context.Context, fn func(q Querier) error) error
	Dialect() Dialect
	Ping(ctx context.Context) error
	// Migrate applies a migration set's pending migrations.
	Migrate(ctx context.Context, m Migrations) error
	Close()
}

// Migrations is a versioned set of schema changes, one per dialect, in
// goose's SQL file format. Name keeps each set's version table apart, so
// that services sharing one database migrate independently.
type Migrations struct {
	Name     string
	Postgres fs.FS
	SQLite   fs.FS
}

// Open connects to url: postgres://... or sqlite:<path>.
func Open(ctx context.Context, url string) (DB, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return OpenPostgres(ctx, url)
	case strings.HasPrefix(url, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(url, "sqlite:"))
	default:
		return nil, fmt.Errorf("database url %q: want postgres://... or sqlite:<path>", redact(url))
	}
}

// Micros converts a time to the stored form, Unix microseconds; the zero
// time is 0.
func Micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// Time converts stored Unix microseconds back; 0 is the zero time.
func Time(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// Strings runs a query of one text column and returns its values, in
// order; none is an empty, non-nil slice.
func Strings(ctx context.Context, q Querier, query string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ByID runs selectFrom for the rows whose id is one of ids and returns
// the rows scan makes, by the key id gives each; ids not there are left
// out. selectFrom is "SELECT cols FROM table", with no parameter of its
// own.
//
// The embedded driver takes `WHERE id IN (ids)` (the list padded: In).
// On PostgreSQL each id is looked up by itself, by the primary key, in a
// lateral subquery the planner cannot merge into a join (OFFSET 0). With
// an IN list of a consumer's batch (64 or 128 ids), the plan pgx's
// prepared statement keeps, made while a new database's table was small,
// scans the whole table for every batch until autovacuum next analyzes
// it (in a PostgreSQL bench's first minute, 906 scans of 2,550 rows on
// average of the approval queue). One lookup by the key costs less than
// a scan of the ten pages the planner assumes of a table never analyzed,
// so the lateral plan looks the ids up at any size.
func ByID[T any](ctx context.Context, q Querier, selectFrom string, ids []string, scan func(Row) (T, error), id func(T) string) (map[string]T, error) {
	out := make(map[string]T, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var (
		rows Rows
		err  error
	)
	if _, ok := q.(keysAsArray); ok {
		rows, err = q.Query(ctx, `SELECT t.* FROM unnest($1::text[]) AS k(key), LATERAL (`+selectFrom+
			` WHERE id = k.key OFFSET 0) AS t`, ids)
	} else {
		in, args := In(1, Args(ids))
		rows, err = q.Query(ctx, selectFrom+` WHERE id IN (`+in+`)`, args...)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out[id(v)] = v
	}
	return out, rows.Err()
}

// Args is a list of named strings (states, say) as query arguments.
func Args[T ~string](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Pad returns vs lengthened to the next power of two by repeating its
// last value: a statement that takes a list (IN (...), or VALUES of keys
// inserted ON CONFLICT DO NOTHING) then has a handful of shapes, each
// prepared once per connection, instead of one per length, which would
// crowd pgx's statement cache and cost a prepare per new length. A value
// repeated in such a list changes nothing. vs empty stays empty.
func Pad(vs []any) []any {
	n := 1
	for n < len(vs) {
		n *= 2
	}
	if len(vs) == 0 || n == len(vs) {
		return vs
	}
	out := make([]any, n)
	copy(out, vs)
	for i := len(vs); i < n; i++ {
		out[i] = vs[len(vs)-1]
	}
	return out
}

// In returns the placeholders of an IN list from $from for vs, padded
// (Pad), and the padded values.
func In(from int, vs []any) (string, []any) {
	vs = Pad(vs)
	return Placeholders(from, len(vs)), vs
}

// Placeholders returns "$from, $from+1, ..." for n parameters.
func Placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}

func redact(url string) string {
	if i := strings.Index(url, "@"); i > 0 {
		if j := strings.Index(url, "://"); j > 0 && j < i {
			return url[:j+3] + "***" + url[i:]
		}
	}
	return url
}

// Embedded makes a migration set of an embedded tree holding
// migrations/postgres/*.sql and migrations/sqlite/*.sql.
func Embedded(name string, tree fs.FS) Migrations {
	sub := func(dir string) fs.FS {
		f, err := fs.Sub(tree, dir)
		if err != nil {
			panic(fmt.Sprintf("migrations %s: %v", name, err)) // a build-time mistake
		}
		return f
	}
	return Migrations{Name: name, Postgres: sub("migrations/postgres"), SQLite: sub("migrations/sqlite")}
}

// MigrateAll applies migration sets in order.
func MigrateAll(ctx context.Context, db DB, sets ...Migrations) error {
	for _, m := range sets {
		if err := db.Migrate(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// Defer runs a write whose result nobody reads (no row count, no rows)
// in the transaction q. On PostgreSQL it is not sent at once but with
// the transaction's next statement, or with its COMMIT, in one round
// trip; its error is then returned by that statement, or by the commit,
// and the transaction does not commit. So it suits the last writes of a
// transaction, and a write whose failure the statements after it need
// not tell apart from their own. args must not change after the call.
// Elsewhere (SQLite, outside a transaction) it is Exec.
func Defer(ctx context.Context, q Querier, query string, args ...any) error {
	if d, ok := q.(deferrer); ok {
		d.deferExec(query, args)
		return nil
	}
	_, err := q.Exec(ctx, query, args...)
	return err
}

// IsDeferredFailure reports whether err is the failure of a write given
// to Defer, returned by a later statement or by the commit, or a commit
// that found the transaction failed: a failure that the statement which
// returned it did not cause.
func IsDeferredFailure(err error) bool {
	return errors.As(err, new(unsentError)) || errors.Is(err, errRolledBack)
}

// Deferring is q with every Exec given to Defer: for a transaction's last
// writes, made by code that takes a Querier (sqldb.InsertRows, say). Its
// Exec reports no row count (0); Query and QueryRow are q's, sent with
// the writes deferred before them.
func Deferring(q Querier) Querier {
	if d, ok := q.(deferrer); ok {
		return deferringQuerier{d}
	}
	return q
}

// keysAsArray is a Querier of PostgreSQL, which takes a list of keys as
// one array parameter (ByID).
type keysAsArray interface{ keysAsArray() }

func (*pgDB) keysAsArray()  {}
func (pgPool) keysAsArray() {}
func (*pgTx) keysAsArray()  {}

// deferrer is a transaction that can hold a write back (PostgreSQL's).
type deferrer interface {
	Querier
	deferExec(query string, args []any)
}

type deferringQuerier struct{ deferrer }

func (d deferringQuerier) Exec(_ context.Context, query string, args ...any) (int64, error) {
	d.deferExec(query, args)
	return 0, nil
}

// Autocommit runs fn, which sends one statement (a write, with RETURNING
// when fn reads what it wrote), as a transaction of its own. On
// PostgreSQL the statement is sent alone, outside any transaction, and
// commits as it ends: one round trip, where a Tx of the same statement
// costs two (the BEGIN with it, then the COMMIT). On the embedded driver,
// where writes go through its writer, it is a Tx.
//
// fn may run again, as Tx's fn, so it starts afresh each time (a slice
// it fills is emptied first). On PostgreSQL it runs again only when its
// statement did nothing: it never reached the server, within the
// retryBudget of an outage, or PostgreSQL rolled it back as a deadlock's
// victim. A statement that was sent and not answered may have committed,
// like a Tx whose COMMIT got no answer, and its error (unavailable) is
// returned: the caller must be able to take that. A second statement
// from fn fails, sending nothing: two statements need a Tx.
func Autocommit(ctx context.Context, db DB, fn func(q Querier) error) error {
	if a, ok := db.(autocommitter); ok {
		return a.autocommit(ctx, func(q Querier) error { return fn(&oneStatement{q: q}) })
	}
	return db.Tx(ctx, func(q Querier) error { return fn(&oneStatement{q: q}) })
}

// autocommitter is a database that can run a statement as a transaction
// of its own (PostgreSQL's); others, and the wrappers tests and the
// simulator put around a DB, run Autocommit as a Tx.
type autocommitter interface {
	autocommit(ctx context.Context, fn func(q Querier) error) error
}

// errSecondStatement is a second statement given to Autocommit's fn.
var errSecondStatement = errors.New("sqldb: Autocommit runs one statement; use Tx for more")

// oneStatement is a Querier that sends one statement and refuses more.
type oneStatement struct {
	q    Querier
	sent bool
}

func (o *oneStatement) next() error {
	if o.sent {
		return errSecondStatement
	}
	o.sent = true
	return nil
}

func (o *oneStatement) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if err := o.next(); err != nil {
		return 0, err
	}
	return o.q.Exec(ctx, query, args...)
}

func (o *oneStatement) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	if err := o.next(); err != nil {
		return nil, err
	}
	return o.q.Query(ctx, query, args...)
}

func (o *oneStatement) QueryRow(ctx context.Context, query string, args ...any) Row {
	if err := o.next(); err != nil {
		return errRow{err}
	}
	return o.q.QueryRow(ctx, query, args...)
}
