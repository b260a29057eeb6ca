package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
	"github.com/eva-org/eva/services/disbursement/provsim"
	"github.com/eva-org/eva/services/gateway"
	"github.com/eva-org/eva/services/gateway/web"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
	"github.com/eva-org/eva/services/notify"
	"github.com/eva-org/eva/services/notify/notifyapi"
)

// service is one of EVA's services: how to migrate its database, and how
// to run it.
type service struct {
	migrate func(ctx context.Context, db sqldb.DB) error
	run     func(ctx context.Context, p *Platform, b Bus, db sqldb.DB) error
}

var services = map[string]service{
	"intake": {intake.Migrate,
		func(ctx context.Context, p *Platform, b Bus, db sqldb.DB) error {
			return intake.Run(ctx, intake.Deps{Config: intake.Config{Policy: p.Config.Policy}, NC: b.NC, Trust: p.Trust, Log: b.Log,
				DB: db, Keys: p.Keys, Payees: disbursementapi.NewClient(b.NC), Logger: p.Logger.Named("intake")})
		}},
	"approval": {approval.Migrate,
		func(ctx context.Context, p *Platform, b Bus, db sqldb.DB) error {
			return approval.Run(ctx, approval.Deps{Config: approval.Config{Policy: p.Config.Policy, Replicas: p.Config.Replicas}, NC: b.NC, Trust: p.Trust, Log: b.Log,
				DB: db, Holds: disbursementapi.NewClient(b.NC), Logger: p.Logger.Named("approval")})
		}},
	"disbursement": {migrateDisbursement,
		func(ctx context.Context, p *Platform, b Bus, db sqldb.DB) error {
			if err := migrateDisbursement(ctx, db); err != nil { // with the simulator's own books
				return err
			}
			d := disbursement.Deps{Config: disbursement.Config{HoldTTL: p.Config.HoldTTL, Workers: p.Config.PayoutWorkers},
				NC: b.NC, Trust: p.Trust, Log: b.Log, DB: db, Logger: p.Logger.Named("disbursement")}
			if p.Config.ProviderURL == "" {
				d.Provider = provsim.New(provsim.Config{SettleAfter: p.Config.SettleAfter}, db)
				return disbursement.Run(ctx, d)
			}
			return runWithHTTPProvider(ctx, p.Config, d)
		}},
	"audit": {audit.Migrate,
		func(ctx context.Context, p *Platform, b Bus, db sqldb.DB) error {
			key, err := auditKey(p.Config)
			if err != nil {
				return err
			}
			return audit.Run(ctx, audit.Deps{NC: b.NC, Log: b.Log, DB: db, Key: key, Logger: p.Logger.Named("audit")})
		}},
	"notify": {notify.Migrate,
		func(ctx context.Context, p *Platform, b Bus, db sqldb.DB) error {
			return notify.Run(ctx, notify.Deps{Config: p.Config.Notify, NC: b.NC, Trust: p.Trust, Log: b.Log, DB: db,
				Keys: p.Keys, Logger: p.Logger.Named("notify")})
		}},
	"gateway": {gateway.Migrate,
		func(ctx context.Context, p *Platform, b Bus, db sqldb.DB) error {
			if p.Signer == nil {
				return errors.New("the gateway signs the actors of its commands: give it --actor-key (EVA_ACTOR_KEY)")
			}
			return gateway.Run(ctx, gateway.Deps{
				Config: gateway.Config{Addr: p.Config.HTTPAddr, CookieSecure: p.Config.CookieSecure,
					MetricsAddr: p.Config.MetricsAddr, RequireTOTP: p.Config.RequireTOTP,
					OIDC: p.Config.OIDC},
				Intake:       intakeapi.NewClient(b.NC),
				Approval:     approvalapi.NewClient(b.NC),
				Disbursement: disbursementapi.NewClient(b.NC),
				Audit:        auditapi.NewClient(b.NC),
				Notify:       notifyapi.NewClient(b.NC),
				Changes:      b.Log,
				Signer:       p.Signer,
				Events:       gateway.LogEvents(b.Log),
				DB:           db,
				Logger:       p.Logger.Named("gateway"),
				Registry:     p.Registry,
				Ready:        p.Ready,
				Listener:     p.Config.HTTPListener,
				UI: func(api http.Handler) (http.Handler, error) {
					return web.New(web.Deps{Config: web.Config{CookieSecure: p.Config.CookieSecure, SSO: p.Config.OIDC != nil,
						QueueRefresh: p.Config.QueueRefresh}, API: api,
						Logger: p.Logger.Named("web")})
				},
			})
		}},
}

// Services lists the services `eva serve` can run.
func Services() []string {
	var names []string
	for n := range services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Serve runs one service until ctx ends.
func Serve(ctx context.Context, p *Platform, service string) error {
	svc, ok := services[service]
	if !ok {
		return fmt.Errorf("unknown service %q; one of %v", service, Services())
	}
	db, err := p.DB(ctx, service)
	if err != nil {
		return err
	}
	b, err := p.Bus(ctx, service)
	if err != nil {
		return err
	}
	if err := svc.run(ctx, p, b, db); err != nil && ctx.Err() == nil {
		return err
	}
	return nil // stopped, as asked
}

// RunAll runs every service in this process until ctx ends or one fails.
func RunAll(ctx context.Context, p *Platform) error {
	g, ctx := errgroup.WithContext(ctx)
	for name := range services {
		g.Go(func() error {
			if err := Serve(ctx, p, name); err != nil && ctx.Err() == nil {
				p.Logger.Error("service stopped", zap.String("service", name), zap.Error(err))
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Migrate applies every service's pending migrations to its database.
func Migrate(ctx context.Context, p *Platform) error {
	for _, name := range Services() {
		db, err := p.DB(ctx, name)
		if err != nil {
			return err
		}
		if err := services[name].migrate(ctx, db); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// runWithHTTPProvider runs disbursement paying through the provider at
// cfg.ProviderURL, taking its callbacks at cfg.ProviderCallbacks when set.
func runWithHTTPProvider(ctx context.Context, cfg Config, d disbursement.Deps) error {
	client, err := providerhttp.New(providerhttp.Config{URL: cfg.ProviderURL})
	if err != nil {
		return err
	}
	d.Provider = client
	if cfg.ProviderCallbacks == "" {
		return disbursement.Run(ctx, d)
	}
	ln, err := net.Listen("tcp", cfg.ProviderCallbacks)
	if err != nil {
		return fmt.Errorf("provider callbacks: %w", err)
	}
	notices := make(chan string, 256)
	d.Notices = notices
	srv := &http.Server{Handler: providerhttp.CallbackHandler(providerhttp.Notices(notices), d.Logger), ReadHeaderTimeout: 5 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("provider callbacks: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer srv.Close()
		return disbursement.Run(gctx, d)
	})
	return g.Wait()
}

// migrateDisbursement migrates disbursement and, beside it, the provider
// simulator this wiring gives it.
func migrateDisbursement(ctx context.Context, db sqldb.DB) error {
	if err := disbursement.Migrate(ctx, db); err != nil {
		return err
	}
	return db.Migrate(ctx, provsim.Migrations)
}
