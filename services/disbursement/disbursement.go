// Package disbursement is EVA's money: funds with allocated, reserved, paid
// and available amounts; holds that an approval places before it is
// recorded; payees; and payouts through a provider. The ledger changes only
// through atomic conditional updates and the events of the log, so no fund
// ever goes below zero and no approval is paid twice.
package disbursement

import (
	"context"
	"fmt"
	"runtime/pprof"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/outage"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// Config is disbursement's configuration.
type Config struct {
	// HoldTTL is how long a hold waits for its approval to be recorded
	// before it returns to the fund; default 5 minutes.
	HoldTTL time.Duration
	// Poll is how often the worker looks for due payout steps without
	// being woken; default 250ms.
	Poll time.Duration
	// SettlePoll is how often a sent payout is checked for settlement;
	// default 500ms.
	SettlePoll time.Duration
	// Workers bounds the payout steps done at once; default 128. A step
	// mostly waits (an append, the provider, the store), and each run
	// holds its slot through two or three of them, so the bound must sit
	// well above the rate at which approvals come times a run's length:
	// at 32, 50 clients on PostgreSQL queued approved cases for a second
	// before their reservation (docs/benchmarks.md, issue 10, eleventh
	// session). It is also how many payments the provider is asked for at
	// once.
	Workers int
}

func (c *Config) defaults() {
	if c.HoldTTL <= 0 {
		c.HoldTTL = 5 * time.Minute
	}
	if c.Poll <= 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.SettlePoll <= 0 {
		c.SettlePoll = 500 * time.Millisecond
	}
	if c.Workers <= 0 {
		c.Workers = 128
	}
}

// Deps is what disbursement runs on.
type Deps struct {
	Config Config
	NC     *nats.Conn
	// Trust verifies the actors of the commands the gateway signed.
	Trust    *rpc.Verifier
	Log      *eventlog.Log
	DB       sqldb.DB
	Provider Provider
	// Notices, when set, carries the payment keys the provider called
	// back about (providerhttp.CallbackHandler feeds it): each makes its
	// payout ask the provider now rather than at its next poll
	// (ProviderNotice).
	Notices <-chan string
	Logger  *zap.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Service handles disbursement's commands and runs its payouts.
type Service struct {
	cfg      Config
	db       sqldb.DB
	log      *eventlog.Log
	store    Store
	provider Provider
	zl       *zap.Logger
	now      func() time.Time
	wake     chan struct{}
	// handed are the first steps of payouts the ledger consumer created
	// leased to this process's worker, while it runs (working).
	handed  chan handedStep
	working atomic.Bool
	outages outage.Log
	// payees are the payees as the log makes them, for the payout's
	// reserve step.
	payees *eventlog.Held[*assist.Payee]
}

// New returns the service on a migrated database.
func New(d Deps) *Service {
	d.Config.defaults()
	now := d.Now
	if now == nil {
		now = time.Now
	}
	return &Service{cfg: d.Config, db: d.DB, log: d.Log, store: NewSQLStore(d.DB), provider: d.Provider, zl: d.Logger,
		now: func() time.Time { return now().UTC() }, wake: make(chan struct{}, 1), handed: make(chan handedStep, 4*d.Config.Workers),
		payees: &eventlog.Held[*assist.Payee]{Kind: assist.KindPayee, Fold: assist.FoldPayee}}
}

// Migrate applies disbursement's schema to its database: the records of its log
// consumer and its own tables. Run applies it too.
func Migrate(ctx context.Context, db sqldb.DB) error {
	return sqldb.MigrateAll(ctx, db, eventlog.Migrations, Migrations)
}

// Run migrates disbursement's database, applies the log to the ledger, runs
// the payout worker and the hold sweeper, and serves commands until ctx
// ends.
func Run(ctx context.Context, d Deps) error {
	if err := Migrate(ctx, d.DB); err != nil {
		return fmt.Errorf("disbursement: %w", err)
	}
	s := New(d)
	if err := retry.Do(ctx, retry.Policy{First: 250 * time.Millisecond, Max: 5 * time.Second},
		func(err error) bool { return assist.IsCode(err, assist.CodeUnavailable) }, s.recordUnlogged); err != nil {
		return fmt.Errorf("disbursement: record funds and payees in the log: %w", err)
	}
	srv, err := rpc.Serve(ctx, d.NC, d.Trust, "eva-disbursement", "EVA disbursement: funds, holds, payees, payouts", d.Logger,
		rpc.On(disbursementapi.FundsList, s.Funds),
		rpc.On(disbursementapi.FundsGet, s.Fund),
		rpc.On(disbursementapi.FundsCreate, s.CreateFund),
		rpc.On(disbursementapi.FundsHistory, s.FundHistory),
		rpc.On(disbursementapi.FundsLedger, s.Ledger),
		rpc.On(disbursementapi.FundsAllocation, s.ChangeAllocation),
		rpc.On(disbursementapi.Reconcile, s.Reconcile),
		rpc.On(disbursementapi.PayeesList, s.Payees),
		rpc.On(disbursementapi.PayeesGet, s.Payee),
		rpc.On(disbursementapi.PayeesCreate, s.CreatePayee),
		rpc.On(disbursementapi.PayeeAccount, s.ChangePayeeAccount),
		rpc.On(disbursementapi.PayoutsList, s.Payouts),
		rpc.On(disbursementapi.PayoutRetry, s.RetryPayout),
		rpc.On(disbursementapi.PayoutCancel, s.CancelPayout),
		rpc.On(disbursementapi.HoldPlace, s.PlaceHold),
		rpc.On(disbursementapi.HoldRelease, s.ReleaseHold),
	)
	if err != nil {
		return fmt.Errorf("disbursement: %w", err)
	}
	defer srv.Stop()
	go pprof.Do(ctx, pprof.Labels("eva-worker", "payouts"), s.work) // its steps too, in profiles
	go s.sweep(ctx)
	if d.Notices != nil {
		go s.notices(ctx, d.Notices)
	}
	return d.Log.Consume(ctx, d.DB, eventlog.ConsumerConfig{
		Name:    ConsumerName,
		Filters: ledgerSubjects,
		// The worker is woken by the events that leave a step due that
		// no worker holds (pokeAfter), not after every batch.
		// Cases apart: each payout's events stay in order; the fund's
		// totals are written at the end of each lane's transaction.
		Lanes: 4,
	}, s.Apply, d.Logger)
}

// Consumer is the configuration of disbursement's ledger consumer: its
// durable name and the events it takes (simulators deliver them to Apply
// themselves, through eventlog.Deliver).
func Consumer() eventlog.ConsumerConfig {
	return eventlog.ConsumerConfig{Name: ConsumerName, Filters: slices.Clone(ledgerSubjects)}
}

// ConsumerName is the durable consumer that keeps the ledger.
const ConsumerName = "disbursement"

// ledgerSubjects are the events that move money or payouts.
var ledgerSubjects = []string{
	eventlog.Subject("*", "RequestApproved"),
	eventlog.Subject("*", "FundsReserved"),
	eventlog.Subject("*", "FundsReleased"),
	eventlog.Subject("*", "PayoutSent"),
	eventlog.Subject("*", "PayoutSettled"),
	eventlog.Subject("*", "PayoutFailed"),
	eventlog.Subject("*", "RequestRejected"),
	eventlog.Subject("*", "RequestWithdrawn"),
	eventlog.Subject("*", "PayoutRetried"),
	eventlog.SubjectOf(assist.KindFund, "*", "FundCreated"),
	eventlog.SubjectOf(assist.KindFund, "*", "FundAllocationChanged"),
	eventlog.SubjectOf(assist.KindPayee, "*", "PayeeCreated"),
	eventlog.SubjectOf(assist.KindPayee, "*", "PayeeAccountChanged"),
}

// notices applies the provider's callbacks until ctx ends.
func (s *Service) notices(ctx context.Context, keys <-chan string) {
	for {
		select {
		case <-ctx.Done():
			return
		case key := <-keys:
			if err := s.ProviderNotice(ctx, key); err != nil && ctx.Err() == nil {
				s.warn("provider callback; the poll will catch up", err, zap.String("key", key))
			}
		}
	}
}

// pokeAfter wakes the worker once the consumer's transaction that ctx runs
// in has committed: a step it made due is then there to claim. Outside a
// consumer's batch it wakes it at once.
func (s *Service) pokeAfter(ctx context.Context) {
	if !eventlog.AfterCommit(ctx, s.poke) {
		s.poke()
	}
}

// poke wakes the worker: a step it may claim is due.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// system is the actor of the events disbursement appends on its own.
var system = assist.Actor{Username: "eva", Role: assist.RoleSystem}
