// Package reconcile checks a payment provider's statement against EVA's
// double-entry ledger (ADR 29): every payout the ledger posted as settled
// must be on the statement once, with the same payee and amount, and
// every line of the statement must be a payout the ledger posted.
//
// # The statement format
//
// A statement is JSON lines (UTF-8, one JSON object per line, blank lines
// ignored), one line per payment the provider settled:
//
//		{"provider_ref":"SIM-3f…","key":"0197…-1","payout_id":"0197…","payee_id":"0196…",
//		 "account":"BD-ACC-1","amount_usd_cents":25000,"currency":"USD","settled_at":"2026-12-02T10:00:00Z"}
//
//	  - provider_ref: the provider's own reference of the payment (EVA
//	    records it in PayoutSent and PayoutSettled); required.
//	  - key: the idempotency key EVA paid with, "<payout id>-<attempt>";
//	    optional when payout_id is given.
//	  - payout_id: EVA's payout id; when absent it is read from key (the
//	    part before the last "-").
//	  - payee_id: EVA's payee id the payment went to; required.
//	  - account: the account credited; optional, reported when given.
//	  - amount_usd_cents: integer US cents, positive; required.
//	  - currency: "USD" (EVA pays in US dollars); required.
//	  - settled_at: RFC 3339 time the payment settled; required.
//
// Unknown fields are refused, so a misspelt field is not silently a
// missing one. Write writes it. A provider serves it at GET /v1/statement
// (package providerhttp, whose Client.Statement fetches it); the provider
// simulator (services/disbursement/provsim, eva provsim) serves its
// settled payments so, from its own books. `eva audit reconcile` takes a
// statement from a file (--statement) or from the provider (--provider).
package reconcile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Line is one settled payment of a provider's statement.
type Line struct {
	ProviderRef string    `json:"provider_ref"`
	Key         string    `json:"key,omitempty"`
	PayoutID    string    `json:"payout_id,omitempty"`
	PayeeID     string    `json:"payee_id"`
	Account     string    `json:"account,omitempty"`
	AmountCents int64     `json:"amount_usd_cents"`
	Currency    string    `json:"currency"`
	SettledAt   time.Time `json:"settled_at"`
}

// Currency is the only currency EVA pays in.
const Currency = "USD"

// MaxLineBytes bounds one line of a statement.
const MaxLineBytes = 64 << 10

// LineError is a statement line that cannot be read, with its number
// (from 1) and field.
type LineError struct {
	Line    int
	Field   string
	Message string
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("statement line %d: %s", e.Line, e.Message)
	}
	return fmt.Sprintf("statement line %d: %s %s", e.Line, e.Field, e.Message)
}

// Parse reads a statement. Errors: a *LineError naming the first bad line
// and field.
func Parse(r io.Reader) ([]Line, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	var out []Line
	n := 0
	for sc.Scan() {
		n++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		l, err := ParseLine(raw)
		if err != nil {
			var le *LineError
			if errors.As(err, &le) {
				le.Line = n
			}
			return nil, err
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, &LineError{Line: n + 1, Message: err.Error()}
	}
	return out, nil
}

// ParseLine reads and checks one line. Errors: a *LineError (its Line 0).
func ParseLine(raw []byte) (Line, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var l Line
	if err := dec.Decode(&l); err != nil {
		return Line{}, &LineError{Message: "is not a statement object: " + err.Error()}
	}
	if dec.More() {
		return Line{}, &LineError{Message: "holds more than one JSON value"}
	}
	if l.PayoutID == "" && l.Key != "" {
		if i := strings.LastIndexByte(l.Key, '-'); i > 0 {
			l.PayoutID = l.Key[:i]
		}
	}
	switch {
	case strings.TrimSpace(l.ProviderRef) == "":
		return Line{}, &LineError{Field: "provider_ref", Message: "is required"}
	case l.PayoutID == "":
		return Line{}, &LineError{Field: "payout_id", Message: "is required (or a key \"<payout id>-<attempt>\")"}
	case l.PayeeID == "":
		return Line{}, &LineError{Field: "payee_id", Message: "is required"}
	case l.AmountCents <= 0:
		return Line{}, &LineError{Field: "amount_usd_cents", Message: "must be a positive number of cents"}
	case l.Currency == "":
		return Line{}, &LineError{Field: "currency", Message: "is required"}
	case l.SettledAt.IsZero():
		return Line{}, &LineError{Field: "settled_at", Message: "is required (RFC 3339)"}
	}
	return l, nil
}

// Write writes lines as a statement.
func Write(w io.Writer, lines []Line) error {
	enc := json.NewEncoder(w)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	return nil
}

// Posted is a payout as the ledger has it: posted (settled) or, when
// Settled is false, sent to the provider and not settled yet.
type Posted struct {
	PayoutID    string
	FundID      string
	PayeeID     string
	ProviderRef string
	AmountCents int64
	Settled     bool
	At          time.Time
}

// Kinds of findings.
const (
	// MissingFromStatement: the ledger posted a payout the statement
	// does not have.
	MissingFromStatement = "missing_from_statement"
	// NotInLedger: a statement line for no payout the ledger posted.
	NotInLedger = "not_in_ledger"
	// NotSettledInLedger: a statement line for a payout the ledger has
	// sent but not settled.
	NotSettledInLedger = "not_settled_in_ledger"
	// DuplicateLine: a second line for the same payout.
	DuplicateLine = "duplicate_line"
	// AmountDiffers: the line's amount is not the ledger's.
	AmountDiffers = "amount_differs"
	// PayeeDiffers: the line's payee is not the ledger's.
	PayeeDiffers = "payee_differs"
	// CurrencyDiffers: the line is not in US dollars.
	CurrencyDiffers = "currency_differs"
)

// Finding is one disagreement between the statement and the ledger.
type Finding struct {
	Kind        string `json:"kind"`
	PayoutID    string `json:"payout_id"`
	ProviderRef string `json:"provider_ref,omitempty"`
	// Line is the statement line's place among the lines (from 1); 0 for
	// a payout the statement lacks.
	Line int `json:"line,omitempty"`
	// Ledger and Statement are the two sides' values when they differ.
	Ledger    string `json:"ledger,omitempty"`
	Statement string `json:"statement,omitempty"`
	Detail    string `json:"detail"`
}

// Report is the result of a reconciliation; OK when nothing was found.
type Report struct {
	OK       bool      `json:"ok"`
	Payouts  int       `json:"payouts"`
	Lines    int       `json:"lines"`
	Matched  int       `json:"matched"`
	Findings []Finding `json:"findings"`
}

// Reconcile compares a statement with the ledger's payouts. Findings come
// in the statement's order, then the payouts it lacks in payout id order.
func Reconcile(ledger []Posted, statement []Line) Report {
	byID := make(map[string]Posted, len(ledger))
	for _, p := range ledger {
		byID[p.PayoutID] = p
	}
	rep := Report{Lines: len(statement), Findings: []Finding{}}
	seen := map[string]int{} // payout id → first line
	for i, l := range statement {
		n := i + 1
		add := func(kind, led, st, detail string) {
			rep.Findings = append(rep.Findings, Finding{Kind: kind, PayoutID: l.PayoutID, ProviderRef: l.ProviderRef, Line: n,
				Ledger: led, Statement: st, Detail: detail})
		}
		if first, dup := seen[l.PayoutID]; dup {
			add(DuplicateLine, "", "", fmt.Sprintf("payout %s is on the statement again (first on line %d): paid twice?", l.PayoutID, first))
			continue
		}
		seen[l.PayoutID] = n
		p, ok := byID[l.PayoutID]
		if !ok {
			add(NotInLedger, "", "", fmt.Sprintf("line %d (provider ref %s) pays payout %s, which the ledger does not have", n, l.ProviderRef, l.PayoutID))
			continue
		}
		if !p.Settled {
			add(NotSettledInLedger, "sent", "settled", fmt.Sprintf("payout %s settled at the provider but not in the ledger", l.PayoutID))
			continue
		}
		clean := true
		if l.AmountCents != p.AmountCents {
			clean = false
			add(AmountDiffers, cents(p.AmountCents), cents(l.AmountCents),
				fmt.Sprintf("payout %s: the ledger posted %s, the statement says %s", l.PayoutID, cents(p.AmountCents), cents(l.AmountCents)))
		}
		if l.PayeeID != p.PayeeID {
			clean = false
			add(PayeeDiffers, p.PayeeID, l.PayeeID, fmt.Sprintf("payout %s: the ledger paid payee %s, the statement says %s", l.PayoutID, p.PayeeID, l.PayeeID))
		}
		if !strings.EqualFold(l.Currency, Currency) {
			clean = false
			add(CurrencyDiffers, Currency, l.Currency, fmt.Sprintf("payout %s is in %s, not %s", l.PayoutID, l.Currency, Currency))
		}
		if clean {
			rep.Matched++
		}
	}
	var missing []Posted
	for _, p := range ledger {
		if p.Settled {
			rep.Payouts++
			if _, ok := seen[p.PayoutID]; !ok {
				missing = append(missing, p)
			}
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].PayoutID < missing[j].PayoutID })
	for _, p := range missing {
		rep.Findings = append(rep.Findings, Finding{Kind: MissingFromStatement, PayoutID: p.PayoutID, ProviderRef: p.ProviderRef,
			Ledger: cents(p.AmountCents), Detail: fmt.Sprintf("the ledger posted payout %s (%s to payee %s) and the statement does not have it",
				p.PayoutID, cents(p.AmountCents), p.PayeeID)})
	}
	rep.OK = len(rep.Findings) == 0
	return rep
}

func cents(c int64) string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}
