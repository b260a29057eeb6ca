// Package provsim is a payment provider simulator for dev and tests, used
// in process (Sim is a disbursement.Provider) or over HTTP (Listen,
// Handler; eva provsim), where it speaks providerhttp's API with
// configurable latency, failures, declines and duplicate, late callbacks
// (ADR 27). It keeps its books in SQL, so it remembers every payment
// across restarts: a key is paid at most once, whatever the caller does.
package provsim

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is the simulator's schema.
var Migrations = sqldb.Embedded("provsim", migrationFS)

// Config shapes the simulation.
type Config struct {
	// SettleAfter is how long an accepted payment takes to settle.
	SettleAfter time.Duration
	// Latency is added to every call.
	Latency time.Duration
	// FailEvery, when > 0, declines every n-th new payment.
	FailEvery int

	// Over HTTP only:

	// DeclineRate is the share (0–1) of new payments declined.
	DeclineRate float64
	// FailureRate is the share (0–1) of calls that fail: half of them
	// with 503 before anything is done, half with 500 after the payment
	// is booked (the answer is lost; the outcome is unknown to the
	// caller).
	FailureRate float64
	// CallbackURL, when set, is POSTed a providerhttp.Callback when a
	// payment settles.
	CallbackURL string
	// Duplicates is how many more times each callback is sent.
	Duplicates int
	// CallbackJitter delays each callback by a random time up to it, so
	// that copies arrive late and out of order.
	CallbackJitter time.Duration
	// Seed seeds the draws of failures, declines and delays.
	Seed uint64
}

// Sim is the simulated provider.
type Sim struct {
	cfg Config
	db  sqldb.DB
	n   atomic.Int64
	now func() time.Time

	mu  sync.Mutex
	rnd *rand.Rand

	// faults counts the failures the HTTP server injected.
	faults atomic.Int64
}

// Faults is how many calls the HTTP server failed on purpose.
func (s *Sim) Faults() int64 { return s.faults.Load() }

// New returns a simulator on a database migrated with Migrations.
func New(cfg Config, db sqldb.DB) *Sim {
	return &Sim{cfg: cfg, db: db, now: time.Now, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// chance draws true with probability p.
func (s *Sim) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rnd.Float64() < p
}

// upTo draws a duration in [0, d].
func (s *Sim) upTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.rnd.Int64N(int64(d) + 1))
}

// Pay implements disbursement.Provider.
func (s *Sim) Pay(ctx context.Context, p disbursement.Payment) (disbursement.Receipt, error) {
	if err := s.wait(ctx); err != nil {
		return disbursement.Receipt{}, err
	}
	return s.book(ctx, p)
}

// book records a payment unless its key is booked already, and answers
// the key's receipt. A new key costs one statement, and on PostgreSQL one
// round trip: the insert commits on its own (sqldb.Autocommit) and
// returns the row it wrote. A key booked before inserts nothing and
// returns no row, and its receipt is read (Status).
//
// The key is the table's primary key, so a key is paid at most once
// however often the insert runs: sqldb runs it again only when it did
// nothing (never sent, or a deadlock's victim), and a caller may call Pay
// again with the key after losing an answer, as the worker does; an
// insert that runs after one that committed, or that waited on a
// concurrent one's key until it committed, inserts nothing and answers
// the first booking.
func (s *Sim) book(ctx context.Context, p disbursement.Payment) (disbursement.Receipt, error) {
	status, msg := disbursement.ReceiptSent, ""
	if (s.cfg.FailEvery > 0 && s.n.Add(1)%int64(s.cfg.FailEvery) == 0) || s.chance(s.cfg.DeclineRate) {
		status, msg = disbursement.ReceiptFailed, "declined by the simulated bank"
	}
	now := s.now()
	var r disbursement.Receipt
	var settleAt int64
	err := sqldb.Autocommit(ctx, s.db, func(q sqldb.Querier) error {
		return q.QueryRow(ctx, `INSERT INTO provsim_payments (key, ref, payee_id, account, amount, status, error, settle_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key) DO NOTHING
			RETURNING ref, status, error, settle_at`,
			p.Key, "SIM-"+uuid.NewString(), p.PayeeID, p.Account, p.AmountCents, status, msg,
			sqldb.Micros(now.Add(s.cfg.SettleAfter)), sqldb.Micros(now)).Scan(&r.Ref, &r.Status, &r.Error, &settleAt)
	})
	if errors.Is(err, sqldb.ErrNoRows) {
		return s.Status(ctx, p.Key) // booked before
	}
	if err != nil {
		return disbursement.Receipt{}, fmt.Errorf("simulated provider: %w", err)
	}
	return s.settled(r, settleAt), nil
}

// Status implements disbursement.Provider.
func (s *Sim) Status(ctx context.Context, key string) (disbursement.Receipt, error) {
	var r disbursement.Receipt
	var settleAt int64
	err := s.db.QueryRow(ctx, `SELECT ref, status, error, settle_at FROM provsim_payments WHERE key = $1`, key).
		Scan(&r.Ref, &r.Status, &r.Error, &settleAt)
	if errors.Is(err, sqldb.ErrNoRows) {
		return disbursement.Receipt{}, disbursement.ErrUnknownPayment
	}
	if err != nil {
		return disbursement.Receipt{}, fmt.Errorf("simulated provider: %w", err)
	}
	return s.settled(r, settleAt), nil
}

// settled is a booked payment's receipt now: sent until it settles.
func (s *Sim) settled(r disbursement.Receipt, settleAt int64) disbursement.Receipt {
	if r.Status == disbursement.ReceiptSent && !s.now().Before(sqldb.Time(settleAt)) {
		r.Status = disbursement.ReceiptSettled
	}
	return r
}

// Paid counts the payments the simulator accepted, by key.
func (s *Sim) Paid(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT key, amount FROM provsim_payments WHERE status <> $1`, disbursement.ReceiptFailed)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var a int64
		if err := rows.Scan(&k, &a); err != nil {
			return nil, err
		}
		out[k] = a
	}
	return out, rows.Err()
}

// Booked is one payment in the simulator's books.
type Booked struct {
	Key, Ref, PayeeID, Account, Status string
	AmountCents                        int64
}

// Books lists every payment the simulator booked, declined ones too.
func (s *Sim) Books(ctx context.Context) ([]Booked, error) {
	rows, err := s.db.Query(ctx, `SELECT key, ref, payee_id, account, status, amount FROM provsim_payments ORDER BY created_at, key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Booked
	for rows.Next() {
		var b Booked
		if err := rows.Scan(&b.Key, &b.Ref, &b.PayeeID, &b.Account, &b.Status, &b.AmountCents); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (s *Sim) wait(ctx context.Context) error {
	return sleep(ctx, s.cfg.Latency)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
