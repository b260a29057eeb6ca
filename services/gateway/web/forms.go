package web

import (
	"net/http"
	"strings"
	"time"
)

// form is a form as shown: what was typed, the errors at each field, the
// errors of the whole form, and the idempotency key it carries (a fresh
// one each time the form is shown, so that a double click or a re-sent
// form runs its command once, and a corrected form runs it anew).
type form struct {
	Values  map[string]string
	Errors  map[string]string
	Summary []string
	Key     string
	// Order lists the fields in the order of the form, for the error
	// summary.
	Order []string
}

func newForm() *form {
	return &form{Values: map[string]string{}, Errors: map[string]string{}, Key: randomKey()}
}

// formFrom reads the posted values of fields.
func formFrom(r *http.Request, fields ...string) *form {
	f := newForm()
	f.Order = fields
	for _, name := range fields {
		f.Values[name] = strings.TrimSpace(r.PostForm.Get(name))
	}
	return f
}

// V is the value of a field.
func (f *form) V(name string) string {
	if f == nil {
		return ""
	}
	return f.Values[name]
}

// E is the error at a field, "" when none.
func (f *form) E(name string) string {
	if f == nil {
		return ""
	}
	return f.Errors[name]
}

// Fail puts an error at a field (the first one stays).
func (f *form) Fail(name, msg string) {
	if _, ok := f.Errors[name]; !ok {
		f.Errors[name] = msg
	}
}

// OK reports whether the form has no error.
func (f *form) OK() bool { return len(f.Errors) == 0 && len(f.Summary) == 0 }

// FieldErrors lists the errors in the order of the form, for the summary.
func (f *form) FieldErrors() []fieldError {
	var out []fieldError
	seen := map[string]bool{}
	for _, name := range f.Order {
		if msg, ok := f.Errors[name]; ok {
			out = append(out, fieldError{Field: name, Message: msg})
			seen[name] = true
		}
	}
	for name, msg := range f.Errors {
		if !seen[name] {
			out = append(out, fieldError{Field: name, Message: msg})
		}
	}
	return out
}

// apiFields maps the API's field names to the forms' fields.
var apiFields = map[string]string{
	"amount_usd_cents":          "amount",
	"allocated_usd_cents":       "allocated",
	"beneficiary":               "ben_ref",
	"beneficiary.reference":     "ben_ref",
	"beneficiary.name":          "ben_name",
	"beneficiary.date_of_birth": "ben_dob",
	"beneficiary.nationality":   "ben_nationality",
	"beneficiary.contact":       "ben_contact",
	"payee_id":                  "payee",
	"fund_id":                   "fund",
	"t":                         "at",
}

// fromProblem puts a problem of the API on the form: each field error at
// the form's field (a field the form does not have goes to the summary),
// an insufficient fund at the amount of a form that has one, the rest as
// the form's error.
func (f *form) fromProblem(l *loc, p *problem) {
	if _, hasAmount := f.Values["amount"]; hasAmount && p.Code == "insufficient_funds" && p.AvailableUSDCents != nil {
		f.Fail("amount", l.T("err.insufficient", "Available", usd(*p.AvailableUSDCents)))
		return
	}
	if p.Code == "idempotency_mismatch" {
		f.Summary = append(f.Summary, l.T("err.resent"))
		return
	}
	placed := false
	for _, fe := range p.Errors {
		name := fe.Field
		if m, ok := apiFields[name]; ok {
			name = m
		}
		msg := l.apiMessage(fe.Message)
		if _, ok := f.Values[name]; ok {
			f.Fail(name, msg)
			placed = true
			continue
		}
		f.Summary = append(f.Summary, fe.Field+": "+msg)
		placed = true
	}
	if !placed {
		switch p.Status {
		case http.StatusConflict:
			f.Summary = append(f.Summary, l.T("err.conflict", "Detail", p.Detail))
		case http.StatusForbidden:
			f.Summary = append(f.Summary, l.T("err.forbidden", "Detail", p.Detail))
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			f.Summary = append(f.Summary, l.T("error.busy"))
		default:
			if p.Status >= 500 {
				f.Summary = append(f.Summary, l.T("error.internal"))
			} else {
				f.Summary = append(f.Summary, p.Detail)
			}
		}
	}
}

// apiMessage translates an API field message the catalogs know ("is
// required"); others are shown as the API wrote them.
func (l *loc) apiMessage(msg string) string {
	id := "api." + msg
	if l.Has(id) {
		return l.T(id)
	}
	return msg
}

// require fails each empty field.
func (f *form) require(l *loc, names ...string) {
	for _, n := range names {
		if f.V(n) == "" {
			f.Fail(n, l.T("err.required"))
		}
	}
}

// amount reads a field typed in dollars, failing it when it is not an
// amount; 0 when empty.
func (f *form) amount(l *loc, name string) int64 {
	s := f.V(name)
	if s == "" {
		return 0
	}
	c, err := parseUSD(s)
	if err != nil {
		f.Fail(name, l.T("err.amount"))
	}
	return c
}

// date checks a field holding a date YYYY-MM-DD.
func (f *form) date(l *loc, name string) {
	if s := f.V(name); s != "" {
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			f.Fail(name, l.T("err.date"))
		}
	}
}

// failure is a command refused by the API (or by the form's own checks),
// to be shown on its form.
type failure struct {
	status int
	form   *form
}
