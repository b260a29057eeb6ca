// Package disbursementapi is the contract of the disbursement service:
// its endpoints (subjects with their request and reply types) and a typed
// client. The gateway, approval and intake know disbursement only through
// this package.
package disbursementapi

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// Disbursement's endpoints.
var (
	FundsList    = rpc.Endpoint[ListRequest, FundsPage]{Subject: "eva.disbursement.funds_list", Idempotent: true}
	FundsGet     = rpc.Endpoint[GetRequest, Fund]{Subject: "eva.disbursement.funds_get", Idempotent: true}
	FundsCreate  = rpc.Endpoint[CreateFundRequest, Fund]{Subject: "eva.disbursement.funds_create", Idempotent: true}
	FundsHistory = rpc.Endpoint[FundHistoryRequest, FundHistory]{Subject: "eva.disbursement.funds_history", Idempotent: true}
	PayeesList   = rpc.Endpoint[ListRequest, PayeesPage]{Subject: "eva.disbursement.payees_list", Idempotent: true}
	PayeesGet    = rpc.Endpoint[GetRequest, Payee]{Subject: "eva.disbursement.payees_get", Idempotent: true}
	PayeesCreate = rpc.Endpoint[CreatePayeeRequest, Payee]{Subject: "eva.disbursement.payees_create", Idempotent: true}
	PayeeAccount = rpc.Endpoint[ChangeAccountRequest, Payee]{Subject: "eva.disbursement.payee_account", Idempotent: true}
	PayoutsList  = rpc.Endpoint[ListRequest, PayoutsPage]{Subject: "eva.disbursement.payouts_list", Idempotent: true}
	PayoutRetry  = rpc.Endpoint[PayoutCommand, Payout]{Subject: "eva.disbursement.payout_retry"}
	PayoutCancel = rpc.Endpoint[PayoutCommand, Payout]{Subject: "eva.disbursement.payout_cancel", Idempotent: true}
	HoldPlace    = rpc.Endpoint[PlaceHoldRequest, Hold]{Subject: "eva.disbursement.hold_place", Idempotent: true}
	HoldRelease  = rpc.Endpoint[ReleaseHoldRequest, Hold]{Subject: "eva.disbursement.hold_release", Idempotent: true}
	FundsLedger  = rpc.Endpoint[LedgerRequest, Ledger]{Subject: "eva.disbursement.funds_ledger", Idempotent: true}
	// Reconcile checks a provider's statement against the ledger; it
	// changes nothing.
	Reconcile = rpc.Endpoint[ReconcileRequest, reconcile.Report]{Subject: "eva.disbursement.reconcile", Idempotent: true}
	// FundsAllocation changes a fund's allocation; the command id makes a
	// retry answer the same.
	FundsAllocation = rpc.Endpoint[ChangeAllocationRequest, Fund]{Subject: "eva.disbursement.funds_allocation", Idempotent: true}
)

// Ledger accounts of a fund (ADR 29). Each entry moves money from its
// credit account to its debit account; a balance is debits minus credits.
// AccountAllocation is where the fund's money comes from: its balance is
// minus the allocation.
func AccountAllocation(fundID string) string { return "allocation:" + fundID }

// AccountAvailable holds the fund's money that no approval holds.
func AccountAvailable(fundID string) string { return "fund:" + fundID + ":available" }

// AccountReserved holds the money of recorded approvals not paid yet.
func AccountReserved(fundID string) string { return "fund:" + fundID + ":reserved" }

// AccountPaid holds the money the provider settled to payees.
func AccountPaid(fundID string) string { return "fund:" + fundID + ":paid" }

// Kinds of ledger entries.
const (
	EntryAllocate = "allocate" // allocation:F ⇄ fund:F:available (a fund's creation, or a change of its allocation)
	EntryHold     = "hold"     // fund:F:available → fund:F:reserved (an approval recorded)
	EntryPost     = "post"     // fund:F:reserved → fund:F:paid (a payout settled)
	EntryVoid     = "void"     // fund:F:reserved → fund:F:available (a hold released, a payout cancelled, a second approval lower)
)

// LedgerRequest pages through a fund's ledger: the entries after log
// position After (0: from the start), at most Limit (default 50, most 500).
type LedgerRequest struct {
	ID    string `json:"id"`
	After uint64 `json:"after,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// Balances are a fund's money as its ledger has it.
type Balances struct {
	AllocatedCents int64 `json:"allocated_usd_cents"`
	ReservedCents  int64 `json:"reserved_usd_cents"`
	PaidCents      int64 `json:"paid_usd_cents"`
	AvailableCents int64 `json:"available_usd_cents"`
}

// Apply is b after entry e of the same fund.
func (b Balances) Apply(e LedgerEntry) Balances {
	move := func(account string, by int64) {
		switch account {
		case AccountAllocation(e.FundID):
			b.AllocatedCents -= by
		case AccountAvailable(e.FundID):
			b.AvailableCents += by
		case AccountReserved(e.FundID):
			b.ReservedCents += by
		case AccountPaid(e.FundID):
			b.PaidCents += by
		}
	}
	move(e.Debit, e.AmountCents)
	move(e.Credit, -e.AmountCents)
	return b
}

// LedgerEntry is one balanced double entry: AmountCents moved from Credit
// to Debit, caused by the event of log position Seq (N orders the entries
// of one event). Balances are the fund's right after it.
type LedgerEntry struct {
	Seq         uint64    `json:"seq"`
	N           int       `json:"n"`
	EventID     string    `json:"event_id"`
	EventType   string    `json:"event_type"`
	Kind        string    `json:"kind"`
	FundID      string    `json:"fund_id"`
	CaseID      string    `json:"request_id,omitempty"`
	HoldID      string    `json:"hold_id,omitempty"`
	PayoutID    string    `json:"payout_id,omitempty"`
	PayeeID     string    `json:"payee_id,omitempty"`
	ProviderRef string    `json:"provider_ref,omitempty"`
	Debit       string    `json:"debit"`
	Credit      string    `json:"credit"`
	AmountCents int64     `json:"amount_usd_cents"`
	At          time.Time `json:"at"`
	Actor       string    `json:"actor,omitempty"`
	Balances    Balances  `json:"balances"`
}

// Ledger is a page of a fund's ledger with its balances. Balances are the
// ledger's at its end (every entry, not only this page's); Fund is the
// fund's row read in the same statement. The two agree except for
// UnrecordedHoldsCents: money held on the fund for approvals (or
// allocation cuts) being recorded right now, which the fund counts as
// reserved and the log does not have yet: Fund.Reserved =
// Balances.Reserved + UnrecordedHoldsCents, Fund.Available =
// Balances.Available - UnrecordedHoldsCents, allocated and paid equal
// (once the ledger consumer has applied the fund's last event).
type Ledger struct {
	FundID               string        `json:"fund_id"`
	Entries              []LedgerEntry `json:"entries"`
	Balances             Balances      `json:"balances"`
	Fund                 Fund          `json:"fund"`
	UnrecordedHoldsCents int64         `json:"unrecorded_holds_usd_cents"`
	// NextAfter is the After of the next page; 0 when this is the last.
	NextAfter uint64 `json:"next_after,omitempty"`
}

// ReconcileRequest is a provider's statement to check against the
// ledger (the format of package reconcile).
type ReconcileRequest struct {
	Lines []reconcile.Line `json:"lines"`
}

// ChangeAllocationRequest sets fund ID's allocation, with the reason.
type ChangeAllocationRequest struct {
	CommandID      string       `json:"command_id"`
	Actor          assist.Actor `json:"actor"`
	ID             string       `json:"id"`
	AllocatedCents int64        `json:"allocated_usd_cents"`
	Reason         string       `json:"reason"`
}

// Fund is money allocated to assistance. Available = allocated - reserved
// - paid, never below zero.
type Fund struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	AllocatedCents int64     `json:"allocated_usd_cents"`
	ReservedCents  int64     `json:"reserved_usd_cents"`
	PaidCents      int64     `json:"paid_usd_cents"`
	AvailableCents int64     `json:"available_usd_cents"`
	CreatedAt      time.Time `json:"created_at"`
}

// FundHistoryRequest asks for a fund's money over time. MaxPoints bounds
// the answer (default and most: 500); a longer history is sampled, each
// point the state at the end of an equal slice of time.
type FundHistoryRequest struct {
	ID        string `json:"id"`
	MaxPoints int    `json:"max_points,omitempty"`
}

// Fund history bounds.
const (
	DefaultFundHistoryPoints = 500
)

// FundPoint is a fund's money from At until the next point.
type FundPoint struct {
	At             time.Time `json:"at"`
	AllocatedCents int64     `json:"allocated_usd_cents"`
	ReservedCents  int64     `json:"reserved_usd_cents"`
	PaidCents      int64     `json:"paid_usd_cents"`
	AvailableCents int64     `json:"available_usd_cents"`
}

// FundHistory is a fund's burn-down: its money after each change, in time
// order, from its creation (reserved and paid 0) on. It is derived from
// the ledger's holds: a hold reserves its amount when placed, and at its
// last change moves it to paid or back to the fund.
type FundHistory struct {
	FundID string      `json:"fund_id"`
	Points []FundPoint `json:"points"`
}

// Payee is a service provider that receives payouts.
type Payee struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Country   string    `json:"country,omitempty"`
	Account   string    `json:"account"`
	CreatedAt time.Time `json:"created_at"`
}

// Payout statuses.
const (
	PayoutPending   = "pending"
	PayoutSent      = "sent"
	PayoutSettled   = "settled"
	PayoutFailed    = "failed"
	PayoutCancelled = "cancelled"
)

// Payout is one payment of an approved case to its payee.
type Payout struct {
	ID          string    `json:"id"`
	CaseID      string    `json:"request_id"`
	FundID      string    `json:"fund_id"`
	PayeeID     string    `json:"payee_id"`
	HoldID      string    `json:"hold_id"`
	AmountCents int64     `json:"amount_usd_cents"`
	Status      string    `json:"status"`
	Attempt     int       `json:"attempt"`
	ProviderRef string    `json:"provider_ref,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ListRequest pages through a list; CaseID and Status filter payouts.
type ListRequest struct {
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
	CaseID string `json:"request_id,omitempty"`
	Status string `json:"status,omitempty"`
}

// FundsPage is a page of funds.
type FundsPage struct {
	Items      []Fund `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// PayeesPage is a page of payees.
type PayeesPage struct {
	Items      []Payee `json:"items"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// PayoutsPage is a page of payouts.
type PayoutsPage struct {
	Items      []Payout `json:"items"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// GetRequest names one fund or payee.
type GetRequest struct {
	ID string `json:"id"`
}

// CreateFundRequest creates a fund; CommandID becomes its id.
type CreateFundRequest struct {
	CommandID      string       `json:"command_id"`
	Actor          assist.Actor `json:"actor"`
	Name           string       `json:"name"`
	AllocatedCents int64        `json:"allocated_usd_cents"`
}

// CreatePayeeRequest creates a payee; CommandID becomes its id.
type CreatePayeeRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	Name      string       `json:"name"`
	Country   string       `json:"country,omitempty"`
	Account   string       `json:"account"`
}

// ChangeAccountRequest gives payee ID a new account, with the reason.
type ChangeAccountRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	ID        string       `json:"id"`
	Account   string       `json:"account"`
	Reason    string       `json:"reason"`
}

// PayoutCommand retries or cancels a failed payout.
type PayoutCommand struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	PayoutID  string       `json:"payout_id"`
	Reason    string       `json:"reason,omitempty"`
}

// PlaceHoldRequest holds an amount on a fund for an approval about to be
// recorded. HoldID is the approval's command id, so a retried approval
// finds its hold instead of placing another.
type PlaceHoldRequest struct {
	HoldID      string `json:"hold_id"`
	FundID      string `json:"fund_id"`
	CaseID      string `json:"case_id"`
	PayeeID     string `json:"payee_id"`
	AmountCents int64  `json:"amount_usd_cents"`
}

// Hold is money set aside on a fund.
type Hold struct {
	ID          string    `json:"id"`
	FundID      string    `json:"fund_id"`
	CaseID      string    `json:"case_id"`
	AmountCents int64     `json:"amount_usd_cents"`
	Status      string    `json:"status"`
	ExpiresAt   time.Time `json:"expires_at"`
	// AvailableCents is what the fund could still cover after the hold.
	AvailableCents int64 `json:"available_usd_cents"`
}

// Hold statuses.
const (
	HoldHeld     = "held"     // placed; expires unless an approval records it
	HoldReserved = "reserved" // recorded by an approval; waits for the payout
	HoldPaid     = "paid"     // the payout settled
	HoldReleased = "released" // back in the fund
)

// ReleaseHoldRequest gives back a hold whose approval was not recorded.
type ReleaseHoldRequest struct {
	HoldID string `json:"hold_id"`
}

// Client calls disbursement over NATS.
type Client struct{ nc *nats.Conn }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Funds lists funds.
func (c *Client) Funds(ctx context.Context, r ListRequest) (FundsPage, error) {
	return FundsList.Call(ctx, c.nc, r)
}

// Fund reads one fund. Errors: CodeNotFound.
func (c *Client) Fund(ctx context.Context, id string) (Fund, error) {
	return FundsGet.Call(ctx, c.nc, GetRequest{ID: id})
}

// FundHistory reads a fund's money over time. Errors: CodeNotFound.
func (c *Client) FundHistory(ctx context.Context, id string) (FundHistory, error) {
	return FundsHistory.Call(ctx, c.nc, FundHistoryRequest{ID: id})
}

// CreateFund creates a fund. Errors: CodeInvalid, CodeForbidden.
func (c *Client) CreateFund(ctx context.Context, r CreateFundRequest) (Fund, error) {
	return FundsCreate.Call(ctx, c.nc, r)
}

// Ledger reads a page of a fund's ledger. Errors: CodeNotFound.
func (c *Client) Ledger(ctx context.Context, r LedgerRequest) (Ledger, error) {
	return FundsLedger.Call(ctx, c.nc, r)
}

// ChangeAllocation sets a fund's allocation. Errors: CodeForbidden,
// CodeNotFound, CodeInvalid naming the field, CodeInsufficientFunds (a
// cut below the reserved and paid money) with the available amount.
func (c *Client) ChangeAllocation(ctx context.Context, r ChangeAllocationRequest) (Fund, error) {
	return FundsAllocation.Call(ctx, c.nc, r)
}

// Reconcile checks a provider's statement against the ledger.
func (c *Client) Reconcile(ctx context.Context, r ReconcileRequest) (reconcile.Report, error) {
	return Reconcile.Call(ctx, c.nc, r)
}

// Payees lists payees.
func (c *Client) Payees(ctx context.Context, r ListRequest) (PayeesPage, error) {
	return PayeesList.Call(ctx, c.nc, r)
}

// Payee reads one payee. Errors: CodeNotFound.
func (c *Client) Payee(ctx context.Context, id string) (Payee, error) {
	return PayeesGet.Call(ctx, c.nc, GetRequest{ID: id})
}

// CreatePayee creates a payee. Errors: CodeInvalid, CodeForbidden.
func (c *Client) CreatePayee(ctx context.Context, r CreatePayeeRequest) (Payee, error) {
	return PayeesCreate.Call(ctx, c.nc, r)
}

// ChangePayeeAccount gives a payee a new account.
func (c *Client) ChangePayeeAccount(ctx context.Context, r ChangeAccountRequest) (Payee, error) {
	return PayeeAccount.Call(ctx, c.nc, r)
}

// Payouts lists payouts.
func (c *Client) Payouts(ctx context.Context, r ListRequest) (PayoutsPage, error) {
	return PayoutsList.Call(ctx, c.nc, r)
}

// RetryPayout retries a failed payout. Errors: CodeNotFound, CodeConflict.
func (c *Client) RetryPayout(ctx context.Context, r PayoutCommand) (Payout, error) {
	return PayoutRetry.Call(ctx, c.nc, r)
}

// CancelPayout cancels a failed payout and releases its funds. Errors:
// CodeNotFound, CodeConflict, CodeInvalid.
func (c *Client) CancelPayout(ctx context.Context, r PayoutCommand) (Payout, error) {
	return PayoutCancel.Call(ctx, c.nc, r)
}

// PlaceHold holds money for an approval. Errors: CodeInsufficientFunds
// with the available amount, CodeInvalid naming fund_id for an unknown
// fund.
func (c *Client) PlaceHold(ctx context.Context, r PlaceHoldRequest) (Hold, error) {
	return HoldPlace.Call(ctx, c.nc, r)
}

// ReleaseHold gives back a hold that is still only held.
func (c *Client) ReleaseHold(ctx context.Context, r ReleaseHoldRequest) (Hold, error) {
	return HoldRelease.Call(ctx, c.nc, r)
}
