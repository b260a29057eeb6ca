package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/gateway"
)

// The demo data of `eva dev` (API.md): fixed ids, so that seeding again
// changes nothing.
const (
	DemoFundID   = "01900000-0000-7000-8000-00000000f001"
	DemoFundName = "EVA-DEMO"
)

// DemoPayees are the service providers `eva dev` seeds.
var DemoPayees = []disbursementapi.CreatePayeeRequest{
	{CommandID: "01900000-0000-7000-8000-00000000a001", Name: "Safe Haven Shelter Dhaka", Country: "BGD", Account: "BD-SIM-0001"},
	{CommandID: "01900000-0000-7000-8000-00000000a002", Name: "Mumbai Care Clinic", Country: "IND", Account: "IN-SIM-0002"},
	{CommandID: "01900000-0000-7000-8000-00000000a003", Name: "Global Travel Desk", Country: "", Account: "XX-SIM-0003"},
}

// Dev runs everything in one process on the platform's resources, seeds
// the demo accounts, fund and payees, prints how to use it, and runs until
// ctx ends.
func Dev(ctx context.Context, p *Platform, out io.Writer) error {
	if p.Config.HTTPListener == nil && p.Config.HTTPAddr != "" {
		// Listen before anything else: a port in use fails the start at
		// once, and with port 0 the banner names the port chosen.
		ln, err := net.Listen("tcp", p.Config.HTTPAddr)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		p.Config.HTTPListener = ln
		if _, port, _ := net.SplitHostPort(p.Config.HTTPAddr); port == "0" {
			p.Config.HTTPAddr = ln.Addr().String()
		}
	}
	if err := Migrate(ctx, p); err != nil {
		return err
	}
	if err := SeedUsers(ctx, p); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return RunAll(gctx, p) })
	g.Go(func() error {
		if err := SeedMoney(seeder(gctx, p), disbursementapi.NewClient(p.NC)); err != nil {
			return err
		}
		banner(out, p.Config)
		return nil
	})
	return g.Wait()
}

// SeedUsers creates the demo accounts (API.md) with the dev password.
func SeedUsers(ctx context.Context, p *Platform) error {
	gw, err := p.DB(ctx, "gateway")
	if err != nil {
		return err
	}
	if err := gateway.SeedUsers(ctx, gw, gateway.DemoUsers(p.Config.DevPassword)); err != nil {
		return fmt.Errorf("seed users: %w", err)
	}
	return nil
}

// Seed creates the demo accounts, fund and payees in a running
// installation (`eva seed`, e.g. for a compose demo): the users directly in
// the gateway's database, the money through the disbursement service.
func Seed(ctx context.Context, p *Platform) error {
	if err := Migrate(ctx, p); err != nil {
		return err
	}
	if err := SeedUsers(ctx, p); err != nil {
		return err
	}
	if p.Signer == nil {
		return errors.New("seeding signs its commands as eva-seed: give it --actor-key (EVA_ACTOR_KEY)")
	}
	return SeedMoney(seeder(ctx, p), disbursementapi.NewClient(p.NC))
}

// seedActor is who creates the demo fund and payees.
var seedActor = assist.Actor{Username: "eva-seed", Role: assist.RoleFinance}

// seeder returns a context whose commands are signed as seedActor.
func seeder(ctx context.Context, p *Platform) context.Context {
	return rpc.ActingFor(ctx, p.Signer, rpc.Principal{Username: seedActor.Username, Roles: []string{seedActor.Role}})
}

// SeedMoney creates the demo fund and payees, waiting for disbursement to
// answer; ctx signs as the seed actor (see seeder).
func SeedMoney(ctx context.Context, c *disbursementapi.Client) error {
	fin := seedActor
	seed := func() error {
		if _, err := c.CreateFund(ctx, disbursementapi.CreateFundRequest{CommandID: DemoFundID, Actor: fin,
			Name: DemoFundName, AllocatedCents: 100_000_000}); err != nil && !assist.IsCode(err, assist.CodeConflict) {
			return err
		}
		for _, p := range DemoPayees {
			p.Actor = fin
			if _, err := c.CreatePayee(ctx, p); err != nil && !assist.IsCode(err, assist.CodeConflict) {
				return err
			}
		}
		return nil
	}
	// Disbursement may still be starting: wait up to a minute for it.
	return retry.Do(ctx, retry.Policy{First: 100 * time.Millisecond, Max: time.Second, Budget: time.Minute},
		func(err error) bool { return assist.IsCode(err, assist.CodeUnavailable) },
		func(context.Context) error { return seed() })
}

func banner(out io.Writer, cfg Config) {
	fmt.Fprintf(out, `
EVA is running: http://%s
  Open it in a browser and sign in as any demo account below: each desk
  (requests, queue, funds, payees, payouts, audit, admin) is there.
  API description: http://%s/v1/openapi.json
  data: %s   (delete it to start afresh)

Demo accounts (password %q, from EVA_DEV_PASSWORD):
  ana  requester at BGD-DHAKA      raj  requester at IND-MUMBAI
  olu  approver                    mei  approver
  fin  finance                     aud  auditor
  adm  admin
Demo fund %s (id %s), 1,000,000.00 USD; demo payees: GET /v1/payees

Press Ctrl-C to stop.
`, cfg.HTTPAddr, cfg.HTTPAddr, cfg.DataDir, cfg.DevPassword, DemoFundName, DemoFundID)
}
