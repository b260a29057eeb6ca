// Package provsim is an in-process payment provider simulator for dev and
// tests. It keeps its books in SQL, so it remembers every payment across
// restarts: a key is paid at most once, whatever the caller does.
package provsim

import (
	"context"
	"embed"
	"errors"
	"fmt"
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
}

// Sim is the simulated provider.
type Sim struct {
	cfg Config
	db  sqldb.DB
	n   atomic.Int64
	now func() time.Time
}

// New returns a simulator on a database migrated with Migrations.
func New(cfg Config, db sqldb.DB) *Sim {
	return &Sim{cfg: cfg, db: db, now: time.Now}
}

// Pay implements disbursement.Provider.
func (s *Sim) Pay(ctx context.Context, p disbursement.Payment) (disbursement.Receipt, error) {
	if err := s.wait(ctx); err != nil {
		return disbursement.Receipt{}, err
	}
	status, msg := disbursement.ReceiptSent, ""
	if s.cfg.FailEvery > 0 && s.n.Add(1)%int64(s.cfg.FailEvery) == 0 {
		status, msg = disbursement.ReceiptFailed, "declined by the simulated bank"
	}
	now := s.now()
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		_, err := q.Exec(ctx, `INSERT INTO provsim_payments (key, ref, payee_id, account, amount, status, error, settle_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key) DO NOTHING`,
			p.Key, "SIM-"+uuid.NewString(), p.PayeeID, p.Account, p.AmountCents, status, msg,
			sqldb.Micros(now.Add(s.cfg.SettleAfter)), sqldb.Micros(now))
		return err
	})
	if err != nil {
		return disbursement.Receipt{}, fmt.Errorf("simulated provider: %w", err)
	}
	return s.Status(ctx, p.Key)
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
	if r.Status == disbursement.ReceiptSent && !s.now().Before(sqldb.Time(settleAt)) {
		r.Status = disbursement.ReceiptSettled
	}
	return r, nil
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

func (s *Sim) wait(ctx context.Context) error {
	if s.cfg.Latency <= 0 {
		return nil
	}
	select {
	case <-time.After(s.cfg.Latency):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
