// Package approval is where program officers decide: the review queue
// (projected from the log, missed deadlines first), claims that give one
// approver a case at a time, and the decisions — approve (after a hold on
// the fund), reject, or ask for information.
package approval

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/policy"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// ConsumerName is the durable consumer that keeps the queue.
const ConsumerName = "approval-queue"

// formerConsumer kept the whole-case read model that the queue replaced
// (migration 00002); Run deletes it.
const formerConsumer = "approval"

// Config is approval's configuration.
type Config struct {
	// Policy is the policy in force until an admin changes it; the
	// changes are in the log (pkg/policy).
	Policy assist.Policy
	// Replicas of the timers stream: 1 standalone, 3 in clusters.
	Replicas int
}

// Holds is what approval needs of disbursement: money held on a fund
// before an approval is recorded, and given back when it is not.
type Holds interface {
	PlaceHold(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error)
	ReleaseHold(ctx context.Context, r disbursementapi.ReleaseHoldRequest) (disbursementapi.Hold, error)
}

// Deps is what approval runs on.
type Deps struct {
	Config Config
	NC     *nats.Conn
	// Trust verifies the actors of the commands the gateway signed.
	Trust  *rpc.Verifier
	Log    *eventlog.Log
	DB     sqldb.DB
	Holds  Holds
	Logger *zap.Logger
	// Timers keeps deadlines and claim leases; Run opens it when nil.
	Timers *timers.Timers
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Service handles approval's commands and queries.
type Service struct {
	cfg    Config
	log    *eventlog.Log
	store  *SQLStore
	holds  Holds
	policy *policy.Book
	// sweeper asks for the sweeps of the cases due (nil without timers);
	// sweeping lets one sweep run at a time.
	sweeper  *sweeper
	sweeping sync.Mutex
	// backoffs hold back the cases whose due action keeps failing; fire
	// is fireCase (a test may fake it).
	backoffs backoffs
	fire     func(ctx context.Context, kind, caseID string) error
	// held keeps the cases the queue's consumer and the commands saw
	// last, so that a command decides without reading its case first.
	held *eventlog.HeldCases
	zl   *zap.Logger
	now  func() time.Time
}

// New returns the service on a migrated database.
func New(d Deps) *Service {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	s := &Service{cfg: d.Config, log: d.Log, store: NewSQLStore(d.DB), holds: d.Holds,
		policy: policy.New(d.Log, d.Config.Policy), held: &eventlog.HeldCases{}, zl: d.Logger,
		now: func() time.Time { return now().UTC() }}
	s.fire = s.fireCase
	if s.sweeper = newSweeper(d.Timers, s.now, d.Logger); s.sweeper != nil {
		s.store.dues = s.sweeper.want
	}
	return s
}

// Migrate applies approval's schema to its database: the records of its log
// consumer and its own tables. Run applies it too.
func Migrate(ctx context.Context, db sqldb.DB) error {
	return sqldb.MigrateAll(ctx, db, eventlog.Migrations, Migrations)
}

// Run migrates approval's database, projects the log into the queue,
// sweeps the deadlines and claim leases due (sweep.go), and serves
// commands until ctx ends.
func Run(ctx context.Context, d Deps) error {
	if err := Migrate(ctx, d.DB); err != nil {
		return fmt.Errorf("approval: %w", err)
	}
	if d.Timers == nil {
		// A cluster that is still electing, or busy, may not answer at
		// once: keep asking for a minute, each attempt with its own
		// deadline (as the event log is opened).
		t, err := retry.DoValue(ctx, retry.Policy{First: 250 * time.Millisecond, Max: 2 * time.Second, Budget: time.Minute},
			func(err error) bool { return assist.IsCode(err, assist.CodeUnavailable) },
			func(ctx context.Context) (*timers.Timers, error) {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				return timers.Open(actx, d.Log.JetStream(), timers.Config{Replicas: d.Config.Replicas})
			})
		if err != nil {
			return fmt.Errorf("approval: %w", err)
		}
		d.Timers = t
	}
	s := New(d)
	srv, err := rpc.Serve(ctx, d.NC, d.Trust, "eva-approval", "EVA approval: queue, claim, decide", d.Logger,
		rpc.On(approvalapi.Queue, s.Queue),
		rpc.On(approvalapi.Claim, caseview.Serve(s.Claim)),
		rpc.On(approvalapi.Release, caseview.Serve(s.Release)),
		rpc.On(approvalapi.Approve, caseview.Serve(s.Approve)),
		rpc.On(approvalapi.Reject, caseview.Serve(s.Reject)),
		rpc.On(approvalapi.RequestInfo, caseview.Serve(s.RequestInfo)),
		rpc.On(approvalapi.Policy, s.Policy),
		rpc.On(approvalapi.ChangePolicy, s.ChangePolicy),
		rpc.On(approvalapi.PolicyHistory, s.PolicyHistory),
	)
	if err != nil {
		return fmt.Errorf("approval: %w", err)
	}
	defer srv.Stop()
	if err := d.Log.DeleteConsumer(ctx, formerConsumer); err != nil {
		return fmt.Errorf("approval: %w", err)
	}
	if err := d.Log.DeleteConsumer(ctx, FormerSchedulerName); err != nil {
		return fmt.Errorf("approval: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	defer s.sweeper.bind(ctx)()
	g.Go(func() error {
		// What fell due while no approval ran is swept soon.
		err := retry.Do(ctx, retry.Policy{First: 250 * time.Millisecond, Max: 5 * time.Second}, retry.Always,
			func(ctx context.Context) error { return s.sweeper.ensure(ctx, s.now()) })
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("approval: first sweep: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		return d.Timers.Run(ctx, SweeperName, []string{TimerSweep}, s.Fire, d.Logger)
	})
	g.Go(func() error {
		return d.Timers.Run(ctx, FirerName, []string{TimerDeadline, TimerWarning, TimerClaim}, s.Fire, d.Logger)
	})
	g.Go(func() error {
		return d.Timers.Run(ctx, DueFirerName, []string{TimerDue}, s.Fire, d.Logger)
	})
	g.Go(func() error {
		// One lane, as intake's projection (ADR 36).
		return d.Log.Project(ctx, d.DB, eventlog.ConsumerConfig{Name: ConsumerName, Held: s.held}, s.store, d.Logger)
	})
	return g.Wait()
}
