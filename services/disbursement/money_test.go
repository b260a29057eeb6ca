package disbursement_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/rpc/rpctest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/provsim"
)

func id() string { return uuid.Must(uuid.NewV7()).String() }

// Fifty approvers approve at once against a fund that covers ten: exactly
// ten holds are placed and paid, forty approvals are refused at once with
// the available amount, and the fund never goes below zero, on either
// database.
func TestFiftyConcurrentApprovalsAgainstAFundForTen(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		signer, trust := rpctest.Keys(t)
		ctx, cancel := context.WithCancel(rpc.ActingAsRequested(context.Background(), signer))
		defer cancel()
		el := eventlogtest.Open(t)
		nc, log := el.NC, el.Log
		if err := db.Migrate(ctx, provsim.Migrations); err != nil {
			t.Fatal(err)
		}
		sim := provsim.New(provsim.Config{}, db)
		zl := zaptest.NewLogger(t)
		done := make(chan error, 1)
		go func() {
			done <- disbursement.Run(ctx, disbursement.Deps{NC: nc, Trust: trust, Log: log, DB: db, Provider: sim, Logger: zl,
				Config: disbursement.Config{Poll: 20 * time.Millisecond, SettlePoll: 20 * time.Millisecond}})
		}()
		defer func() {
			cancel()
			<-done
		}()
		money := disbursementapi.NewClient(nc)
		fin := assist.Actor{Username: "fin", Role: assist.RoleFinance}
		var fund disbursementapi.Fund
		var err error
		fundID := id()
		evatest.Eventually(t, "disbursement to answer", func() bool { // it is starting
			fund, err = money.CreateFund(ctx, disbursementapi.CreateFundRequest{CommandID: fundID, Actor: fin, Name: "TEN", AllocatedCents: 10 * 1_000})
			return !assist.IsCode(err, assist.CodeUnavailable)
		})
		if err != nil {
			t.Fatal(err)
		}
		payee, err := money.CreatePayee(ctx, disbursementapi.CreatePayeeRequest{CommandID: id(), Actor: fin, Name: "Shelter", Account: "A-1"})
		if err != nil {
			t.Fatal(err)
		}
		approvals := approval.New(approval.Deps{Config: approval.Config{Policy: assist.DefaultPolicy()}, Log: log, DB: db,
			Holds: money, Logger: zl})

		// Fifty claimed cases, each asking 10.00 USD.
		ana := assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
		olu := assist.Actor{Username: "olu", Role: assist.RoleApprover}
		cases := make([]string, 50)
		for i := range cases {
			cases[i] = id()
			now := time.Now().UTC()
			ev, err := assist.Submit(assist.Cmd{ID: cases[i], Actor: ana, At: now}, assist.SubmitInput{Post: "BGD-DHAKA",
				Category: assist.Shelter, Urgency: assist.Critical, AmountCents: 1_000, Justification: "shelter tonight",
				BeneficiaryRefHash: []byte{byte(i)}, PayeeID: payee.ID}, assist.DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := log.Start(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if _, err := approvals.Claim(ctx, approvalapi.CaseCommand{CommandID: id(), Actor: olu, CaseID: cases[i]}); err != nil {
				t.Fatal(err)
			}
		}

		// Watch the fund while the approvals race.
		var watching atomic.Bool
		watching.Store(true)
		watchErr := make(chan error, 1)
		go func() {
			var bad error
			for watching.Load() {
				f, err := money.Fund(ctx, fund.ID)
				if err == nil && (f.AvailableCents < 0 || f.ReservedCents+f.PaidCents > f.AllocatedCents) {
					bad = errors.New("fund overspent: " + assist.FormatUSD(f.AvailableCents) + " available")
				}
				time.Sleep(time.Millisecond)
			}
			watchErr <- bad
		}()

		var wg sync.WaitGroup
		results := make([]error, len(cases))
		start := make(chan struct{})
		for i, c := range cases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, results[i] = approvals.Approve(ctx, approvalapi.ApproveRequest{CommandID: id(), Actor: olu, CaseID: c,
					AmountCents: 1_000, FundID: fund.ID, Note: "approved"})
			}()
		}
		close(start)
		wg.Wait()

		var ok []string
		for i, err := range results {
			var ae *assist.Error
			switch {
			case err == nil:
				ok = append(ok, cases[i])
			case errors.As(err, &ae) && ae.Code == assist.CodeInsufficientFunds:
				if ae.AvailableUSDCents == nil || *ae.AvailableUSDCents != 0 {
					t.Errorf("refusal without the available amount (0): %+v", ae)
				}
			default:
				t.Errorf("approval %d: unexpected %v", i, err)
			}
		}
		if len(ok) != 10 {
			t.Fatalf("%d approvals went through, want exactly 10", len(ok))
		}
		f, err := money.Fund(ctx, fund.ID)
		if err != nil {
			t.Fatal(err)
		}
		if f.AvailableCents != 0 || f.ReservedCents+f.PaidCents != 10_000 {
			t.Fatalf("fund after the race %+v", f)
		}

		// The ten are paid, once each; the forty never get an approval.
		for _, c := range ok {
			waitState(t, log, c, assist.StateDisbursed)
		}
		evatest.Eventually(t, "the ten payouts booked on the fund", func() bool {
			f, _ = money.Fund(ctx, fund.ID)
			return f.PaidCents == 10_000
		})
		if f.PaidCents != 10_000 || f.ReservedCents != 0 || f.AvailableCents != 0 {
			t.Fatalf("fund after payouts %+v", f)
		}
		paid, err := sim.Paid(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, a := range paid {
			sum += a
		}
		if len(paid) != 10 || sum != 10_000 {
			t.Fatalf("the provider paid %d payments totalling %d, want 10 totalling 10000", len(paid), sum)
		}
		for i, err := range results {
			if err == nil {
				continue
			}
			c, lerr := log.Case(ctx, cases[i])
			if lerr != nil || c.State != assist.StateUnderReview || c.HoldID != "" {
				t.Errorf("refused case %s: %+v %v", cases[i], c, lerr)
			}
		}
		watching.Store(false)
		if err := <-watchErr; err != nil {
			t.Fatal(err)
		}
	})
}

func waitState(t *testing.T, log *eventlog.Log, caseID string, want assist.State) {
	t.Helper()
	evatest.Await(t, evatest.Patience, fmt.Sprintf("case %s to be %s", caseID, want), func() (bool, string) {
		c, err := log.Case(context.Background(), caseID)
		if err != nil {
			return false, err.Error()
		}
		return c.State == want, string(c.State)
	})
}
