package web

import (
	"net/http"
	"strings"
	"time"
)

// policyJSON is a version of the policy as GET /v1/policy and GET
// /v1/policy/history answer it.
type policyJSON struct {
	Version         string            `json:"version"`
	CapsUSDCents    map[string]int64  `json:"caps_usd_cents"`
	CaseCapUSDCents int64             `json:"case_cap_usd_cents"`
	SecondAbove     int64             `json:"second_approval_above_usd_cents"`
	Deadlines       map[string]string `json:"deadlines"`
	ClaimTTL        string            `json:"claim_ttl"`
	ChangedBy       string            `json:"changed_by"`
	ChangedAt       string            `json:"changed_at"`
}

// policyRow is one version of the policy's history with what changed
// from the version before it.
type policyRow struct {
	policyJSON
	Changes []string
}

type policyData struct {
	// Current is the version in force, Form its change form (admins only).
	Current policyJSON
	Form    *form
	// Caps are the categories' cap fields, in the order of the domain.
	Caps []policyField
	// Deadlines are the urgencies' deadline fields.
	Deadlines []policyField
	// History is every version, the newest first.
	History []policyRow
	Admin   bool
}

// policyField is one field of the form: its name and label.
type policyField struct{ N, Label string }

// policyPage is /policy: the policy in force as a form that sets the next
// version (PUT /v1/policy, for admins), and the history of its versions —
// who changed what, when (GET /v1/policy/history, admins and auditors;
// anyone else is refused by the API).
func (s *site) policyPage(v *view) error { return s.showPolicy(v, http.StatusOK, nil) }

// showPolicy renders /policy; f is a refused form to show again, nil for
// the policy in force.
func (s *site) showPolicy(v *view, status int, f *form) error {
	h, err := get[page[policyJSON]](v.ctx(), v.s.api, v.token, "/v1/policy/history")
	if err != nil {
		return err
	}
	if len(h.Items) == 0 {
		return &problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Detail: "no policy"}
	}
	d := policyData{Current: h.Items[len(h.Items)-1], Admin: v.Has("admin")}
	for i := len(h.Items) - 1; i >= 0; i-- {
		row := policyRow{policyJSON: h.Items[i]}
		if i > 0 {
			row.Changes = policyChanges(v.L, h.Items[i-1], h.Items[i])
		}
		d.History = append(d.History, row)
	}
	for _, c := range categories() {
		d.Caps = append(d.Caps, policyField{"cap_" + c, v.L.T("category." + c)})
	}
	for _, u := range urgencies() {
		d.Deadlines = append(d.Deadlines, policyField{"deadline_" + u, v.L.T("urgency." + u)})
	}
	if f == nil {
		f = policyForm(d.Current)
	}
	d.Form = f
	v.render(status, "policy", v.L.T("policy.title"), d)
	return nil
}

// policyForm is the form filled with a version of the policy: amounts in
// dollars with cents, durations as Go durations without their zero units.
func policyForm(p policyJSON) *form {
	f := newForm()
	f.Values["case_cap"] = usd(p.CaseCapUSDCents)
	f.Values["second_above"] = usd(p.SecondAbove)
	for _, c := range categories() {
		if cents, ok := p.CapsUSDCents[c]; ok {
			f.Values["cap_"+c] = usd(cents)
		} else {
			f.Values["cap_"+c] = ""
		}
	}
	for _, u := range urgencies() {
		f.Values["deadline_"+u] = shortDuration(p.Deadlines[u])
	}
	f.Values["claim_ttl"] = shortDuration(p.ClaimTTL)
	return f
}

// policyFields are the form's fields in its order.
func policyFields() []string {
	out := []string{"case_cap", "second_above"}
	for _, c := range categories() {
		out = append(out, "cap_"+c)
	}
	for _, u := range urgencies() {
		out = append(out, "deadline_"+u)
	}
	return append(out, "claim_ttl")
}

// changePolicy is POST /policy: the form's values as the next version of
// the policy, through PUT /v1/policy (its checks, its errors, its event).
// A category cap left empty is capped by the case cap.
func (s *site) changePolicy(v *view) error {
	f := formFrom(v.r, policyFields()...)
	f.Key = formKey(v.r)
	req := []string{"case_cap", "second_above", "claim_ttl"}
	for _, u := range urgencies() {
		req = append(req, "deadline_"+u)
	}
	f.require(v.L, req...)
	body := map[string]any{"case_cap_usd_cents": f.signedAmount(v.L, "case_cap"),
		"second_approval_above_usd_cents": f.signedAmount(v.L, "second_above"),
		"claim_ttl":                       f.V("claim_ttl")}
	caps := map[string]int64{}
	for _, c := range categories() {
		if f.V("cap_"+c) != "" {
			caps[c] = f.signedAmount(v.L, "cap_"+c)
		}
	}
	deadlines := map[string]string{}
	for _, u := range urgencies() {
		deadlines[u] = f.V("deadline_" + u)
	}
	body["caps_usd_cents"], body["deadlines"] = caps, deadlines
	if f.OK() {
		res, err := v.call(call{method: http.MethodPut, path: "/v1/policy", key: f.Key, body: body})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			v.redirect("/policy?done=policy")
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized || res.Problem.Status == http.StatusForbidden {
			return res.Problem
		}
		for i, fe := range res.Problem.Errors {
			res.Problem.Errors[i].Field = policyFormField(fe.Field)
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Key = randomKey()
	return s.showPolicy(v, statusOfForm(f), f)
}

// signedAmount reads a field typed in dollars that may carry a minus
// sign, so that the API (not the form) says why a negative amount is
// refused.
func (f *form) signedAmount(l *loc, name string) int64 {
	s := f.V(name)
	if rest, ok := strings.CutPrefix(s, "-"); ok && rest != "" {
		g := &form{Values: map[string]string{name: rest}, Errors: map[string]string{}}
		c := g.amount(l, name)
		if msg := g.E(name); msg != "" {
			f.Fail(name, msg)
		}
		return -c
	}
	return f.amount(l, name)
}

// policyFormField is the form's field of an API field of PUT /v1/policy.
func policyFormField(api string) string {
	switch {
	case api == "case_cap_usd_cents":
		return "case_cap"
	case api == "second_approval_above_usd_cents":
		return "second_above"
	case strings.HasPrefix(api, "caps_usd_cents."):
		return "cap_" + strings.TrimPrefix(api, "caps_usd_cents.")
	case strings.HasPrefix(api, "deadlines."):
		return "deadline_" + strings.TrimPrefix(api, "deadlines.")
	}
	return api
}

// policyChanges says what changed from one version of the policy to the
// next, in the reader's language.
func policyChanges(l *loc, from, to policyJSON) []string {
	var out []string
	change := func(what, a, b string) {
		if a != b {
			out = append(out, l.T("policy.change", "What", what, "From", a, "To", b))
		}
	}
	change(l.T("policy.case_cap"), usd(from.CaseCapUSDCents), usd(to.CaseCapUSDCents))
	change(l.T("policy.second_above"), usd(from.SecondAbove), usd(to.SecondAbove))
	capOf := func(p policyJSON, c string) string {
		if cents, ok := p.CapsUSDCents[c]; ok {
			return usd(cents)
		}
		return l.T("policy.cap.none")
	}
	for _, c := range categories() {
		change(l.T("policy.cap.of", "Category", l.T("category."+c)), capOf(from, c), capOf(to, c))
	}
	for _, u := range urgencies() {
		change(l.T("policy.deadline.of", "Urgency", l.T("urgency."+u)), shortDuration(from.Deadlines[u]), shortDuration(to.Deadlines[u]))
	}
	change(l.T("policy.claim_ttl"), shortDuration(from.ClaimTTL), shortDuration(to.ClaimTTL))
	if len(out) == 0 {
		out = append(out, l.T("policy.change.none"))
	}
	return out
}

// shortDuration writes a Go duration without its zero units: "4h0m0s" →
// "4h", "30m0s" → "30m"; anything that does not parse as it came.
func shortDuration(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return s
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}
