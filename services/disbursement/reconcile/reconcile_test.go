package reconcile_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/services/disbursement/reconcile"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// ledger: three settled payouts and one sent, not settled yet.
func ledger() []reconcile.Posted {
	return []reconcile.Posted{
		{PayoutID: "p1", FundID: "f", PayeeID: "shelter", ProviderRef: "R1", AmountCents: 25_000, Settled: true, At: t0},
		{PayoutID: "p2", FundID: "f", PayeeID: "clinic", ProviderRef: "R2", AmountCents: 12_345, Settled: true, At: t0},
		{PayoutID: "p3", FundID: "g", PayeeID: "shelter", ProviderRef: "R3", AmountCents: 900, Settled: true, At: t0},
		{PayoutID: "p4", FundID: "g", PayeeID: "clinic", ProviderRef: "R4", AmountCents: 700},
	}
}

// statement: the provider's lines that match the ledger exactly.
func statement() []reconcile.Line {
	var out []reconcile.Line
	for _, p := range ledger()[:3] {
		out = append(out, reconcile.Line{ProviderRef: p.ProviderRef, Key: p.PayoutID + "-1", PayoutID: p.PayoutID, PayeeID: p.PayeeID,
			Account: "ACC-" + p.PayeeID, AmountCents: p.AmountCents, Currency: "USD", SettledAt: t0.Add(time.Hour)})
	}
	return out
}

func kinds(r reconcile.Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.Kind+" "+f.PayoutID)
	}
	return out
}

func TestAMatchingStatementIsClean(t *testing.T) {
	r := reconcile.Reconcile(ledger(), statement())
	if !r.OK || len(r.Findings) != 0 || r.Matched != 3 || r.Payouts != 3 || r.Lines != 3 {
		t.Fatalf("a matching statement: %+v", r)
	}
}

func TestEachDisagreementIsFoundAndNamed(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func([]reconcile.Line) []reconcile.Line
		want   []string
		line   int
		sides  [2]string
	}{
		{"a missing line", func(s []reconcile.Line) []reconcile.Line { return append(s[:1], s[2:]...) },
			[]string{"missing_from_statement p2"}, 0, [2]string{"123.45", ""}},
		{"a duplicated line", func(s []reconcile.Line) []reconcile.Line {
			d := s[1]
			d.ProviderRef = "R2-again"
			return append(s, d)
		}, []string{"duplicate_line p2"}, 4, [2]string{}},
		{"an altered amount", func(s []reconcile.Line) []reconcile.Line { s[0].AmountCents = 2_500_000; return s },
			[]string{"amount_differs p1"}, 1, [2]string{"250.00", "25000.00"}},
		{"an altered payee", func(s []reconcile.Line) []reconcile.Line { s[2].PayeeID = "someone-else"; return s },
			[]string{"payee_differs p3"}, 3, [2]string{"shelter", "someone-else"}},
		{"a line for no payout", func(s []reconcile.Line) []reconcile.Line {
			return append(s, reconcile.Line{ProviderRef: "R9", PayoutID: "p9", PayeeID: "x", AmountCents: 1, Currency: "USD", SettledAt: t0})
		}, []string{"not_in_ledger p9"}, 4, [2]string{}},
		{"a line for a payout the ledger has not settled", func(s []reconcile.Line) []reconcile.Line {
			return append(s, reconcile.Line{ProviderRef: "R4", PayoutID: "p4", PayeeID: "clinic", AmountCents: 700, Currency: "USD", SettledAt: t0})
		}, []string{"not_settled_in_ledger p4"}, 4, [2]string{"sent", "settled"}},
		{"another currency", func(s []reconcile.Line) []reconcile.Line { s[1].Currency = "EUR"; return s },
			[]string{"currency_differs p2"}, 2, [2]string{"USD", "EUR"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := reconcile.Reconcile(ledger(), c.change(statement()))
			if r.OK || !reflect.DeepEqual(kinds(r), c.want) {
				t.Fatalf("findings %v, want %v (%+v)", kinds(r), c.want, r)
			}
			f := r.Findings[0]
			if f.Line != c.line || f.Ledger != c.sides[0] || f.Statement != c.sides[1] || !strings.Contains(f.Detail, f.PayoutID) {
				t.Fatalf("finding %+v, want line %d, sides %q", f, c.line, c.sides)
			}
		})
	}
}

// Several disagreements at once are all named, the statement's first.
func TestAllDisagreementsAtOnce(t *testing.T) {
	s := statement()
	s[0].AmountCents++
	s = append(s[:2], s[0]) // p3 missing, p1 twice
	r := reconcile.Reconcile(ledger(), s)
	want := []string{"amount_differs p1", "duplicate_line p1", "missing_from_statement p3"}
	if !reflect.DeepEqual(kinds(r), want) || r.Matched != 1 {
		t.Fatalf("findings %v (matched %d), want %v", kinds(r), r.Matched, want)
	}
}

func TestStatementFormatRoundTrips(t *testing.T) {
	var buf bytes.Buffer
	if err := reconcile.Write(&buf, statement()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Fatalf("%d lines:\n%s", n, buf.String())
	}
	got, err := reconcile.Parse(strings.NewReader("\n" + buf.String() + "\n"))
	if err != nil || !reflect.DeepEqual(got, statement()) {
		t.Fatalf("parsed %+v %v", got, err)
	}
	// The payout id comes from the key when the line has none.
	l, err := reconcile.ParseLine([]byte(`{"provider_ref":"R","key":"0197-abc-2","payee_id":"p","amount_usd_cents":5,"currency":"USD","settled_at":"2026-12-02T10:00:00Z"}`))
	if err != nil || l.PayoutID != "0197-abc" {
		t.Fatalf("payout id from the key: %+v %v", l, err)
	}
}

func TestBadLinesAreNamed(t *testing.T) {
	good := `{"provider_ref":"R","payout_id":"p","payee_id":"x","amount_usd_cents":5,"currency":"USD","settled_at":"2026-12-02T10:00:00Z"}`
	for _, c := range []struct{ text, field string }{
		{good + "\n" + `{"payout_id":"p","payee_id":"x","amount_usd_cents":5,"currency":"USD","settled_at":"2026-12-02T10:00:00Z"}`, "provider_ref"},
		{good + "\n" + strings.Replace(good, `"amount_usd_cents":5`, `"amount_usd_cents":0`, 1), "amount_usd_cents"},
		{good + "\n" + strings.Replace(good, `"payee_id":"x",`, "", 1), "payee_id"},
		{good + "\n" + strings.Replace(good, `"currency":"USD",`, "", 1), "currency"},
		{good + "\n" + strings.Replace(good, `,"settled_at":"2026-12-02T10:00:00Z"`, "", 1), "settled_at"},
		{good + "\n" + strings.Replace(good, `"payout_id":"p",`, "", 1), "payout_id"},
		{good + "\n" + strings.Replace(good, `"payee_id"`, `"payee"`, 1), ""},
		{good + "\n" + "not json", ""},
		{good + "\n" + good + good, ""},
	} {
		_, err := reconcile.Parse(strings.NewReader(c.text))
		var le *reconcile.LineError
		if !errors.As(err, &le) || le.Line != 2 || le.Field != c.field {
			t.Fatalf("%q: %v, want line 2 naming %q", c.text, err, c.field)
		}
	}
}
