package gateway

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
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
