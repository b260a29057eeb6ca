// Package intake is the service where requests enter EVA: requesters file,
// amend and withdraw requests and answer approvers' questions. It seals
// personal data under a per-case key, appends the events to the log, and
// keeps the list of requests projected from the log.
package intake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Config is intake's configuration.
type Config struct {
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
	return &Service{cfg: d.Config, payees: d.Payees, log: d.Log, store: store, keys: d.Keys, pool: newKeyPool(store, d.Keys, 256),
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
	srv, err := rpc.NewServer(ctx, d.NC, "eva-intake", "EVA intake: file, amend, withdraw, answer", d.Logger)
	if err != nil {
		return err
	}
	defer srv.Stop()
	if err := errors.Join(
		rpc.Handle(srv, intakeapi.File, caseview.Serve(s.File)),
		rpc.Handle(srv, intakeapi.Amend, caseview.Serve(s.Amend)),
		rpc.Handle(srv, intakeapi.Withdraw, caseview.Serve(s.Withdraw)),
		rpc.Handle(srv, intakeapi.Answer, caseview.Serve(s.Answer)),
		rpc.Handle(srv, intakeapi.Get, caseview.Serve(s.Get)),
		rpc.Handle(srv, intakeapi.List, s.List),
		rpc.Handle(srv, intakeapi.Cases, s.Cases),
		rpc.Handle(srv, intakeapi.Personal, s.Personal),
	); err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	return d.Log.Project(ctx, d.DB, eventlog.ConsumerConfig{Name: "intake"}, s.store, d.Logger)
}
