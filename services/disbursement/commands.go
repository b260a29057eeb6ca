package disbursement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// Funds lists funds.
func (s *Service) Funds(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.FundsPage, error) {
	return s.store.Funds(ctx, r)
}

// Fund reads one fund. Errors: CodeNotFound.
func (s *Service) Fund(ctx context.Context, r disbursementapi.GetRequest) (disbursementapi.Fund, error) {
	return s.store.Fund(ctx, r.ID)
}

// FundHistory is a fund's burn-down, sampled to at most r.MaxPoints
// points. Errors: CodeNotFound.
func (s *Service) FundHistory(ctx context.Context, r disbursementapi.FundHistoryRequest) (disbursementapi.FundHistory, error) {
	pts, err := s.store.FundHistory(ctx, r.ID)
	if err != nil {
		return disbursementapi.FundHistory{}, err
	}
	max := r.MaxPoints
	if max <= 0 || max > disbursementapi.DefaultFundHistoryPoints {
		max = disbursementapi.DefaultFundHistoryPoints
	}
	return disbursementapi.FundHistory{FundID: r.ID, Points: samplePoints(pts, max)}, nil
}

// samplePoints keeps at most n points of a history: the first, and for
// each equal slice of the time after it, the state at the slice's end.
func samplePoints(pts []disbursementapi.FundPoint, n int) []disbursementapi.FundPoint {
	if len(pts) <= n || n < 2 {
		return pts
	}
	first, last := pts[0].At, pts[len(pts)-1].At
	span := last.Sub(first)
	out := []disbursementapi.FundPoint{pts[0]}
	slices := n - 1
	for i := 1; i < len(pts); i++ {
		// The slice of point i; keep i when the next point is in a later
		// slice (or there is none).
		slice := func(j int) int64 {
			if span <= 0 {
				return int64(slices - 1)
			}
			return min(int64(pts[j].At.Sub(first))*int64(slices)/int64(span), int64(slices-1))
		}
		if i == len(pts)-1 || slice(i+1) != slice(i) {
			out = append(out, pts[i])
		}
	}
	return out
}

// CreateFund creates a fund whose id is the command id: FundCreated on
// the fund's log, with its actor, then the fund's row (the consumer also
// applies the event; once either way).
//
// Errors: CodeForbidden unless finance, CodeInvalid naming the bad field,
// CodeConflict for a name in use.
func (s *Service) CreateFund(ctx context.Context, r disbursementapi.CreateFundRequest) (disbursementapi.Fund, error) {
	if r.Actor.Role != assist.RoleFinance {
		return disbursementapi.Fund{}, assist.Errorf(assist.CodeForbidden, "only finance creates funds")
	}
	var probs assist.Problems
	checkName(&probs, r.Name)
	assist.CheckAmount(&probs, "allocated_usd_cents", r.AllocatedCents, assist.MaxAllocationCents)
	checkCommand(&probs, r.CommandID)
	if err := probs.Err(); err != nil {
		return disbursementapi.Fund{}, err
	}
	name := strings.TrimSpace(r.Name)
	f, err := s.createFund(ctx, assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, name, r.AllocatedCents, "")
	if err != nil {
		return disbursementapi.Fund{}, err
	}
	return s.store.Fund(ctx, f.ID)
}

// createFund appends FundCreated (unless the command happened before) and
// stores the fund as the log has it.
func (s *Service) createFund(ctx context.Context, cmd assist.Cmd, name string, allocated int64, reason string) (*assist.Fund, error) {
	f, _, err := eventlog.ExecuteOn(ctx, s.log, eventlog.CommandOn[*assist.Fund]{Kind: assist.KindFund, ID: cmd.ID, CmdID: cmd.ID,
		Fold: assist.FoldFund,
		Decide: func(f *assist.Fund, _ uint64) (assist.Event, error) {
			e, err := assist.CreateFund(cmd, f, name, allocated)
			e.Reason = reason
			return e, err
		},
		Prepare: func(ctx context.Context, _ *assist.Fund, _ *assist.Event) error {
			return s.reserveName(ctx, assist.KindFund, name, cmd.ID)
		}})
	if err != nil {
		return nil, err
	}
	return f, s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.PutFund(ctx, q, *f) })
}

// nameGrace is how long a name stays reserved by a creation that is not
// in the log: that creation may still be appending. It is far longer than
// a command may run (rpc.DefaultTimeout), after which its append can no
// longer land; then the name goes to whoever asks for it next.
const nameGrace = 2 * time.Minute

// reserveName gives a fund's or payee's name to the creation id before
// its event is appended, so that of two creations of one name exactly one
// is appended (ADR 30). A name is another's when that one was created
// (its row is stored, or its event is in the log) or reserved it less
// than nameGrace ago; a reservation older than that whose creation is
// not in the log was never appended, and is taken over.
//
// Errors: CodeConflict naming the field name, CodeUnavailable.
func (s *Service) reserveName(ctx context.Context, kind assist.Kind, name, id string) error {
	for range 2 { // a second time when another took the stale name first
		now := s.now()
		h, err := s.store.ReserveName(ctx, kind, name, id, now)
		if err != nil || h.ID == id {
			return err
		}
		if h.Stored || now.Sub(h.Since) < nameGrace {
			return nameTaken(kind, name)
		}
		recs, err := s.log.History(ctx, kind, h.ID)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			return nameTaken(kind, name) // created; the consumer stores its row
		}
		if took, err := s.store.TakeName(ctx, kind, name, h.ID, id, now); err != nil || took {
			return err
		}
	}
	return nameTaken(kind, name)
}

// Payees lists payees.
func (s *Service) Payees(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayeesPage, error) {
	return s.store.Payees(ctx, r)
}

// Payee reads one payee. Errors: CodeNotFound.
func (s *Service) Payee(ctx context.Context, r disbursementapi.GetRequest) (disbursementapi.Payee, error) {
	return s.store.Payee(ctx, r.ID)
}

// CreatePayee creates a payee whose id is the command id: PayeeCreated on
// the payee's log, with its actor and account, then the payee's row.
//
// Errors: CodeForbidden unless finance, CodeInvalid naming the bad field,
// CodeConflict for a name in use.
func (s *Service) CreatePayee(ctx context.Context, r disbursementapi.CreatePayeeRequest) (disbursementapi.Payee, error) {
	if r.Actor.Role != assist.RoleFinance {
		return disbursementapi.Payee{}, assist.Errorf(assist.CodeForbidden, "only finance creates payees")
	}
	var probs assist.Problems
	checkName(&probs, r.Name)
	assist.CheckAccount(&probs, "account", r.Account)
	assist.CheckLine(&probs, "country", r.Country, 64)
	checkCommand(&probs, r.CommandID)
	if err := probs.Err(); err != nil {
		return disbursementapi.Payee{}, err
	}
	in := assist.Payee{Name: strings.TrimSpace(r.Name), Country: r.Country, Account: strings.TrimSpace(r.Account)}
	p, err := s.createPayee(ctx, assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, in, "")
	if err != nil {
		return disbursementapi.Payee{}, err
	}
	return s.store.Payee(ctx, p.ID)
}

// createPayee appends PayeeCreated (unless the command happened before)
// and stores the payee as the log has it.
func (s *Service) createPayee(ctx context.Context, cmd assist.Cmd, in assist.Payee, reason string) (*assist.Payee, error) {
	p, _, err := eventlog.ExecuteOn(ctx, s.log, eventlog.CommandOn[*assist.Payee]{Kind: assist.KindPayee, ID: cmd.ID, CmdID: cmd.ID,
		Fold: assist.FoldPayee,
		Decide: func(p *assist.Payee, _ uint64) (assist.Event, error) {
			e, err := assist.CreatePayee(cmd, p, in.Name, in.Country, in.Account)
			e.Reason = reason
			return e, err
		},
		Prepare: func(ctx context.Context, _ *assist.Payee, _ *assist.Event) error {
			return s.reserveName(ctx, assist.KindPayee, in.Name, cmd.ID)
		}})
	if err != nil {
		return nil, err
	}
	return p, s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.PutPayee(ctx, q, *p) })
}

// ChangePayeeAccount gives a payee a new account: PayeeAccountChanged on
// the payee's log, with its actor and reason, then the payee's row.
// Payouts whose funds were reserved before keep the account they
// recorded.
//
// Errors: CodeForbidden unless finance, CodeNotFound for no payee,
// CodeInvalid naming account or reason (or command_id).
func (s *Service) ChangePayeeAccount(ctx context.Context, r disbursementapi.ChangeAccountRequest) (disbursementapi.Payee, error) {
	if r.Actor.Role != assist.RoleFinance {
		return disbursementapi.Payee{}, assist.Errorf(assist.CodeForbidden, "only finance changes a payee's account")
	}
	var probs assist.Problems
	checkCommand(&probs, r.CommandID)
	if err := probs.Err(); err != nil {
		return disbursementapi.Payee{}, err
	}
	if !eventlog.ValidCaseID(r.ID) {
		return disbursementapi.Payee{}, assist.Errorf(assist.CodeNotFound, "no payee %q", r.ID)
	}
	cmd := assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}
	p, _, err := eventlog.ExecuteOn(ctx, s.log, eventlog.CommandOn[*assist.Payee]{Kind: assist.KindPayee, ID: r.ID, CmdID: r.CommandID,
		Fold: assist.FoldPayee,
		Decide: func(p *assist.Payee, _ uint64) (assist.Event, error) {
			return p.ChangeAccount(cmd, r.ID, r.Account, r.Reason)
		}})
	if err != nil {
		return disbursementapi.Payee{}, err
	}
	if err := s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.PutPayee(ctx, q, *p) }); err != nil {
		return disbursementapi.Payee{}, err
	}
	return s.store.Payee(ctx, p.ID)
}

// recordUnlogged records in the log the funds and payees stored before
// they were events (an installation from before ADR 24): each gets its
// creation event, with the id of its row as the command id (so a restart
// in between records it once), the time of the row, and the system as
// actor, the reason naming who created the row.
func (s *Service) recordUnlogged(ctx context.Context) error {
	funds, payees, err := s.store.Unlogged(ctx)
	if err != nil {
		return err
	}
	for _, f := range funds {
		cmd := assist.Cmd{ID: f.ID, Actor: system, At: f.CreatedAt}
		if _, err := s.createFund(ctx, cmd, f.Name, f.AllocatedCents, upgradeReason(f.CreatedBy)); err != nil {
			return fmt.Errorf("record fund %s: %w", f.ID, err)
		}
	}
	for _, p := range payees {
		cmd := assist.Cmd{ID: p.ID, Actor: system, At: p.CreatedAt}
		if _, err := s.createPayee(ctx, cmd, p, upgradeReason(p.CreatedBy)); err != nil {
			return fmt.Errorf("record payee %s: %w", p.ID, err)
		}
	}
	return nil
}

func upgradeReason(by string) string {
	return fmt.Sprintf("recorded at upgrade from the row %s created before funds and payees were events (ADR 24)", by)
}

// Payouts lists payouts, optionally of one request or status.
//
// Errors: CodeInvalid for a bad status or cursor.
func (s *Service) Payouts(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error) {
	switch r.Status {
	case "", disbursementapi.PayoutPending, disbursementapi.PayoutSent, disbursementapi.PayoutSettled, disbursementapi.PayoutFailed, disbursementapi.PayoutCancelled:
	default:
		var probs assist.Problems
		probs.Add("status", "must be one of pending, sent, settled, failed, cancelled")
		return disbursementapi.PayoutsPage{}, probs.Err()
	}
	return s.store.Payouts(ctx, r)
}

// PlaceHold holds money on a fund for an approval about to be recorded.
//
// Errors: CodeInsufficientFunds with the available amount, CodeInvalid
// naming fund_id, payee_id or amount_usd_cents.
func (s *Service) PlaceHold(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
	var probs assist.Problems
	assist.CheckAmount(&probs, "amount_usd_cents", r.AmountCents, assist.MaxAmountCents)
	if r.FundID == "" {
		probs.Add("fund_id", "is required")
	}
	if r.PayeeID == "" {
		probs.Add("payee_id", "is required")
	}
	if !eventlog.ValidCaseID(r.CaseID) || !eventlog.ValidCaseID(r.HoldID) {
		probs.Add("hold_id", "needs a request id and a hold id that are UUIDs")
	}
	if err := probs.Err(); err != nil {
		return disbursementapi.Hold{}, err
	}
	now := s.now()
	return s.store.PlaceHold(ctx, r, now.Add(s.cfg.HoldTTL), now)
}

// ReleaseHold returns a hold to its fund when no recorded approval uses
// it. The release is recorded in the case's log first (FundsReleased), so
// that it can never race with the approval it was placed for: whichever is
// appended first wins, and the ledger follows the log.
//
// Errors: CodeNotFound, CodeConflict when the case's approval uses it.
func (s *Service) ReleaseHold(ctx context.Context, r disbursementapi.ReleaseHoldRequest) (disbursementapi.Hold, error) {
	h, err := s.store.Hold(ctx, r.HoldID)
	if err != nil {
		return disbursementapi.Hold{}, err
	}
	if h.Status != disbursementapi.HoldHeld {
		return h, nil
	}
	if err := s.expire(ctx, h); err != nil {
		return disbursementapi.Hold{}, err
	}
	return s.store.Hold(ctx, r.HoldID)
}

// RetryPayout sends a failed payout again, as a new attempt. The retry is
// recorded in the case's log first (PayoutRetried), like a cancellation,
// so the two are ordered by the log: a retry after a cancellation — even
// one the ledger has not applied yet — is refused, and so is a
// cancellation after a retry. The ledger then moves from the event: here
// at once, and by the consumer after a crash (once either way).
//
// Errors: CodeForbidden unless finance, CodeNotFound, CodeConflict unless
// failed, CodeInvalid for a command id that is not a UUID.
func (s *Service) RetryPayout(ctx context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error) {
	if r.Actor.Role != assist.RoleFinance {
		return disbursementapi.Payout{}, assist.Errorf(assist.CodeForbidden, "only finance retries payouts")
	}
	p, err := s.store.Payout(ctx, r.PayoutID)
	if err != nil {
		return disbursementapi.Payout{}, err
	}
	if !eventlog.ValidCaseID(r.CommandID) {
		return disbursementapi.Payout{}, assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", r.CommandID)
	}
	c, err := s.log.Execute(ctx, eventlog.Command{CaseID: p.CaseID, ID: r.CommandID, Decide: func(c *assist.Case) (assist.Event, error) {
		if c.PayoutID != p.ID {
			return assist.Event{}, assist.Errorf(assist.CodeConflict, "payout %s is not the request's payout", p.ID)
		}
		return c.RetryPayout(assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, p.ID, p.Attempt+1)
	}})
	if err != nil {
		return disbursementapi.Payout{}, err
	}
	// c is the case right after the retry (also when this command was
	// retried by its client), so the attempt is the one it recorded.
	err = s.db.Tx(ctx, func(q sqldb.Querier) error {
		_, err := s.store.RetryPayout(ctx, q, p.ID, c.PayoutAttempt, newID(), s.now())
		return err
	})
	if err != nil {
		return disbursementapi.Payout{}, err
	}
	s.poke()
	return s.store.Payout(ctx, p.ID)
}

// CancelPayout gives up a failed payout: the release of its funds is
// recorded in the case, which closes; the ledger follows the event.
//
// Errors: CodeForbidden unless finance, CodeNotFound, CodeConflict unless
// failed, CodeInvalid without a reason.
func (s *Service) CancelPayout(ctx context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error) {
	if r.Actor.Role != assist.RoleFinance {
		return disbursementapi.Payout{}, assist.Errorf(assist.CodeForbidden, "only finance cancels payouts")
	}
	p, err := s.store.Payout(ctx, r.PayoutID)
	if err != nil {
		return disbursementapi.Payout{}, err
	}
	if !eventlog.ValidCaseID(r.CommandID) {
		return disbursementapi.Payout{}, assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", r.CommandID)
	}
	if _, err := s.log.Execute(ctx, eventlog.Command{CaseID: p.CaseID, ID: r.CommandID, Decide: func(c *assist.Case) (assist.Event, error) {
		if c.PayoutID != p.ID {
			return assist.Event{}, assist.Errorf(assist.CodeConflict, "payout %s is not the request's payout", p.ID)
		}
		return c.CancelPayout(assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, r.Reason)
	}}); err != nil {
		return disbursementapi.Payout{}, err
	}
	return s.store.Payout(ctx, p.ID)
}

var errReleasedBefore = errors.New("released before")

// expire records in the case's log that a hold goes back to its fund; the
// ledger follows when the consumer applies the event. A hold released
// before is not released again.
//
// Errors: CodeConflict when the case's recorded approval uses the hold,
// CodeNotFound when the hold's request does not exist.
func (s *Service) expire(ctx context.Context, h disbursementapi.Hold) error {
	cmdID := newID()
	_, err := s.log.Execute(ctx, eventlog.Command{CaseID: h.CaseID, ID: cmdID, Decide: func(c *assist.Case) (assist.Event, error) {
		if slices.Contains(c.ReleasedHolds, h.ID) {
			return assist.Event{}, errReleasedBefore
		}
		return c.ExpireHold(assist.Cmd{ID: cmdID, Actor: system, At: s.now()}, h.ID, h.FundID, h.AmountCents)
	}})
	if errors.Is(err, errReleasedBefore) {
		return nil
	}
	return err
}

func checkName(probs *assist.Problems, name string) {
	if strings.TrimSpace(name) == "" {
		probs.Add("name", "is required, up to 128 characters")
		return
	}
	assist.CheckLine(probs, "name", name, 128)
}

func checkCommand(probs *assist.Problems, id string) {
	if !eventlog.ValidCaseID(id) {
		probs.Add("command_id", "must be a UUID")
	}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// Ledger reads a page of a fund's double-entry ledger (journal.go).
//
// Errors: CodeNotFound.
func (s *Service) Ledger(ctx context.Context, r disbursementapi.LedgerRequest) (disbursementapi.Ledger, error) {
	return s.store.Ledger(ctx, r)
}

// ChangeAllocation sets a fund's allocation: FundAllocationChanged on the
// fund's log, with its actor and reason, then the fund's row and its
// ledger entry (the consumer applies the event too; once either way). A
// cut is first held on the fund like an approval (ADR 4), so that no
// approval takes the money between the check and the record; a cut the
// fund cannot spare is refused with the available amount.
//
// Errors: CodeForbidden unless finance, CodeNotFound for no fund,
// CodeInvalid naming allocated_usd_cents, reason or command_id,
// CodeInsufficientFunds naming the available amount, CodeConflict when
// another change of the allocation won a race.
func (s *Service) ChangeAllocation(ctx context.Context, r disbursementapi.ChangeAllocationRequest) (disbursementapi.Fund, error) {
	if r.Actor.Role != assist.RoleFinance {
		return disbursementapi.Fund{}, assist.Errorf(assist.CodeForbidden, "only finance changes a fund's allocation")
	}
	var probs assist.Problems
	checkCommand(&probs, r.CommandID)
	if err := probs.Err(); err != nil {
		return disbursementapi.Fund{}, err
	}
	if !eventlog.ValidCaseID(r.ID) {
		return disbursementapi.Fund{}, assist.Errorf(assist.CodeNotFound, "no fund %q", r.ID)
	}
	recs, err := s.log.History(ctx, assist.KindFund, r.ID)
	if err != nil {
		return disbursementapi.Fund{}, err
	}
	if !slices.ContainsFunc(recs, func(rec assist.Recorded) bool { return rec.Event.CommandID == r.CommandID }) {
		if err := s.changeAllocation(ctx, r, assist.FoldFund(recs)); err != nil {
			return disbursementapi.Fund{}, err
		}
	}
	// The fund's row and ledger from the event, as the consumer would.
	if err := s.journalCommand(ctx, r.ID, r.CommandID); err != nil {
		return disbursementapi.Fund{}, err
	}
	return s.store.Fund(ctx, r.ID)
}

// changeAllocation holds a cut, then appends the change.
func (s *Service) changeAllocation(ctx context.Context, r disbursementapi.ChangeAllocationRequest, f *assist.Fund) error {
	cmd := assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}
	if _, err := f.ChangeAllocation(cmd, r.ID, r.AllocatedCents, r.Reason, ""); err != nil {
		return err // checked before anything is held
	}
	cut := f.AllocatedCents - r.AllocatedCents
	holdID := ""
	if cut > 0 {
		holdID = r.CommandID
		now := s.now()
		if _, err := s.store.PlaceCut(ctx, r.ID, holdID, cut, now.Add(s.cfg.HoldTTL), now); err != nil {
			return err
		}
	}
	_, _, err := eventlog.ExecuteOn(ctx, s.log, eventlog.CommandOn[*assist.Fund]{Kind: assist.KindFund, ID: r.ID, CmdID: r.CommandID,
		Fold: assist.FoldFund,
		Decide: func(now *assist.Fund, _ uint64) (assist.Event, error) {
			if holdID != "" && now != nil && now.AllocatedCents-r.AllocatedCents != cut {
				return assist.Event{}, assist.Errorf(assist.CodeConflict,
					"the fund's allocation changed meanwhile (now %s); try again", assist.FormatUSD(now.AllocatedCents))
			}
			return now.ChangeAllocation(cmd, r.ID, r.AllocatedCents, r.Reason, holdID)
		}})
	if err != nil && holdID != "" {
		// Not recorded: the cut's hold goes back, unless the log has it
		// after all (then it is applied); the sweeper does the same if
		// this cannot.
		if serr := s.settleCut(ctx, r.ID, holdID); serr != nil {
			s.warn("give back an allocation cut", serr, zap.String("hold", holdID))
		}
	}
	return err
}

// journalCommand applies the fund's event of command cmdID to its row and
// the ledger.
func (s *Service) journalCommand(ctx context.Context, fundID, cmdID string) error {
	recs, err := s.log.History(ctx, assist.KindFund, fundID)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.Event.CommandID == cmdID {
			return s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.ApplyAllocation(ctx, q, rec.Seq, rec.Event) })
		}
	}
	return assist.Errorf(assist.CodeUnavailable, "the fund's change %s is not in its log yet", cmdID)
}

// settleCut ends an allocation cut's hold that is still held: applied when
// the fund's log records the cut, given back to the fund when it does not.
func (s *Service) settleCut(ctx context.Context, fundID, holdID string) error {
	recs, err := s.log.History(ctx, assist.KindFund, fundID)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if b, ok := rec.Event.Body.(assist.FundAllocationChanged); ok && b.HoldID == holdID {
			return s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.ApplyAllocation(ctx, q, rec.Seq, rec.Event) })
		}
	}
	return s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.ReleaseHold(ctx, q, holdID, s.now()) })
}

// Reconcile checks a provider's statement against the ledger's payouts
// (package reconcile): it names every payout missing from the statement,
// every line for no payout, a duplicated line and an altered amount,
// payee or currency. It changes nothing.
//
// Errors: CodeInvalid naming the first bad line's field.
func (s *Service) Reconcile(ctx context.Context, r disbursementapi.ReconcileRequest) (reconcile.Report, error) {
	for i, l := range r.Lines {
		raw, err := json.Marshal(l)
		if err == nil {
			_, err = reconcile.ParseLine(raw)
		}
		var le *reconcile.LineError
		if errors.As(err, &le) {
			var probs assist.Problems
			field := fmt.Sprintf("lines[%d]", i)
			if le.Field != "" {
				field += "." + le.Field
			}
			probs.Add(field, "%s", le.Message)
			return reconcile.Report{}, probs.Err()
		}
		if err != nil {
			return reconcile.Report{}, err
		}
		if l.PayoutID == "" { // from its key, as ParseLine reads it
			p, _ := reconcile.ParseLine(raw)
			r.Lines[i] = p
		}
	}
	posted, err := s.store.Posted(ctx)
	if err != nil {
		return reconcile.Report{}, err
	}
	return reconcile.Reconcile(posted, r.Lines), nil
}
