// Package intake is the service where requests enter EVA: requesters file,
// amend and withdraw requests and answer approvers' questions. It seals
// personal data under a per-case key, appends the events to the log, and
// keeps the list of requests projected from the log.
package intake

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/policy"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Config is intake's configuration.
type Config struct {
	// Policy is the policy in force until an admin changes it; the
	// changes are in the log (pkg/policy).
	Policy assist.Policy
}

// Payees is what intake needs of disbursement: whether a payee exists.
type Payees interface {
	Payee(ctx context.Context, id string) (disbursementapi.Payee, error)
}

// Deps is what intake runs on.
type Deps struct {
	Config Config
	// Payees checks the payee a request names; nil checks only the form
	// of the id.
	Payees Payees
	NC     *nats.Conn
	// Trust verifies the actors of the commands the gateway signed.
	Trust  *rpc.Verifier
	Log    *eventlog.Log
	DB     sqldb.DB
	Keys   *seal.Keyring
	Logger *zap.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Service handles intake's commands and queries.
type Service struct {
	cfg    Config
	policy *policy.Book
	pool   *keyPool
	payees Payees
	known  sync.Map // payee ids seen to exist (payees are never deleted)
	log    *eventlog.Log
	store  Store
	keys   *seal.Keyring
	now    func() time.Time
}

// New returns the service on a migrated database.
func New(d Deps) *Service {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	store := NewSQLStore(d.DB)
	return &Service{cfg: d.Config, policy: policy.New(d.Log, d.Config.Policy), payees: d.Payees, log: d.Log, store: store, keys: d.Keys, pool: newKeyPool(store, d.Keys, 256),
		now: func() time.Time { return now().UTC() }}
}

// Migrate applies intake's schema to its database: the records of its log
// consumer and its own tables. Run applies it too.
func Migrate(ctx context.Context, db sqldb.DB) error {
	return sqldb.MigrateAll(ctx, db, eventlog.Migrations, Migrations)
}

// Run migrates intake's database, projects the log into the list of
// requests and serves commands until ctx ends.
func Run(ctx context.Context, d Deps) error {
	if err := Migrate(ctx, d.DB); err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	s := New(d)
	go s.pool.refill(ctx, func(err error) { d.Logger.Warn("make data keys", zap.Error(err)) })
	srv, err := rpc.Serve(ctx, d.NC, d.Trust, "eva-intake", "EVA intake: file, amend, withdraw, answer", d.Logger,
		rpc.On(intakeapi.File, caseview.Serve(s.File)),
		rpc.On(intakeapi.Amend, caseview.Serve(s.Amend)),
		rpc.On(intakeapi.Withdraw, caseview.Serve(s.Withdraw)),
		rpc.On(intakeapi.Answer, caseview.Serve(s.Answer)),
		rpc.On(intakeapi.Get, caseview.Serve(s.Get)),
		rpc.On(intakeapi.List, s.List),
		rpc.On(intakeapi.Cases, s.Cases),
		rpc.On(intakeapi.Personal, s.Personal),
		rpc.On(intakeapi.Erase, caseview.Serve(s.Erase)),
	)
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	defer srv.Stop()
	// One lane: the projection reads and writes a batch's cases once
	// (eventlog.BatchProjection), so a batch in one transaction costs what
	// a quarter of it in each of four did (ADR 36). Intake's commands read
	// cases from the log, not from the projection: only lists wait on it.
	return d.Log.Project(ctx, d.DB, eventlog.ConsumerConfig{Name: ConsumerName, Linger: eventlog.OffPathLinger}, s.store, d.Logger)
}

// ConsumerName is the durable consumer that keeps the whole-case read
// model.
const ConsumerName = "intake"
