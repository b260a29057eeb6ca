// Package audit keeps EVA's audit archive: every event of the log, in log
// order with no gap, each with its hash and a hash chain over all events
// before it (see HashEvent and ChainNext). It serves auditors' queries —
// pages of the archive, a case's history, a case as of a time, the reads of
// a case's personal data, the archive's head — and verifies the archive
// against its own chain and against the event log (docs/design.md §4 Audit,
// invariant 5: the archive equals the log, event for event, hash for hash).
//
// Audit changes nothing but its archive: it has no commands.
package audit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// ConsumerName is the durable consumer that archives the log; it also keys
// the consumer's seen-records.
const ConsumerName = "audit"

// Config is audit's configuration.
type Config struct {
	// Batch is the most events archived in one transaction; default 128.
	Batch int
	// RetryDelay is the first back-off of an event that failed to be
	// archived; default 250ms.
	RetryDelay time.Duration
	// CheckpointEvery is how often a checkpoint is signed when the tree
	// grew; default 250ms, so that one is published within a second of
	// new events.
	CheckpointEvery time.Duration
}

// Deps is what audit runs on.
type Deps struct {
	Config Config
	NC     *nats.Conn
	Log    *eventlog.Log
	DB     sqldb.DB
	Logger *zap.Logger
	// Key signs the checkpoints; Run needs it.
	Key *Key
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// ArchiveStore is what audit keeps: the archive, its Merkle tree and the
// signed checkpoints.
type ArchiveStore interface {
	Store
	TreeStore
}

// Service archives the log and answers audit's queries.
type Service struct {
	cfg    Config
	log    *eventlog.Log
	db     sqldb.DB
	store  ArchiveStore
	access AccessLog
	key    *Key
	clock  func() time.Time
}

// New returns the service on a database migrated with eventlog.Migrations
// and Migrations.
func New(d Deps) *Service {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	store := NewSQLStore(d.DB)
	return &Service{cfg: d.Config, log: d.Log, db: d.DB, store: store, access: store.AccessLog(), key: d.Key, clock: now}
}

// Migrate applies audit's schema to its database: the records of its log
// consumer and its own tables. Run applies it too.
func Migrate(ctx context.Context, db sqldb.DB) error {
	return sqldb.MigrateAll(ctx, db, eventlog.Migrations, Migrations)
}

// Run migrates audit's database, adds to the Merkle tree what the archive
// holds beyond it, serves its queries, archives the log and signs
// checkpoints until ctx ends; then it returns nil.
//
// Errors: no key; a migration that fails; an endpoint or the consumer that
// cannot be registered.
func Run(ctx context.Context, d Deps) error {
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	if d.Key == nil {
		return errors.New("audit: no signing key for checkpoints")
	}
	if err := Migrate(ctx, d.DB); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	s := New(d)
	if err := s.fillTree(ctx); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	every := d.Config.CheckpointEvery
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	go s.keepPublishing(ctx, every, d.Logger)
	srv, err := rpc.Serve(ctx, d.NC, nil /* no command acts for a user */, "eva-audit", "EVA audit: archive, history, verification", d.Logger,
		rpc.On(auditapi.Events, s.Events),
		rpc.On(auditapi.Verify, s.Verify),
		rpc.On(auditapi.History, s.History),
		rpc.On(auditapi.AsOf, caseview.Serve(s.AsOf)),
		rpc.On(auditapi.Checkpoint, s.Checkpoint),
		rpc.On(auditapi.Key, s.Key),
		rpc.On(auditapi.LeafOf, s.Leaf),
		rpc.On(auditapi.Inclusion, s.InclusionProof),
		rpc.On(auditapi.Consistency, s.ConsistencyProof),
		rpc.On(auditapi.Access, s.Access),
		rpc.On(auditapi.DeadLetters, s.DeadLetters),
	)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer srv.Stop()
	if err := d.Log.Consume(ctx, d.DB, s.consumerConfig(), s.Archive, d.Logger); err != nil && ctx.Err() == nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// consumerConfig never lets the consumer give up on an event: a
// dead-lettered event would be a hole in the archive until a later event
// filled it. Archive fails only while the store or the log is unavailable,
// so retrying, with back-off, is always right.
func (s *Service) consumerConfig() eventlog.ConsumerConfig {
	return eventlog.ConsumerConfig{
		Name: ConsumerName,
		// Every event of every kind: the archive equals the log.
		Filters: eventlog.AllKinds(),
		// The archive is keyed by sequence and skips what it holds.
		SeenByHandler: true,
		Repair:        s.FillGap,
		Batch:         s.cfg.Batch,
		RetryDelay:    s.cfg.RetryDelay,
		MaxAttempts:   math.MaxInt32,
		// No command waits on the archive.
		Linger: eventlog.OffPathLinger,
	}
}
