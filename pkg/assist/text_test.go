package assist_test

import (
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
)

// Free text refuses what can hide or reorder what a reader sees: control
// characters (NUL, C0, DEL, C1) and bidirectional embeddings, overrides
// and isolates (issue 7). Multi-line text keeps its line feeds and tabs.
func TestTextFault(t *testing.T) {
	tests := []struct {
		name      string
		s         string
		multiLine bool
		fault     string // a part of the fault; "" for none
	}{
		{"plain", "Safe House Dhaka", false, ""},
		{"scripts", "Đặng Thị Ánh · 北京 · مرحبا · שלום", false, ""},
		{"right-to-left mark is text", "\u200fمرحبا", false, ""},
		{"lines and tabs", "line one\n\tline two\r\nline three", true, ""},
		{"NUL", "Safe\x00House", false, "U+0000"},
		{"NUL in a multi-line text", "a\x00b", true, "U+0000"},
		{"newline in one line", "Safe\nHouse", false, "U+000A"},
		{"tab in one line", "Safe\tHouse", false, "U+0009"},
		{"lone carriage return", "a\rb", true, "U+000D"},
		{"carriage return at the end", "a\r", true, "U+000D"},
		{"escape", "\x1b[31mred", true, "U+001B"},
		{"DEL", "a\x7fb", true, "U+007F"},
		{"C1", "a\u0085b", true, "U+0085"},
		{"C1 last", "a\u009fb", false, "U+009F"},
		{"LRE", "a\u202ab", false, "U+202A"},
		{"RLO", "Invoice \u202efdp.exe", false, "U+202E"},
		{"LRI", "a\u2066b", true, "U+2066"},
		{"PDI", "a\u2069b", true, "U+2069"},
		{"invalid UTF-8", "a\xffb", true, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := assist.TextFault(tt.s, tt.multiLine)
			if tt.fault == "" && got != "" || tt.fault != "" && !strings.Contains(got, tt.fault) {
				t.Fatalf("TextFault(%q, %v) = %q, want %q", tt.s, tt.multiLine, got, tt.fault)
			}
		})
	}
}

// Every free text of a transition is checked, and the problem names the
// field.
func TestTransitionsRefuseControlAndBidi(t *testing.T) {
	bad := "pay \u202eevil\u202c now"
	in := validSubmit()
	in.Justification = bad
	_, err := assist.Submit(assist.Cmd{ID: caseID, Actor: filer, At: t0}, in, assist.DefaultPolicy())
	wantFields(t, err, "justification")

	h := caseIn(t, "under_review")
	a := validApprove()
	a.Note = "ok\x00"
	_, err = h.c.Approve(h.cmd(bob), a, h.p)
	wantFields(t, err, "note")
	_, err = h.c.Reject(h.cmd(bob), "no\u2066")
	wantFields(t, err, "reason")
	_, err = h.c.RequestInfo(h.cmd(bob), "why\x1b?")
	wantFields(t, err, "question")
	s := caseIn(t, "submitted")
	j := "a\u0085b"
	_, err = s.c.Amend(s.cmd(filer), assist.AmendInput{Justification: &j}, s.p)
	wantFields(t, err, "justification")
	_, err = s.c.Withdraw(s.cmd(filer), "bye\x00")
	wantFields(t, err, "reason")
}

// Amounts have an upper bound whatever the policy says.
func TestAmountUpperBound(t *testing.T) {
	p := assist.DefaultPolicy()
	for c := range p.CategoryCapsUSDCents {
		p.CategoryCapsUSDCents[c] = 1 << 62
	}
	p.CaseCapUSDCents = 1 << 62
	in := validSubmit()
	in.AmountCents = assist.MaxAmountCents + 1
	_, err := assist.Submit(assist.Cmd{ID: caseID, Actor: filer, At: t0}, in, p)
	wantFields(t, err, "amount_usd_cents")
	in.AmountCents = assist.MaxAmountCents
	if _, err := assist.Submit(assist.Cmd{ID: caseID, Actor: filer, At: t0}, in, p); err != nil {
		t.Fatalf("the largest amount: %v", err)
	}

	var probs assist.Problems
	assist.CheckAmount(&probs, "allocated_usd_cents", assist.MaxAllocationCents+1, assist.MaxAllocationCents)
	wantFields(t, probs.Err(), "allocated_usd_cents")
}

func wantFields(tb testing.TB, err error, fields ...string) {
	tb.Helper()
	e := wantCode(tb, err, assist.CodeInvalid)
	var got []string
	for _, f := range e.Fields {
		got = append(got, f.Field)
	}
	if strings.Join(got, ",") != strings.Join(fields, ",") {
		tb.Fatalf("fields %v, want %v (%v)", got, fields, err)
	}
}
