// Package notify tells the world outside EVA what happens to cases:
// webhooks (HMAC-signed JSON POSTs, retried with back-off until a 2xx) and
// e-mail. It follows the log with a durable consumer which, in the same
// database transaction as its record of the event, writes one outbox row
// per delivery due; a worker delivers the outbox. A restart therefore
// loses nothing (the rows are committed before the event is acked) and
// floods nothing (a delivered row is never sent again). See ADR 25.
package notify

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/notify/notifyapi"
)

// ConsumerName is notify's durable consumer of the log.
const ConsumerName = "notify"

// Config is notify's configuration.
type Config struct {
	// RetryFirst is the wait after a webhook's first failed attempt; it
	// doubles per attempt up to RetryMax. Defaults 1s and 10m.
	RetryFirst, RetryMax time.Duration
	// Timeout bounds one attempt; default 10s.
	Timeout time.Duration
	// Poll is how often the outbox is looked at when nothing wakes the
	// worker; default 1s.
	Poll time.Duration
	// SMTP is the mail server; the zero SMTP is e-mail off (no mail is
	// queued). ParseSMTP reads it from a URL.
	SMTP SMTP
	// PublicURL is EVA's address as its users reach it (e.g.
	// https://eva.example.org): mails link to <PublicURL>/requests/<id>.
	// Empty: mails carry no link.
	PublicURL string
	// Keep is how long delivered (or dropped) webhook deliveries and mails
	// stay in the outbox before the sweep deletes them; default 7 days.
	Keep time.Duration
	// SweepEvery is how often the sweep runs; default 1h.
	SweepEvery time.Duration
}

func (c Config) withDefaults() Config {
	if c.RetryFirst <= 0 {
		c.RetryFirst = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Minute
	}
	c.RetryMax = max(c.RetryMax, c.RetryFirst)
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Keep <= 0 {
		c.Keep = 7 * 24 * time.Hour
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = time.Hour
	}
	return c
}

// Deps is what notify runs on.
type Deps struct {
	Config Config
	NC     *nats.Conn
	// Trust verifies the actors of the commands the gateway signed.
	Trust *rpc.Verifier
	Log   *eventlog.Log
	DB    sqldb.DB
	// Keys seals webhook secrets (under the master key).
	Keys   *seal.Keyring
	Logger *zap.Logger
	// HTTP posts the webhooks; nil is a client that follows no redirect
	// (each attempt has Config.Timeout).
	HTTP *http.Client
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// SMTPTLS is the TLS configuration towards the mail server; nil
	// trusts the system's roots.
	SMTPTLS *tls.Config
}

// Service handles notify's commands and delivers its outbox.
type Service struct {
	cfg   Config
	log   *eventlog.Log
	db    sqldb.DB
	store Store
	keys  *seal.Keyring
	http  *http.Client
	zl    *zap.Logger
	now   func() time.Time
	mail  mailer
	// wake is signalled after the consumer commits new deliveries.
	wake chan struct{}
}

// New returns the service on a migrated database.
func New(d Deps) *Service {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	client := d.HTTP
	if client == nil {
		// A redirect is not a 2xx: it is retried, never followed.
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	zl := d.Logger
	if zl == nil {
		zl = zap.NewNop()
	}
	cfg := d.Config.withDefaults()
	return &Service{cfg: cfg, log: d.Log, db: d.DB, store: NewSQLStore(d.DB), keys: d.Keys, http: client, zl: zl,
		now: func() time.Time { return now().UTC() }, wake: make(chan struct{}, 1),
		mail: mailer{cfg: cfg.SMTP, tls: d.SMTPTLS, timeout: cfg.Timeout}}
}

// Store is the service's store.
func (s *Service) Store() Store { return s.store }

// Migrate applies notify's schema to its database: the records of its
// log consumer and its own tables. Run applies it too.
func Migrate(ctx context.Context, db sqldb.DB) error {
	return sqldb.MigrateAll(ctx, db, eventlog.Migrations, Migrations)
}

// Run migrates notify's database, serves its commands, follows the log
// into the outbox and delivers it, until ctx ends.
func Run(ctx context.Context, d Deps) error {
	if err := Migrate(ctx, d.DB); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	if d.Keys == nil {
		return fmt.Errorf("notify: Keys is required (webhook secrets are sealed)")
	}
	s := New(d)
	if s.cfg.SMTP.On() {
		s.zl.Info("e-mail on", zap.Stringer("smtp", s.cfg.SMTP), zap.String("public_url", s.cfg.PublicURL))
	} else {
		s.zl.Info("e-mail off (no --smtp)")
	}
	srv, err := rpc.Serve(ctx, d.NC, d.Trust, "eva-notify", "EVA notify: webhooks and e-mail", d.Logger,
		rpc.On(notifyapi.Webhooks, s.Webhooks),
		rpc.On(notifyapi.RegisterWebhook, s.RegisterWebhook),
		rpc.On(notifyapi.RemoveWebhook, s.RemoveWebhook),
	)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	defer srv.Stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Follow(ctx) })
	g.Go(func() error { s.Deliver(ctx); return nil })
	return g.Wait()
}

// Follow runs notify's durable consumer of case, webhook and user events
// until ctx ends.
func (s *Service) Follow(ctx context.Context) error {
	return s.log.Consume(ctx, s.db, eventlog.ConsumerConfig{Name: ConsumerName,
		Filters: []string{eventlog.AllSubjects, "eva." + string(assist.KindWebhook) + ".>",
			"eva." + string(assist.KindUser) + ".>"},
		// No command waits on a notification.
		AfterCommit: s.poke, Repair: s.repair, Linger: eventlog.OffPathLinger}, s.Apply, s.zl)
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
