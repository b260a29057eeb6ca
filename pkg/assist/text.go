package assist

import (
	"fmt"
	"unicode/utf8"
)

// Upper bounds on money, so that no amount a client sends can overflow a
// sum of the ledger (int64 cents) or be a typo of many digits. A policy
// cap lowers the bound on what a case may ask; these hold everywhere.
const (
	// MaxAmountCents bounds one amount: a request, an approval, a payout
	// (1,000,000,000.00 USD).
	MaxAmountCents int64 = 100_000_000_000
	// MaxAllocationCents bounds a fund's allocation (100,000,000,000.00
	// USD); a billion such funds still sum within int64.
	MaxAllocationCents int64 = 10_000_000_000_000
)

// CheckAmount adds a problem for field unless cents is positive and at
// most maxCents.
func CheckAmount(probs *Problems, field string, cents, maxCents int64) {
	switch {
	case cents <= 0:
		probs.Add(field, "must be a positive number of cents")
	case cents > maxCents:
		probs.Add(field, "must be at most %d cents (%s)", maxCents, FormatUSD(maxCents))
	}
}

// TextFault says what makes s unfit as free text, or "" when nothing
// does. Free text is valid UTF-8 without control characters — C0, DEL
// and C1, NUL among them — and without the bidirectional embeddings,
// overrides and isolates (U+202A–U+202E, U+2066–U+2069) that make text
// read otherwise than it is stored (a payee name shown reversed, a
// justification that hides a line). Multi-line text may hold line feeds
// and tabs, and a carriage return only before a line feed (browsers send
// CRLF from a textarea).
func TextFault(s string, multiLine bool) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for i, r := range s {
		switch {
		case multiLine && (r == '\n' || r == '\t'):
		case multiLine && r == '\r' && i+1 < len(s) && s[i+1] == '\n':
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return fmt.Sprintf("must not contain the control character %U", r)
		case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			return fmt.Sprintf("must not contain the bidirectional formatting character %U", r)
		}
	}
	return ""
}

// CheckLine adds a problem for field when s is not fit as one line of
// free text (a name, a reference) or is longer than maxChars characters.
func CheckLine(probs *Problems, field, s string, maxChars int) {
	checkFree(probs, field, s, maxChars, false)
}

func checkFree(probs *Problems, field, s string, maxChars int, multiLine bool) {
	switch fault := TextFault(s, multiLine); {
	case fault != "":
		probs.Add(field, "%s", fault)
	case utf8.RuneCountInString(s) > maxChars:
		probs.Add(field, "must be at most %d characters", maxChars)
	}
}
