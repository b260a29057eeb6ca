// Package gateway is EVA's HTTP API (API.md): it authenticates users,
// checks their roles and posts, turns requests into commands and queries on
// the services, makes every POST idempotent under an Idempotency-Key, and
// answers errors as RFC 9457 problems. It keeps its own small store:
// accounts, tokens and idempotency keys.
package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/outage"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/reconcile"
	"github.com/eva-org/eva/services/intake/intakeapi"
	"github.com/eva-org/eva/services/notify/notifyapi"
)

// Config is the gateway's configuration. Zero values take the defaults.
type Config struct {
	// Addr is where Run listens (default ":8080").
	Addr string
	// TokenTTL is how long a session lasts (default 12h).
	TokenTTL time.Duration
	// AccessTTL is how long an access token is accepted without reading
	// its session (default 5m): the longest a revocation takes to reach a
	// replica that cannot read the database.
	AccessTTL time.Duration
	// RevocationPoll is how often a replica reads new revocations
	// (default 1s).
	RevocationPoll time.Duration
	// MaxBodyBytes bounds a request body (default 64 KiB); larger → 413.
	MaxBodyBytes int64
	// CookieSecure marks the session cookie Secure (set it behind HTTPS).
	CookieSecure bool
	// IdempotencyTTL is how long an Idempotency-Key is remembered (default
	// 30 days). A key reused after that runs as a new command.
	IdempotencyTTL time.Duration
	// Password is the argon2id parameters of new password hashes (default
	// DefaultPasswordParams).
	Password PasswordParams
	// RequireTOTP makes approver, finance and admin accounts sign in with
	// a TOTP second factor; without one enrolled their sign-in is 403.
	// Accounts that enrolled one use it either way.
	RequireTOTP bool
	// Throttle is how failed sign-ins slow down the next ones (default
	// DefaultThrottlePolicy).
	Throttle ThrottlePolicy
	// MetricsAddr, when set, is a separate listen address that serves
	// /metrics alone (for example on a private network); /metrics on Addr
	// then answers 404. Empty serves /metrics on Addr with the API.
	MetricsAddr string
	// OIDC, when set, turns on single sign-on with an OpenID provider
	// (ADR 0023); nil: local accounts only, and the /v1/auth/oidc routes
	// answer 404.
	OIDC *OIDCConfig
}

// Defaults.
const (
	DefaultAddr           = ":8080"
	DefaultTokenTTL       = 12 * time.Hour
	DefaultAccessTTL      = 5 * time.Minute
	DefaultRevocationPoll = time.Second
	DefaultMaxBodyBytes   = 64 << 10
	DefaultIdempotencyTTL = 30 * 24 * time.Hour
)

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.AccessTTL <= 0 {
		c.AccessTTL = DefaultAccessTTL
	}
	if c.RevocationPoll <= 0 {
		c.RevocationPoll = DefaultRevocationPoll
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	c.Password = c.Password.orDefault()
	c.Throttle = c.Throttle.orDefault()
	return c
}

// Intake is what the gateway uses of the intake service (*intakeapi.Client).
type Intake interface {
	File(ctx context.Context, r intakeapi.FileRequest) (caseview.Case, error)
	Amend(ctx context.Context, r intakeapi.AmendRequest) (caseview.Case, error)
	Withdraw(ctx context.Context, r intakeapi.WithdrawRequest) (caseview.Case, error)
	Answer(ctx context.Context, r intakeapi.AnswerRequest) (caseview.Case, error)
	Get(ctx context.Context, caseID string) (caseview.Case, error)
	List(ctx context.Context, f intakeapi.ListFilter) (intakeapi.ListPage, error)
	Cases(ctx context.Context, ids []string) (intakeapi.CasesPage, error)
	Personal(ctx context.Context, r intakeapi.PersonalRequest) (intakeapi.Beneficiary, error)
	Erase(ctx context.Context, r intakeapi.EraseRequest) (caseview.Case, error)
}

// Approval is what the gateway uses of the approval service
// (*approvalapi.Client).
type Approval interface {
	Queue(ctx context.Context, r approvalapi.QueueRequest) (approvalapi.QueuePage, error)
	Claim(ctx context.Context, r approvalapi.CaseCommand) (caseview.Case, error)
	Release(ctx context.Context, r approvalapi.CaseCommand) (caseview.Case, error)
	Approve(ctx context.Context, r approvalapi.ApproveRequest) (caseview.Case, error)
	Reject(ctx context.Context, r approvalapi.RejectRequest) (caseview.Case, error)
	RequestInfo(ctx context.Context, r approvalapi.RequestInfoRequest) (caseview.Case, error)
	Policy(ctx context.Context, r approvalapi.PolicyRequest) (approvalapi.PolicyVersion, error)
	ChangePolicy(ctx context.Context, r approvalapi.ChangePolicyRequest) (approvalapi.PolicyVersion, error)
	PolicyHistory(ctx context.Context, r approvalapi.PolicyRequest) (approvalapi.PolicyHistoryPage, error)
}

// Disbursement is what the gateway uses of the disbursement service
// (*disbursementapi.Client).
type Disbursement interface {
	Funds(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.FundsPage, error)
	Fund(ctx context.Context, id string) (disbursementapi.Fund, error)
	FundHistory(ctx context.Context, id string) (disbursementapi.FundHistory, error)
	Ledger(ctx context.Context, r disbursementapi.LedgerRequest) (disbursementapi.Ledger, error)
	ChangeAllocation(ctx context.Context, r disbursementapi.ChangeAllocationRequest) (disbursementapi.Fund, error)
	Reconcile(ctx context.Context, r disbursementapi.ReconcileRequest) (reconcile.Report, error)
	CreateFund(ctx context.Context, r disbursementapi.CreateFundRequest) (disbursementapi.Fund, error)
	Payees(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayeesPage, error)
	Payee(ctx context.Context, id string) (disbursementapi.Payee, error)
	CreatePayee(ctx context.Context, r disbursementapi.CreatePayeeRequest) (disbursementapi.Payee, error)
	ChangePayeeAccount(ctx context.Context, r disbursementapi.ChangeAccountRequest) (disbursementapi.Payee, error)
	Payouts(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error)
	RetryPayout(ctx context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error)
	CancelPayout(ctx context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error)
}

// Audit is what the gateway uses of the audit service (*auditapi.Client).
type Audit interface {
	Events(ctx context.Context, r auditapi.EventsRequest) (auditapi.EventsPage, error)
	Verify(ctx context.Context, r auditapi.VerifyRequest) (auditapi.VerifyResult, error)
	History(ctx context.Context, caseID string) ([]auditapi.ArchivedEvent, error)
	AsOf(ctx context.Context, caseID string, at time.Time) (caseview.Case, error)
	Checkpoint(ctx context.Context) (auditapi.SignedCheckpoint, error)
	AccessCheckpoint(ctx context.Context) (auditapi.SignedCheckpoint, error)
	Key(ctx context.Context) (auditapi.VerifierKey, error)
	Leaf(ctx context.Context, seq uint64) (auditapi.Leaf, error)
	Inclusion(ctx context.Context, r auditapi.InclusionRequest) (auditapi.Proof, error)
	Consistency(ctx context.Context, r auditapi.ConsistencyRequest) (auditapi.Proof, error)
	Access(ctx context.Context, caseID string) ([]eventlog.Access, error)
	DeadLetters(ctx context.Context, r auditapi.DeadLettersRequest) (auditapi.DeadLettersPage, error)
}

// Notify is what the gateway uses of the notify service
// (*notifyapi.Client).
type Notify interface {
	Webhooks(ctx context.Context, r notifyapi.WebhooksRequest) (notifyapi.WebhookPage, error)
	RegisterWebhook(ctx context.Context, r notifyapi.RegisterWebhookRequest) (notifyapi.Webhook, error)
	RemoveWebhook(ctx context.Context, r notifyapi.RemoveWebhookRequest) (notifyapi.Webhook, error)
}

var (
	_ Notify       = (*notifyapi.Client)(nil)
	_ Intake       = (*intakeapi.Client)(nil)
	_ Approval     = (*approvalapi.Client)(nil)
	_ Disbursement = (*disbursementapi.Client)(nil)
	_ Audit        = (*auditapi.Client)(nil)
)

// Deps is what the gateway runs on.
type Deps struct {
	Config       Config
	Intake       Intake
	Approval     Approval
	Disbursement Disbursement
	Audit        Audit
	// Events receives the events of user administration (LogEvents);
	// nil keeps them in the user outbox.
	Events Events
	// Notify keeps the webhooks; nil answers their routes with 503.
	Notify Notify
	// Changes follows the log for GET /v1/changes; nil answers it with
	// 503.
	Changes Changes
	// Signer signs the actor of every command the gateway sends for a
	// signed-in user; the services refuse commands it did not sign.
	Signer *rpc.Signer
	// DB holds the gateway's store; Run migrates it.
	DB     sqldb.DB
	Logger *zap.Logger
	// Registry receives the HTTP metrics and is served on /metrics; nil
	// is a fresh registry.
	Registry *prometheus.Registry
	// Ready reports whether the services the gateway needs are reachable
	// (NATS, the stores); /readyz answers 503 while it fails. nil checks
	// only the gateway's database.
	Ready func(context.Context) error
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// UI makes the web UI, given the API to call in process; it serves
	// every path outside /v1/ and the operations endpoints. nil serves
	// the API alone.
	UI func(api http.Handler) (http.Handler, error)
	// Listener, when set, is served instead of listening on Config.Addr
	// (a test binds port 0 and keeps the socket, so no other process can
	// take the port between choosing and serving it). Run closes it.
	Listener net.Listener
}

// server holds what the handlers share.
type server struct {
	cfg          Config
	intake       Intake
	approval     Approval
	disbursement Disbursement
	audit        Audit
	notify       Notify
	follow       Changes
	// followers holds a token for each open change stream; an idle one
	// sends a comment every heartbeat.
	followers chan struct{}
	heartbeat time.Duration
	// stopping ends when the gateway shuts down: change streams, which
	// never finish by themselves, end then.
	stopping context.Context
	signer   *rpc.Signer
	events   Events
	relay    userRelay
	db       sqldb.DB
	store    Store
	// answers stores commands' answers under their Idempotency-Keys.
	answers  *answers
	log      *zap.Logger
	registry *prometheus.Registry
	ready    func(context.Context) error
	now      func() time.Time
	// dummyHash is verified against when the username is unknown, so that
	// a wrong username costs as much time as a wrong password.
	dummyHash []byte
	// keys signs access tokens; revoked is what this replica knows of
	// revocations.
	keys    keyring
	revoked revocations
	metrics *httpMetrics
	outages outage.Log
	ui      http.Handler
	// openAPI is the API's OpenAPI document, made from routes().
	openAPI []byte
	// metricsHTTP serves registry on /metrics, made on first use.
	metricsOnce sync.Once
	metricsHTTP http.Handler
	// sso is the OpenID provider's client; nil without Config.OIDC.
	sso *sso
}

func newServer(d Deps) (*server, error) {
	switch {
	case d.Intake == nil, d.Approval == nil, d.Disbursement == nil, d.Audit == nil:
		return nil, errors.New("gateway: Intake, Approval, Disbursement and Audit are required")
	case d.DB == nil:
		return nil, errors.New("gateway: DB is required")
	}
	s := &server{cfg: d.Config.withDefaults(), intake: d.Intake, approval: d.Approval, disbursement: d.Disbursement,
		audit: d.Audit, notify: d.Notify, follow: d.Changes, followers: make(chan struct{}, maxFollowers), heartbeat: changesHeartbeat, stopping: context.Background(),
		signer: d.Signer, events: d.Events, db: d.DB, store: NewSQLStore(d.DB), log: d.Logger, registry: d.Registry, ready: d.Ready}
	s.answers = &answers{store: s.store}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	s.now = func() time.Time { return now().UTC() }
	s.dummyHash = s.cfg.Password.hash(rand.Text())
	s.sso = newSSO(s.cfg.OIDC)
	m, err := newHTTPMetrics(s.registry)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if s.openAPI, err = openAPIDoc(s.routes()); err != nil {
		return nil, err
	}
	return s, nil
}

// Migrate applies the gateway's schema to its database. Run applies it too.
func Migrate(ctx context.Context, db sqldb.DB) error { return db.Migrate(ctx, Migrations) }

// Run migrates the gateway's database and serves the API on Config.Addr
// until ctx ends, then shuts down gracefully: requests in flight get up to
// 15 seconds to finish. Expired tokens and idempotency keys are swept
// hourly.
func Run(ctx context.Context, d Deps) error {
	if d.DB == nil {
		return errors.New("gateway: DB is required")
	}
	if err := Migrate(ctx, d.DB); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s, err := newServer(d)
	if err != nil {
		return err
	}
	s.stopping = ctx
	h, err := s.handler(d)
	if err != nil {
		return err
	}
	ln := d.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	s.log.Info("gateway listening", zap.String("addr", ln.Addr().String()))
	errc := make(chan error, 2)
	// Each connection's goroutine inherits the label: the gateway's HTTP
	// work shows in profiles as eva-http=gateway, apart from clients in
	// the same process (eva bench's are eva-bench=clients).
	go pprof.Do(ctx, pprof.Labels("eva-http", "gateway"), func(context.Context) { errc <- srv.Serve(ln) })
	if s.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("gateway metrics: %w", err)
		}
		msrv := &http.Server{Handler: s.metricsOnly(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: zap.NewStdLog(s.log.Named("metrics"))}
		s.log.Info("gateway metrics listening", zap.String("addr", mln.Addr().String()))
		go func() { errc <- msrv.Serve(mln) }()
		defer msrv.Close()
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { s.sweep(sweepCtx, time.Hour) })
	bg.Go(func() { s.watchRevocations(sweepCtx, s.cfg.RevocationPoll) })
	bg.Go(func() { s.watchUserOutbox(sweepCtx, time.Second) })
	defer func() {
		stopSweep()
		bg.Wait()
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close() // requests still running after the grace period are cut
		return fmt.Errorf("gateway shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// sweep forgets expired tokens, stale sign-in counters and old
// idempotency keys every interval
// until ctx ends.
func (s *server) sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := s.now()
		if _, err := s.store.DeleteExpiredTokens(ctx, now); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep tokens", zap.Error(err))
		}
		if _, err := s.store.DeleteRevocationsBefore(ctx, now.Add(-s.cfg.AccessTTL-time.Hour)); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep revocations", zap.Error(err))
		}
		if _, err := s.store.DeleteStaleThrottles(ctx, s.cfg.Throttle, now); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep sign-in counters", zap.Error(err))
		}
		if _, err := s.store.DeleteIdemBefore(ctx, now.Add(-s.cfg.IdempotencyTTL)); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep idempotency keys", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
