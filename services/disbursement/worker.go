package disbursement

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/pkg/sqldb"
)

// lease is how long a worker owns a payout step it took; a worker that
// dies mid-step leaves it to another (or to itself, restarted) after this.
// A step takes milliseconds; a slow provider gets the lease renewed by
// nothing, and a second worker repeating the step is harmless.
const lease = 10 * time.Second

// work runs due payout steps until ctx ends: it looks for them when the
// consumer committed a step no worker holds, every Poll, and when a step
// ends while more were due than it had room for. Up to Workers steps run
// at once, and a new one starts as soon as one ends: a step never waits
// for the others taken with it. While it runs, the ledger consumer leases
// the payouts it creates to it and hands their first steps over
// (handOff): those start without a claim, before any claimed.
func (s *Service) work(ctx context.Context) {
	s.working.Store(true)
	defer s.working.Store(false)
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, s.cfg.Workers)
	freed := make(chan struct{}, 1)
	start := func(w Work) {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() {
				<-slots
				wg.Done()
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
			s.run(ctx, w)
		}()
	}
	var handed []handedStep // handed over while every slot was taken
	due := false            // steps may be due that found no free slot
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			due = true
		case <-s.wake:
			due = true
		case h := <-s.handed:
			handed = append(handed, h)
		case <-freed:
		}
		for len(handed) > 0 && len(slots) < cap(slots) {
			h := handed[0]
			handed = handed[1:]
			// A step left waiting past half its lease is left to be
			// claimed when the lease ends, so that it never runs beside
			// a worker that claimed it.
			if s.now().Sub(h.at) < lease/2 {
				start(h.w)
			}
		}
		if due {
			due = s.dispatch(ctx, slots, start)
		}
	}
}

// dispatch claims due steps for the free slots and starts each; it
// reports whether more may be due than there were slots for.
func (s *Service) dispatch(ctx context.Context, slots chan struct{}, start func(Work)) bool {
	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		if free == 0 {
			return true
		}
		steps, err := s.store.ClaimWork(ctx, s.now(), lease, free)
		if err != nil {
			s.warn("claim payout work", err)
			return false
		}
		for _, w := range steps {
			start(w)
		}
		if len(steps) < free {
			return false
		}
	}
	return false
}

// handedStep is a step handed to the worker, and when.
type handedStep struct {
	w  Work
	at time.Time
}

// handOff gives the worker the first step of a payout the ledger
// consumer created and leased to it, once committed. It never blocks:
// when the worker has more handed steps waiting than it takes at once,
// the step is left to its lease's end, when it is claimed as any other.
func (s *Service) handOff(w Work) {
	select {
	case s.handed <- handedStep{w: w, at: s.now()}:
	default:
	}
}

// RunDue runs the payout steps that are due now, each once, concurrently,
// and returns when none is left.
func (s *Service) RunDue(ctx context.Context) {
	for ctx.Err() == nil {
		steps, err := s.store.ClaimWork(ctx, s.now(), lease, 4*s.cfg.Workers)
		if err != nil {
			s.warn("claim payout work", err)
			return
		}
		if len(steps) == 0 {
			return
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, s.cfg.Workers)
		for _, w := range steps {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.run(ctx, w)
			}()
		}
		wg.Wait()
	}
}

// run does a claimed step (and those that follow it at once); a failure
// puts it off.
func (s *Service) run(ctx context.Context, w Work) {
	if err := s.step(ctx, w); err != nil {
		s.warn("payout step failed; will retry", err, zap.String("payout", w.ID), zap.String("stage", w.Stage))
		s.deferStep(ctx, w, err)
	}
}

// deferStep puts a failed step off: by one Poll when a dependency was out
// of reach, so that payouts resume as soon as it is back, else by eight.
// The step stays leased until its deferral is recorded: while the store is
// unreachable too, the deferral is tried again until it is recorded or the
// lease runs out, rather than leaving the step to wait out the lease.
func (s *Service) deferStep(ctx context.Context, w Work, err error) {
	wait := min(time.Minute, 8*s.cfg.Poll)
	if assist.IsCode(err, assist.CodeUnavailable) {
		wait = s.cfg.Poll
	}
	_ = retry.Do(ctx, retry.Policy{First: 50 * time.Millisecond, Max: s.cfg.Poll, Budget: lease}, retry.Always,
		func(ctx context.Context) error { return s.store.Defer(ctx, w.ID, s.now().Add(wait), err.Error()) })
}

// step does a payout's due step and goes on with the steps that follow
// it while nothing else has to happen first: the funds reserved, the
// provider is paid at once; a payment the provider reports settled is
// recorded settled at once. Each step appends the event that moves the
// case on, with the step's command id fixed beforehand (stepCmdID), so a
// step repeated after a crash, or by the ledger's schedule of the same
// stage, is recognised by the log and never appended twice. The ledger
// moves when the consumer applies the events; the payout stays leased to
// this worker meanwhile (Advance keeps a lease that has not run out). A
// run ends with a terminal event (settled, failed) or a deferral, which
// gives the lease back. Paying goes through the provider with the
// payout's idempotency key (payout id and attempt), recorded before the
// call: a repeated call returns the first result and never pays twice.
func (s *Service) step(ctx context.Context, w Work) error {
	var c *assist.Case // the case after the last step, when this run made one
	for {
		next, nc, err := s.stepOnce(ctx, w, c)
		if err != nil || next == nil {
			return err
		}
		w, c = *next, nc
	}
}

// stepOnce does one step of w; it returns the step that follows at once,
// if any, and the case after this one. c is the case as the previous step
// of this run left it (nil: read it from the log).
func (s *Service) stepOnce(ctx context.Context, w Work, c *assist.Case) (*Work, *assist.Case, error) {
	cmd := assist.Cmd{ID: w.CmdID, Actor: system, At: s.now()}
	switch w.Stage {
	case stageReserve:
		// The reservation records the account the payout will pay, as
		// the payee's events have it now (ADR 24).
		p, err := s.loggedPayee(ctx, w.PayeeID)
		if err != nil {
			return nil, nil, err
		}
		c, err := s.append(ctx, w, c, func(c *assist.Case) (assist.Event, error) {
			e, err := c.ReserveFunds(cmd, w.HoldID, w.ID)
			if b, ok := e.Body.(assist.FundsReserved); ok && err == nil {
				b.PayeeID, b.PayeeAccount, b.PayeeAccountSeq = p.ID, p.Account, p.AccountSeq
				e.Body = b
			}
			return e, err
		})
		if err != nil {
			return nil, nil, err
		}
		// The ledger's next stage, as the consumer will schedule it.
		next := w
		next.Stage, next.Attempt, next.CmdID = stagePay, 1, stepCmdID(w.ID, stagePay, 1)
		return &next, c, nil
	case stagePay:
		// Pay the account the reservation recorded in the case's log,
		// never a row that can be edited (ADR 24).
		if c == nil {
			var err error
			if c, err = s.log.Case(ctx, w.CaseID); err != nil {
				return nil, nil, err
			}
		}
		account := c.PayoutAccount
		if account == "" { // reserved before the account was recorded
			p, err := s.loggedPayee(ctx, w.PayeeID)
			if err != nil {
				return nil, nil, err
			}
			account = p.Account
		}
		r, err := s.provider.Pay(ctx, Payment{Key: paymentKey(w), PayeeID: w.PayeeID, Account: account, AmountCents: w.AmountCents})
		if err != nil {
			return nil, nil, fmt.Errorf("provider: %w", err)
		}
		next := w
		next.Stage, next.CmdID, next.ProviderRef = stageSent, stepCmdID(w.ID, stageSent, w.Attempt), r.Ref
		if r.Status == ReceiptSettled {
			// The provider's answer already says settled: the payment is
			// recorded sent and settled together, in one append.
			nc, err := s.log.ExecuteFromThen(ctx, c, s.recording(w, cmd, r),
				s.recording(next, assist.Cmd{ID: next.CmdID, Actor: system, At: s.now()}, r))
			return nil, nc, err
		}
		c, err := s.record(ctx, w, c, cmd, r)
		if err != nil || r.Status == ReceiptFailed {
			return nil, nil, err
		}
		return nil, c, s.store.Defer(ctx, w.ID, s.now().Add(s.cfg.SettlePoll), "")
	case stageSent:
		r, err := s.provider.Status(ctx, paymentKey(w))
		if errors.Is(err, ErrUnknownPayment) {
			// The provider lost it: record the failure; finance decides.
			r = Receipt{Status: ReceiptFailed, Error: "the provider does not know the payment"}
		} else if err != nil {
			return nil, nil, fmt.Errorf("provider: %w", err)
		}
		if r.Status == ReceiptSent {
			return nil, c, s.store.Defer(ctx, w.ID, s.now().Add(s.cfg.SettlePoll), "")
		}
		c, err := s.record(ctx, w, c, cmd, r)
		return nil, c, err
	}
	return nil, c, nil
}

// stepCmdID is the command id of a payout's step at a stage and attempt:
// the worker that goes on from the previous step and the ledger that
// schedules the stage when it applies the previous step's event name the
// same command, so the log appends the step's event once.
func stepCmdID(payoutID, stage string, attempt int) string {
	return uuid.NewSHA1(stepSpace, []byte(fmt.Sprintf("%s/%s/%d", payoutID, stage, attempt))).String()
}

// stepSpace is the namespace of the payout steps' command ids.
var stepSpace = uuid.MustParse("9b0c6c8e-2d1f-4f4e-9a57-5a3c1e7d2b60")

// record appends what the provider said about a payment.
func (s *Service) record(ctx context.Context, w Work, c *assist.Case, cmd assist.Cmd, r Receipt) (*assist.Case, error) {
	return s.log.ExecuteFrom(ctx, c, s.recording(w, cmd, r))
}

// recording is the command that records what the provider said about a
// payment at w's stage: sent (stagePay), settled (stageSent) or failed.
func (s *Service) recording(w Work, cmd assist.Cmd, r Receipt) eventlog.Command {
	return eventlog.Command{CaseID: w.CaseID, ID: w.CmdID, Decide: func(c *assist.Case) (assist.Event, error) {
		switch {
		case r.Status == ReceiptFailed:
			return c.FailPayout(cmd, w.ID, r.Error, w.Attempt)
		case w.Stage == stagePay:
			return c.SendPayout(cmd, w.ID, r.Ref, w.Attempt)
		default:
			return c.SettlePayout(cmd, w.ID, r.Ref)
		}
	}}
}

// append appends a step's event through the case's log; c is the case as
// this run's previous step left it, nil when there was none.
func (s *Service) append(ctx context.Context, w Work, c *assist.Case, decide func(*assist.Case) (assist.Event, error)) (*assist.Case, error) {
	return s.log.ExecuteFrom(ctx, c, eventlog.Command{CaseID: w.CaseID, ID: w.CmdID, Decide: decide})
}

// loggedPayee is a payee as its events in the log make it when asked (its
// history is read again only when the log's last event of the payee is
// not the one of the state held: eventlog.Held).
func (s *Service) loggedPayee(ctx context.Context, id string) (*assist.Payee, error) {
	held, err := s.payees.Get(ctx, s.log, id)
	if err != nil {
		return nil, err
	}
	if held == nil {
		return nil, fmt.Errorf("payee %s has no events in the log", id)
	}
	p := *held // the held state is shared
	return &p, nil
}

func paymentKey(w Work) string { return fmt.Sprintf("%s-%d", w.ID, w.Attempt) }

// ProviderNotice takes the provider's word that the payment key has news
// (a settlement callback): the payout it pays, when still waiting on that
// attempt's settlement, asks the provider now instead of at its next
// poll. The notice itself records nothing: the worker records what the
// provider answers when asked, through the case's log, so a duplicate,
// late or forged notice pays or settles nothing. A key of no payout is
// ignored.
func (s *Service) ProviderNotice(ctx context.Context, key string) error {
	i := strings.LastIndexByte(key, '-')
	if i <= 0 {
		return nil
	}
	attempt, err := strconv.Atoi(key[i+1:])
	if err != nil || attempt < 1 {
		return nil
	}
	if err := s.store.Nudge(ctx, key[:i], attempt, s.now()); err != nil {
		return err
	}
	s.poke()
	return nil
}

// sweep returns expired holds to their funds until ctx ends.
func (s *Service) sweep(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.SweepHolds(ctx)
	}
}

// SweepHolds releases the holds whose approval was not recorded in time.
// A hold whose approval was recorded is left to the consumer, which turns
// it into a reservation.
func (s *Service) SweepHolds(ctx context.Context) {
	holds, err := s.store.ExpiredHolds(ctx, s.now(), 100)
	if err != nil {
		s.warn("expired holds", err)
		return
	}
	for _, h := range holds {
		if h.CaseID == h.FundID { // a cut of the fund's allocation
			if err := s.settleCut(ctx, h.FundID, h.ID); err != nil {
				s.warn("settle allocation cut", err, zap.String("hold", h.ID))
			}
			continue
		}
		err := s.expire(ctx, h)
		switch {
		case err == nil, assist.IsCode(err, assist.CodeConflict):
			// Released, or its approval is recorded and the ledger will
			// reserve it.
		case assist.IsCode(err, assist.CodeNotFound):
			// A hold for a request that does not exist has no log to
			// record in: return it directly.
			err = s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.ReleaseHold(ctx, q, h.ID, s.now()) })
			if err != nil {
				s.warn("release orphan hold", err, zap.String("hold", h.ID))
			}
		default:
			s.warn("expire hold", err, zap.String("hold", h.ID))
		}
	}
}

// warn logs a failure of the worker or the sweeper; an unavailable
// dependency once per outage.
func (s *Service) warn(msg string, err error, fields ...zap.Field) {
	if assist.IsCode(err, assist.CodeUnavailable) {
		s.outages.Failed(s.zl, msg+": dependency unavailable", err, time.Now(), fields...)
		return
	}
	s.zl.Warn(msg, append(fields, zap.Error(err))...)
}
