package assist

import (
	"strings"
	"time"
)

// The events of funds and payees (ADR 24): a fund's creation, a payee's
// creation and every change of a payee's account, each with its actor, on
// eva.fund.<fund id>.<Type> and eva.payee.<payee id>.<Type>. Disbursement's
// tables of funds and payees are read models of these.
type (
	// FundCreated is a new fund with its allocation.
	FundCreated struct {
		Name           string
		AllocatedCents int64
	}
	// PayeeCreated is a new service provider with the account payouts go
	// to.
	PayeeCreated struct {
		Name    string
		Country string
		Account string
	}
	// PayeeAccountChanged is a payee's new account; payouts reserved
	// after it pay it, those reserved before keep the account they
	// recorded. The event's reason says why.
	PayeeAccountChanged struct {
		Account string
		// Previous is the account it replaces.
		Previous string
	}
	// FundAllocationChanged is a fund's new allocation, set by finance
	// with a reason. A cut (AllocatedCents < PreviousCents) was held on
	// the fund under HoldID before it was recorded, so that no approval
	// could take the money in between (ADR 29); a raise holds nothing.
	FundAllocationChanged struct {
		AllocatedCents int64
		PreviousCents  int64
		HoldID         string
	}
)

// Type implements Body.
func (FundCreated) Type() string { return "FundCreated" }

// Type implements Body.
func (PayeeCreated) Type() string { return "PayeeCreated" }

// Type implements Body.
func (FundAllocationChanged) Type() string { return "FundAllocationChanged" }

// Kind says the event is about a fund.
func (FundAllocationChanged) Kind() Kind { return KindFund }

func (FundAllocationChanged) isBody() {}

// Type implements Body.
func (PayeeAccountChanged) Type() string { return "PayeeAccountChanged" }

// Kind says the event is about a fund.
func (FundCreated) Kind() Kind { return KindFund }

// Kind says the event is about a payee.
func (PayeeCreated) Kind() Kind { return KindPayee }

// Kind says the event is about a payee.
func (PayeeAccountChanged) Kind() Kind { return KindPayee }

func (FundCreated) isBody()         {}
func (PayeeCreated) isBody()        {}
func (PayeeAccountChanged) isBody() {}

// Fund is a fund as its events make it.
type Fund struct {
	ID             string
	Name           string
	AllocatedCents int64
	CreatedBy      string
	CreatedAt      time.Time
	// Version is the log position of its last event.
	Version uint64
}

// FoldFund rebuilds a fund from its events; nil for none.
func FoldFund(recs []Recorded) *Fund {
	var f *Fund
	for _, r := range recs {
		switch b := r.Event.Body.(type) {
		case FundCreated:
			if f == nil {
				f = &Fund{ID: r.Event.CaseID, Name: b.Name, AllocatedCents: b.AllocatedCents, CreatedBy: r.Event.Actor.Username,
					CreatedAt: r.Event.At}
			}
		case FundAllocationChanged:
			if f != nil {
				f.AllocatedCents = b.AllocatedCents
			}
		}
		if f != nil {
			f.Version = r.Seq
		}
	}
	return f
}

// Payee is a payee as its events make it.
type Payee struct {
	ID, Name, Country, Account string
	// AccountSeq is the log position of the event that set Account.
	AccountSeq uint64
	CreatedBy  string
	CreatedAt  time.Time
	Version    uint64
}

// FoldPayee rebuilds a payee from its events; nil for none.
func FoldPayee(recs []Recorded) *Payee {
	var p *Payee
	for _, r := range recs {
		switch b := r.Event.Body.(type) {
		case PayeeCreated:
			if p == nil {
				p = &Payee{ID: r.Event.CaseID, Name: b.Name, Country: b.Country, Account: b.Account, AccountSeq: r.Seq,
					CreatedBy: r.Event.Actor.Username, CreatedAt: r.Event.At}
			}
		case PayeeAccountChanged:
			if p != nil {
				p.Account, p.AccountSeq = b.Account, r.Seq
			}
		}
		if p != nil {
			p.Version = r.Seq
		}
	}
	return p
}

// MaxAccountLen is the longest payee account.
const MaxAccountLen = 128

// CheckAccount adds a problem for an account that is empty, too long or
// holds control characters.
func CheckAccount(probs *Problems, field, account string) {
	if strings.TrimSpace(account) == "" {
		probs.Add(field, "is required, up to %d characters", MaxAccountLen)
		return
	}
	CheckLine(probs, field, account, MaxAccountLen)
}

// CreateFund starts a fund whose id is the command's; f is the fund as
// the log has it (nil: none yet). Inputs are checked by the caller.
//
// Errors: CodeForbidden unless finance, CodeConflict when the fund
// exists (created by another command).
func CreateFund(cmd Cmd, f *Fund, name string, allocated int64) (Event, error) {
	if cmd.Actor.Role != RoleFinance && cmd.Actor.Role != RoleSystem {
		return Event{}, Errorf(CodeForbidden, "only finance creates funds")
	}
	if f != nil {
		return Event{}, Errorf(CodeConflict, "fund %s exists", f.ID)
	}
	return cmd.event(cmd.ID, "", FundCreated{Name: name, AllocatedCents: allocated}), nil
}

// ChangeAllocation sets the fund's allocation to allocated, with the
// reason why. A cut names the hold (holdID) under which the caller set
// the money aside on the fund before recording it; the caller also checks
// that the fund can spare it (reserved and paid money stays allocated).
//
// Errors: CodeForbidden unless finance, CodeNotFound for no fund,
// CodeInvalid naming allocated_usd_cents (not positive, too large, or the
// allocation already) or reason (missing or bad).
func (f *Fund) ChangeAllocation(cmd Cmd, id string, allocated int64, reason, holdID string) (Event, error) {
	if cmd.Actor.Role != RoleFinance {
		return Event{}, Errorf(CodeForbidden, "only finance changes a fund's allocation")
	}
	if f == nil {
		return Event{}, Errorf(CodeNotFound, "no fund %q", id)
	}
	var probs Problems
	CheckAmount(&probs, "allocated_usd_cents", allocated, MaxAllocationCents)
	if allocated == f.AllocatedCents {
		probs.Add("allocated_usd_cents", "is the fund's allocation already")
	}
	checkText(&probs, "reason", reason, MaxReason, true)
	if err := probs.Err(); err != nil {
		return Event{}, err
	}
	if allocated > f.AllocatedCents {
		holdID = ""
	}
	return cmd.event(f.ID, strings.TrimSpace(reason),
		FundAllocationChanged{AllocatedCents: allocated, PreviousCents: f.AllocatedCents, HoldID: holdID}), nil
}

// CreatePayee starts a payee whose id is the command's; p is the payee as
// the log has it (nil: none yet). Inputs are checked by the caller.
//
// Errors: CodeForbidden unless finance, CodeConflict when it exists.
func CreatePayee(cmd Cmd, p *Payee, name, country, account string) (Event, error) {
	if cmd.Actor.Role != RoleFinance && cmd.Actor.Role != RoleSystem {
		return Event{}, Errorf(CodeForbidden, "only finance creates payees")
	}
	if p != nil {
		return Event{}, Errorf(CodeConflict, "payee %s exists", p.ID)
	}
	return cmd.event(cmd.ID, "", PayeeCreated{Name: name, Country: country, Account: account}), nil
}

// ChangeAccount gives the payee a new account, with the reason why.
//
// Errors: CodeForbidden unless finance, CodeNotFound for no payee,
// CodeInvalid naming account (empty, too long, control characters, or
// the payee's account already) or reason (missing or bad).
func (p *Payee) ChangeAccount(cmd Cmd, id, account, reason string) (Event, error) {
	if cmd.Actor.Role != RoleFinance {
		return Event{}, Errorf(CodeForbidden, "only finance changes a payee's account")
	}
	if p == nil {
		return Event{}, Errorf(CodeNotFound, "no payee %q", id)
	}
	account = strings.TrimSpace(account)
	var probs Problems
	CheckAccount(&probs, "account", account)
	if account != "" && account == p.Account {
		probs.Add("account", "is the payee's account already")
	}
	checkText(&probs, "reason", reason, MaxReason, true)
	if err := probs.Err(); err != nil {
		return Event{}, err
	}
	return cmd.event(p.ID, strings.TrimSpace(reason), PayeeAccountChanged{Account: account, Previous: p.Account}), nil
}
