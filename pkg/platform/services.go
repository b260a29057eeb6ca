package platform

import (
	"context"
	"fmt"
	"sort"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/provsim"
	"github.com/eva-org/eva/services/gateway"
	"github.com/eva-org/eva/services/intake"
)

// runners start each service on the platform.
var runners = map[string]func(ctx context.Context, p *Platform) error{
	"intake": func(ctx context.Context, p *Platform) error {
		return intake.Run(ctx, intake.Deps{Config: intake.Config{Policy: p.Config.Policy}, NC: p.NC, Log: p.Log,
			DB: p.DB, Keys: p.Keys, Logger: p.Logger.Named("intake")})
	},
	"approval": func(ctx context.Context, p *Platform) error {
		return approval.Run(ctx, approval.Deps{Config: approval.Config{Policy: p.Config.Policy}, NC: p.NC, Log: p.Log,
			DB: p.DB, Holds: disbursement.NewClient(p.NC), Logger: p.Logger.Named("approval")})
	},
	"disbursement": func(ctx context.Context, p *Platform) error {
		if err := p.DB.Migrate(ctx, provsim.Migrations); err != nil {
			return err
		}
		sim := provsim.New(provsim.Config{SettleAfter: p.Config.SettleAfter}, p.DB)
		return disbursement.Run(ctx, disbursement.Deps{Config: disbursement.Config{HoldTTL: p.Config.HoldTTL},
			NC: p.NC, Log: p.Log, DB: p.DB, Provider: sim, Logger: p.Logger.Named("disbursement")})
	},
	"audit": func(ctx context.Context, p *Platform) error {
		return audit.Run(ctx, audit.Deps{NC: p.NC, Log: p.Log, DB: p.DB, Logger: p.Logger.Named("audit")})
	},
	"gateway": func(ctx context.Context, p *Platform) error {
		return gateway.Run(ctx, gateway.Deps{
			Config:       gateway.Config{Addr: p.Config.HTTPAddr, CookieSecure: p.Config.CookieSecure},
			Intake:       intake.NewClient(p.NC),
			Approval:     approval.NewClient(p.NC),
			Disbursement: disbursement.NewClient(p.NC),
			Audit:        audit.NewClient(p.NC),
			DB:           p.DB,
			Logger:       p.Logger.Named("gateway"),
			Registry:     p.Registry,
			Ready:        p.Ready,
		})
	},
}

// Services lists the services `eva serve` can run.
func Services() []string {
	var names []string
	for n := range runners {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Serve runs one service until ctx ends.
func Serve(ctx context.Context, p *Platform, service string) error {
	run, ok := runners[service]
	if !ok {
		return fmt.Errorf("unknown service %q; one of %v", service, Services())
	}
	return run(ctx, p)
}

// RunAll runs every service in this process until ctx ends or one fails.
func RunAll(ctx context.Context, p *Platform) error {
	g, ctx := errgroup.WithContext(ctx)
	for name, run := range runners {
		g.Go(func() error {
			if err := run(ctx, p); err != nil && ctx.Err() == nil {
				p.Logger.Error("service stopped", zap.String("service", name), zap.Error(err))
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Migrations lists every migration set, in the order they apply.
func Migrations() []sqldb.Migrations {
	return []sqldb.Migrations{eventlog.Migrations, intake.Migrations, approval.Migrations,
		disbursement.Migrations, provsim.Migrations, audit.Migrations, gateway.Migrations}
}

// Migrate applies every service's pending migrations.
func Migrate(ctx context.Context, db sqldb.DB) error {
	for _, m := range Migrations() {
		if err := db.Migrate(ctx, m); err != nil {
			return err
		}
	}
	return nil
}
