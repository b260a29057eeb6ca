package sqldb

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/retry"
)

// retryBudget is how long a statement or transaction that failed because
// the database was out of reach is tried again before the caller is told
// it is unavailable: a restart of a second or two is absorbed.
const retryBudget = 2 * time.Second

// unavailableError is a failure to reach the database (a lost connection,
// a server restarting or refusing connections, a full disk). It is
// assist.CodeUnavailable to errors.As, with no detail beyond "database
// unavailable", and unwraps to its cause for logs.
type unavailableError struct{ cause error }

func (e unavailableError) Error() string { return "database unavailable: " + e.cause.Error() }
func (e unavailableError) Unwrap() error { return e.cause }

// As makes the error an *assist.Error with CodeUnavailable.
func (e unavailableError) As(target any) bool {
	if t, ok := target.(**assist.Error); ok {
		*t = &assist.Error{Code: assist.CodeUnavailable, Message: "database unavailable"}
		return true
	}
	return false
}

// IsUnavailable reports whether err is the database being out of reach.
func IsUnavailable(err error) bool { return errors.As(err, new(unavailableError)) }

// classify marks a driver error that means the database is out of reach;
// every other error (and nil) is returned unchanged.
func classify(err error) error {
	if err == nil || IsUnavailable(err) || !outOfReach(err) {
		return err
	}
	return unavailableError{err}
}

// outOfReach tells a failure to reach the database from a failure of the
// statement itself (a constraint, a syntax error, a cancelled request).
func outOfReach(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case len(pg.Code) == 5 && pg.Code[:2] == "08": // connection exception
			return true
		case pg.Code == "57P01", pg.Code == "57P02", pg.Code == "57P03": // shutdown, crash, cannot connect now
			return true
		case pg.Code == "53100", pg.Code == "53300": // disk full, too many connections
			return true
		}
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false // the caller gave up; the database may be fine
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// absorb runs f again, within retryBudget, while it fails with an error
// again accepts; f must be safe to repeat when it does. The error it
// returns is classified either way.
func absorb[T any](ctx context.Context, again func(error) bool, f func(ctx context.Context) (T, error)) (T, error) {
	v, err := retry.DoValue(ctx, retry.Policy{First: 50 * time.Millisecond, Max: 500 * time.Millisecond, Budget: retryBudget},
		again, func(ctx context.Context) (T, error) {
			v, err := f(ctx)
			return v, classify(err)
		})
	var ce commitError
	if errors.As(err, &ce) {
		err = ce.err
	}
	return v, err
}

// notSent accepts a failure to reach the database before anything was
// sent: the statement did not run. A connection that could not be made
// (the pool's, while the server is down or restarting) sent nothing. A
// connection found closed ("conn closed") may not have been: pgx reports
// a statement without parameters (its simple protocol) whose connection
// broke while its answer was read that way, and calls it safe to retry.
func notSent(err error) bool {
	if !IsUnavailable(err) || errors.Is(err, pgconn.ErrConnClosed) {
		return false
	}
	return pgconn.SafeToRetry(err) || errors.As(err, new(*pgconn.ConnectError))
}

// beforeCommit accepts a failure to reach the database anywhere but at
// the commit of a transaction.
func beforeCommit(err error) bool { return IsUnavailable(err) && !errors.As(err, new(commitError)) }

// commitError is the failure of a commit, which may or may not have
// happened.
type commitError struct{ err error }

func (e commitError) Error() string { return e.err.Error() }
func (e commitError) Unwrap() error { return e.err }

// retriedRow is a QueryRow whose Scan runs the query again while the
// database is out of reach (outside a transaction, for reads).
type retriedRow struct {
	ctx   context.Context
	query func(ctx context.Context) Row
}

func (r retriedRow) Scan(dest ...any) error {
	_, err := absorb(r.ctx, IsUnavailable, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, r.query(ctx).Scan(dest...)
	})
	return err
}
