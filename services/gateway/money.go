package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

type (
	fundBody struct {
		Name           string `json:"name"`
		AllocatedCents int64  `json:"allocated_usd_cents" jsonschema_description:"allocation, in integer US cents"`
	}
	payeeBody struct {
		Name    string `json:"name"`
		Country string `json:"country,omitempty"`
		Account string `json:"account"`
	}
	accountBody struct {
		Account string `json:"account" doc:"the new account, one line, up to 128 characters"`
		Reason  string `json:"reason" doc:"why the account changes; recorded with the event"`
	}
)

// payoutStatus is a payout's status (disbursementapi.Payout*).
type payoutStatus string

var payoutStatuses = []payoutStatus{disbursementapi.PayoutPending, disbursementapi.PayoutSent,
	disbursementapi.PayoutSettled, disbursementapi.PayoutFailed, disbursementapi.PayoutCancelled}

func financeActor(u Account) assist.Actor {
	return assist.Actor{Username: u.Username, Role: finance}
}

func listRequest(q pageQuery) disbursementapi.ListRequest {
	return disbursementapi.ListRequest{Limit: int(q.Limit), Cursor: string(q.Cursor)}
}

// listFunds is GET /v1/funds.
func (s *server) listFunds(r *http.Request, q pageQuery) (page[fundJSON], error) {
	p, err := s.disbursement.Funds(r.Context(), listRequest(q))
	if err != nil {
		return page[fundJSON]{}, err
	}
	return page[fundJSON]{Items: mapSlice(p.Items, toFundJSON), NextCursor: p.NextCursor}, nil
}

// getFund is GET /v1/funds/{id}.
func (s *server) getFund(r *http.Request) (fundJSON, error) {
	f, err := s.disbursement.Fund(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return fundJSON{}, err
	}
	return toFundJSON(f), nil
}

// fundPointJSON is a fund's money from At until the next point.
type fundPointJSON struct {
	At             timestamp `json:"at"`
	AllocatedCents int64     `json:"allocated_usd_cents" jsonschema_description:"in integer US cents"`
	ReservedCents  int64     `json:"reserved_usd_cents" jsonschema_description:"in integer US cents"`
	PaidCents      int64     `json:"paid_usd_cents" jsonschema_description:"in integer US cents"`
	AvailableCents int64     `json:"available_usd_cents" jsonschema_description:"in integer US cents"`
}

type fundHistoryJSON struct {
	FundID string          `json:"fund_id"`
	Items  []fundPointJSON `json:"items"`
}

func toFundPointJSON(p disbursementapi.FundPoint) fundPointJSON {
	return fundPointJSON{At: formatTime(p.At), AllocatedCents: p.AllocatedCents, ReservedCents: p.ReservedCents,
		PaidCents: p.PaidCents, AvailableCents: p.AvailableCents}
}

// fundHistory is GET /v1/funds/{id}/history: the fund's burn-down.
func (s *server) fundHistory(r *http.Request) (fundHistoryJSON, error) {
	id := chi.URLParam(r, "id")
	h, err := s.disbursement.FundHistory(r.Context(), id)
	if err != nil {
		return fundHistoryJSON{}, err
	}
	return fundHistoryJSON{FundID: id, Items: mapSlice(h.Points, toFundPointJSON)}, nil
}

// createFund is POST /v1/funds.
func (s *server) createFund(r *http.Request, c command, in fundBody) (fundJSON, error) {
	f, err := s.disbursement.CreateFund(r.Context(), disbursementapi.CreateFundRequest{
		CommandID: c.ID, Actor: financeActor(c.User), Name: in.Name, AllocatedCents: in.AllocatedCents,
	})
	if err != nil {
		return fundJSON{}, err
	}
	return toFundJSON(f), nil
}

// listPayees is GET /v1/payees.
func (s *server) listPayees(r *http.Request, q pageQuery) (page[payeeJSON], error) {
	p, err := s.disbursement.Payees(r.Context(), listRequest(q))
	if err != nil {
		return page[payeeJSON]{}, err
	}
	u := userOf(r)
	return page[payeeJSON]{Items: mapSlice(p.Items, func(p disbursementapi.Payee) payeeJSON { return toPayeeJSON(p).forViewer(u) }),
		NextCursor: p.NextCursor}, nil
}

// getPayee is GET /v1/payees/{id}.
func (s *server) getPayee(r *http.Request) (payeeJSON, error) {
	p, err := s.disbursement.Payee(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return payeeJSON{}, err
	}
	return toPayeeJSON(p).forViewer(userOf(r)), nil
}

// createPayee is POST /v1/payees.
func (s *server) createPayee(r *http.Request, c command, in payeeBody) (payeeJSON, error) {
	p, err := s.disbursement.CreatePayee(r.Context(), disbursementapi.CreatePayeeRequest{
		CommandID: c.ID, Actor: financeActor(c.User), Name: in.Name, Country: in.Country, Account: in.Account,
	})
	if err != nil {
		return payeeJSON{}, err
	}
	return toPayeeJSON(p), nil
}

// changePayeeAccount is POST /v1/payees/{id}/account.
func (s *server) changePayeeAccount(r *http.Request, c command, in accountBody) (payeeJSON, error) {
	p, err := s.disbursement.ChangePayeeAccount(r.Context(), disbursementapi.ChangeAccountRequest{
		CommandID: c.ID, Actor: financeActor(c.User), ID: chi.URLParam(r, "id"), Account: in.Account, Reason: in.Reason,
	})
	if err != nil {
		return payeeJSON{}, err
	}
	return toPayeeJSON(p), nil
}

// listPayoutsQuery is the query of GET /v1/payouts.
type listPayoutsQuery struct {
	Request requestID    `query:"request" doc:"only this request's payouts"`
	Status  payoutStatus `query:"status"`
	pageQuery
}

// listPayouts is GET /v1/payouts?request=&status=.
func (s *server) listPayouts(r *http.Request, q listPayoutsQuery) (page[payoutJSON], error) {
	req := listRequest(q.pageQuery)
	req.CaseID, req.Status = string(q.Request), string(q.Status)
	p, err := s.disbursement.Payouts(r.Context(), req)
	if err != nil {
		return page[payoutJSON]{}, err
	}
	return page[payoutJSON]{Items: mapSlice(p.Items, toPayoutJSON), NextCursor: p.NextCursor}, nil
}

// retryPayout is POST /v1/payouts/{id}/retry.
func (s *server) retryPayout(r *http.Request, c command, _ noBody) (payoutJSON, error) {
	p, err := s.disbursement.RetryPayout(r.Context(), disbursementapi.PayoutCommand{
		CommandID: c.ID, Actor: financeActor(c.User), PayoutID: chi.URLParam(r, "id"),
	})
	if err != nil {
		return payoutJSON{}, err
	}
	return toPayoutJSON(p), nil
}

// cancelPayout is POST /v1/payouts/{id}/cancel.
func (s *server) cancelPayout(r *http.Request, c command, in reasonBody) (payoutJSON, error) {
	p, err := s.disbursement.CancelPayout(r.Context(), disbursementapi.PayoutCommand{
		CommandID: c.ID, Actor: financeActor(c.User), PayoutID: chi.URLParam(r, "id"), Reason: in.Reason,
	})
	if err != nil {
		return payoutJSON{}, err
	}
	return toPayoutJSON(p), nil
}

// allocationBody is the body of POST /v1/funds/{id}/allocation.
type allocationBody struct {
	AllocatedCents int64  `json:"allocated_usd_cents" jsonschema_description:"the fund's new allocation, in integer US cents"`
	Reason         string `json:"reason" doc:"why the allocation changes; recorded with the event"`
}

// changeAllocation is POST /v1/funds/{id}/allocation.
func (s *server) changeAllocation(r *http.Request, c command, in allocationBody) (fundJSON, error) {
	f, err := s.disbursement.ChangeAllocation(r.Context(), disbursementapi.ChangeAllocationRequest{
		CommandID: c.ID, Actor: financeActor(c.User), ID: chi.URLParam(r, "id"), AllocatedCents: in.AllocatedCents, Reason: in.Reason,
	})
	if err != nil {
		return fundJSON{}, err
	}
	return toFundJSON(f), nil
}

// ledgerQuery is the query of GET /v1/funds/{id}/ledger.
type ledgerQuery struct {
	After uint64 `query:"after" doc:"the log position (seq) of the last entry seen (0: from the start)"`
	Limit limit  `query:"limit" doc:"how many entries a page holds at most"`
}

type balancesJSON struct {
	AllocatedCents int64 `json:"allocated_usd_cents" jsonschema_description:"credits less debits of allocation:<fund>, in integer US cents"`
	ReservedCents  int64 `json:"reserved_usd_cents" jsonschema_description:"balance of fund:<fund>:reserved, in integer US cents"`
	PaidCents      int64 `json:"paid_usd_cents" jsonschema_description:"balance of fund:<fund>:paid, in integer US cents"`
	AvailableCents int64 `json:"available_usd_cents" jsonschema_description:"balance of fund:<fund>:available, in integer US cents"`
}

type ledgerEntryJSON struct {
	Seq         uint64       `json:"seq" jsonschema_description:"log position of the event that caused the entry"`
	N           int          `json:"n" jsonschema_description:"the entry's place among its event's entries"`
	EventID     string       `json:"event_id"`
	EventType   string       `json:"event_type"`
	Kind        string       `json:"kind" jsonschema:"enum=allocate,enum=hold,enum=post,enum=void"`
	RequestID   string       `json:"request_id,omitempty"`
	HoldID      string       `json:"hold_id,omitempty"`
	PayoutID    string       `json:"payout_id,omitempty"`
	PayeeID     string       `json:"payee_id,omitempty"`
	ProviderRef string       `json:"provider_ref,omitempty"`
	Debit       string       `json:"debit" jsonschema_description:"the account the amount goes to"`
	Credit      string       `json:"credit" jsonschema_description:"the account the amount comes from"`
	AmountCents int64        `json:"amount_usd_cents" jsonschema_description:"in integer US cents, positive"`
	At          timestamp    `json:"at"`
	Actor       string       `json:"actor,omitempty"`
	Balances    balancesJSON `json:"balances" jsonschema_description:"the fund's balances right after the entry"`
}

type ledgerJSON struct {
	FundID   string            `json:"fund_id"`
	Items    []ledgerEntryJSON `json:"items"`
	Balances balancesJSON      `json:"balances" jsonschema_description:"the whole ledger's balances (not only this page's)"`
	Fund     fundJSON          `json:"fund" jsonschema_description:"the fund's figures, read with the balances"`
	// UnrecordedHoldsCents: held on the fund for approvals (or cuts)
	// being recorded at this moment; not in the log yet.
	UnrecordedHoldsCents int64  `json:"unrecorded_holds_usd_cents" jsonschema_description:"money held for approvals or allocation cuts not recorded in the log yet: fund.reserved = balances.reserved + this, fund.available = balances.available - this"`
	NextAfter            uint64 `json:"next_after,omitempty" jsonschema_description:"after= of the next page; absent on the last"`
	NextCursor           string `json:"next_cursor,omitempty" jsonschema_description:"the same as next_after"`
}

func toBalancesJSON(b disbursementapi.Balances) balancesJSON {
	return balancesJSON{AllocatedCents: b.AllocatedCents, ReservedCents: b.ReservedCents, PaidCents: b.PaidCents,
		AvailableCents: b.AvailableCents}
}

func toLedgerEntryJSON(e disbursementapi.LedgerEntry) ledgerEntryJSON {
	return ledgerEntryJSON{Seq: e.Seq, N: e.N, EventID: e.EventID, EventType: e.EventType, Kind: e.Kind, RequestID: e.CaseID,
		HoldID: e.HoldID, PayoutID: e.PayoutID, PayeeID: e.PayeeID, ProviderRef: e.ProviderRef, Debit: e.Debit, Credit: e.Credit,
		AmountCents: e.AmountCents, At: formatTime(e.At), Actor: e.Actor, Balances: toBalancesJSON(e.Balances)}
}

// fundLedger is GET /v1/funds/{id}/ledger?after=&limit=.
func (s *server) fundLedger(r *http.Request, q ledgerQuery) (ledgerJSON, error) {
	l, err := s.disbursement.Ledger(r.Context(), disbursementapi.LedgerRequest{ID: chi.URLParam(r, "id"), After: q.After,
		Limit: int(q.Limit)})
	if err != nil {
		return ledgerJSON{}, err
	}
	out := ledgerJSON{FundID: l.FundID, Items: mapSlice(l.Entries, toLedgerEntryJSON), Balances: toBalancesJSON(l.Balances),
		Fund: toFundJSON(l.Fund), UnrecordedHoldsCents: l.UnrecordedHoldsCents}
	if l.NextAfter > 0 {
		out.NextAfter, out.NextCursor = l.NextAfter, strconv.FormatUint(l.NextAfter, 10)
	}
	return out, nil
}

// statementLineJSON is one settled payment of a provider's statement (the
// format of services/disbursement/reconcile).
type statementLineJSON struct {
	ProviderRef string `json:"provider_ref" doc:"the provider's reference of the payment"`
	Key         string `json:"key,omitempty" doc:"the idempotency key EVA paid with, <payout id>-<attempt>"`
	PayoutID    string `json:"payout_id,omitempty" doc:"EVA's payout id; read from key when absent"`
	PayeeID     string `json:"payee_id"`
	Account     string `json:"account,omitempty"`
	AmountCents int64  `json:"amount_usd_cents" jsonschema_description:"in integer US cents"`
	Currency    string `json:"currency" doc:"USD"`
	SettledAt   string `json:"settled_at" doc:"RFC 3339"`
}

// reconcileBody is the body of POST /v1/payouts/reconcile.
type reconcileBody struct {
	Lines []statementLineJSON `json:"lines" doc:"the statement's lines, each one settled payment"`
}

type findingJSON struct {
	Kind        string `json:"kind" jsonschema:"enum=missing_from_statement,enum=not_in_ledger,enum=not_settled_in_ledger,enum=duplicate_line,enum=amount_differs,enum=payee_differs,enum=currency_differs"`
	PayoutID    string `json:"payout_id"`
	ProviderRef string `json:"provider_ref,omitempty"`
	Line        int    `json:"line,omitempty" jsonschema_description:"the statement line (from 1); absent for a payout the statement lacks"`
	Ledger      string `json:"ledger,omitempty" jsonschema_description:"the ledger's value, when the two differ"`
	Statement   string `json:"statement,omitempty" jsonschema_description:"the statement's value, when the two differ"`
	Detail      string `json:"detail"`
}

type reconcileJSON struct {
	OK       bool          `json:"ok"`
	Payouts  int           `json:"payouts" jsonschema_description:"payouts the ledger posted"`
	Lines    int           `json:"lines"`
	Matched  int           `json:"matched"`
	Findings []findingJSON `json:"findings"`
}

// reconcilePayouts is POST /v1/payouts/reconcile: a provider's statement
// checked against the ledger; it changes nothing.
func (s *server) reconcilePayouts(r *http.Request, _ command, in reconcileBody) (reconcileJSON, error) {
	lines := make([]reconcile.Line, len(in.Lines))
	for i, l := range in.Lines {
		at, err := time.Parse(time.RFC3339Nano, l.SettledAt)
		if err != nil {
			return reconcileJSON{}, invalid(fmt.Sprintf("lines[%d].settled_at", i), "must be an RFC 3339 time")
		}
		lines[i] = reconcile.Line{ProviderRef: l.ProviderRef, Key: l.Key, PayoutID: l.PayoutID, PayeeID: l.PayeeID, Account: l.Account,
			AmountCents: l.AmountCents, Currency: l.Currency, SettledAt: at}
	}
	rep, err := s.disbursement.Reconcile(r.Context(), disbursementapi.ReconcileRequest{Lines: lines})
	if err != nil {
		return reconcileJSON{}, err
	}
	out := reconcileJSON{OK: rep.OK, Payouts: rep.Payouts, Lines: rep.Lines, Matched: rep.Matched, Findings: []findingJSON{}}
	for _, f := range rep.Findings {
		out.Findings = append(out.Findings, findingJSON(f))
	}
	return out, nil
}
