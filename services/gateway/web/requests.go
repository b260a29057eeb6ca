package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
)

// listLimit is how many rows a list page shows.
const listLimit = 50

type requestListData struct {
	Items    []caseJSON
	Status   string
	Statuses []string
	Next     string
	Cursor   string
}

// requestList is /requests: the post's requests for a requester, every
// request for the others (the API scopes it).
func (s *site) requestList(v *view) error {
	q := v.r.URL.Query()
	status := q.Get("status")
	if status != "" && !slices.Contains(assist.States, assist.State(status)) {
		status = ""
	}
	cursor := q.Get("cursor")
	p, err := get[page[caseJSON]](v.ctx(), v.s.api, v.token,
		query("/v1/requests", "limit", "50", "status", status, "cursor", cursor))
	if err != nil {
		return err
	}
	d := requestListData{Items: p.Items, Status: status, Cursor: cursor}
	for _, st := range assist.States {
		d.Statuses = append(d.Statuses, string(st))
	}
	if p.NextCursor != "" {
		d.Next = query("/requests", "status", status, "cursor", p.NextCursor)
	}
	v.render(http.StatusOK, "requests", v.L.T("requests.title"), d)
	return nil
}

// fileFields are the filing form's fields, in order.
var fileFields = []string{"post", "category", "urgency", "amount", "justification", "ben_ref", "ben_name",
	"ben_dob", "ben_nationality", "ben_contact", "payee"}

type fileData struct {
	Form       *form
	Posts      []string
	Categories []string
	Urgencies  []string
	Payees     []payeeJSON
	// Amend is the case being amended, nil when filing.
	Amend *caseJSON
}

func categories() []string {
	out := make([]string, len(assist.Categories))
	for i, c := range assist.Categories {
		out[i] = string(c)
	}
	return out
}

func urgencies() []string {
	out := make([]string, len(assist.Urgencies))
	for i, u := range assist.Urgencies {
		out[i] = string(u)
	}
	return out
}

// payees lists the payees the forms offer.
func (v *view) payees() ([]payeeJSON, error) {
	p, err := get[page[payeeJSON]](v.ctx(), v.s.api, v.token, "/v1/payees?limit=500")
	return p.Items, err
}

// fileForm is /requests/new.
func (s *site) fileForm(v *view) error {
	f := newForm()
	f.Values["urgency"] = string(assist.Urgent)
	if len(v.Me.Posts) > 0 {
		f.Values["post"] = v.Me.Posts[0]
	}
	return s.showFileForm(v, http.StatusOK, f, nil)
}

func (s *site) showFileForm(v *view, status int, f *form, amend *caseJSON) error {
	payees, err := v.payees()
	if err != nil {
		return err
	}
	d := fileData{Form: f, Posts: v.Me.Posts, Categories: categories(), Urgencies: urgencies(), Payees: payees, Amend: amend}
	title := v.L.T("file.title")
	if amend != nil {
		title = v.L.T("amend.title")
	}
	v.render(status, "file", title, d)
	return nil
}

// fileBody is POST /v1/requests's body.
type fileBody struct {
	Post          string        `json:"post"`
	Category      string        `json:"category"`
	Urgency       string        `json:"urgency"`
	AmountCents   int64         `json:"amount_usd_cents"`
	Justification string        `json:"justification"`
	Beneficiary   beneficiaryIn `json:"beneficiary"`
	PayeeID       string        `json:"payee_id,omitempty"`
}

type beneficiaryIn struct {
	Reference   string `json:"reference"`
	Name        string `json:"name,omitempty"`
	DateOfBirth string `json:"date_of_birth,omitempty"`
	Nationality string `json:"nationality,omitempty"`
	Contact     string `json:"contact,omitempty"`
}

func beneficiaryOf(f *form) beneficiaryIn {
	return beneficiaryIn{Reference: f.V("ben_ref"), Name: f.V("ben_name"), DateOfBirth: f.V("ben_dob"),
		Nationality: f.V("ben_nationality"), Contact: f.V("ben_contact")}
}

// file is POST /requests/new: it files through POST /v1/requests with the
// form's own Idempotency-Key, so that a double click or a re-sent form
// files once, and shows the case.
func (s *site) file(v *view) error {
	f := formFrom(v.r, fileFields...)
	f.Key = formKey(v.r)
	f.require(v.L, "post", "category", "urgency", "amount", "justification", "ben_ref")
	cents := f.amount(v.L, "amount")
	f.date(v.L, "ben_dob")
	if f.OK() {
		res, err := v.call(call{method: http.MethodPost, path: "/v1/requests", key: f.Key, body: fileBody{
			Post: f.V("post"), Category: f.V("category"), Urgency: f.V("urgency"), AmountCents: cents,
			Justification: f.V("justification"), Beneficiary: beneficiaryOf(f), PayeeID: f.V("payee")}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			var c caseJSON
			if err := res.decode(&c); err != nil {
				return err
			}
			v.redirect("/requests/" + url.PathEscape(c.ID) + "?done=filed")
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized {
			return res.Problem
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Key = randomKey() // a corrected form is a new request
	return s.showFileForm(v, http.StatusBadRequest, f, nil)
}

// formKey is the form's idempotency key as posted, a fresh one when the
// form carries none.
func formKey(r *http.Request) string {
	if k := r.PostForm.Get("key"); k != "" {
		return k
	}
	return randomKey()
}

// caseData is the case page's data.
type caseData struct {
	Case        caseJSON
	History     []eventJSON
	Payouts     []payoutJSON
	Payee       *payeeJSON
	Funds       []fundJSON
	Fund        *fundJSON
	Payees      []payeeJSON
	Beneficiary *beneficiaryJSON
	AsOf        *caseJSON
	AsOfAt      string
	// Forms of the actions, by name; the one that failed shows its
	// errors.
	Forms map[string]*form
	// Actions lists what the user may do now.
	Actions map[string]bool
}

// F is the form of an action.
func (d *caseData) F(name string) *form {
	if f, ok := d.Forms[name]; ok {
		return f
	}
	f := newForm()
	d.Forms[name] = f
	return f
}

// casePage is /requests/{id}.
func (s *site) casePage(v *view) error {
	return s.showCase(v, http.StatusOK, &caseData{Forms: map[string]*form{}})
}

// showCase reads the case, its history and what the user's roles may
// see beside it, and renders the page with d's forms.
func (s *site) showCase(v *view, status int, d *caseData) error {
	id := chi.URLParam(v.r, "id")
	c, err := get[caseJSON](v.ctx(), v.s.api, v.token, "/v1/requests/"+url.PathEscape(id))
	if err != nil {
		return err
	}
	d.Case = c
	h, err := get[page[eventJSON]](v.ctx(), v.s.api, v.token, "/v1/requests/"+url.PathEscape(id)+"/history")
	if err != nil {
		return err
	}
	d.History = h.Items
	if c.PayeeID != "" {
		if p, err := get[payeeJSON](v.ctx(), v.s.api, v.token, "/v1/payees/"+url.PathEscape(c.PayeeID)); err == nil {
			d.Payee = &p
		}
	}
	if v.Has(assist.RoleApprover) || v.Has(assist.RoleFinance) || v.Has(assist.RoleAuditor) {
		p, err := get[page[payoutJSON]](v.ctx(), v.s.api, v.token, query("/v1/payouts", "request", c.ID))
		if err != nil {
			return err
		}
		d.Payouts = p.Items
	}
	d.Actions = actionsFor(v, c)
	if d.Actions["approve"] {
		fp, err := get[page[fundJSON]](v.ctx(), v.s.api, v.token, "/v1/funds?limit=500")
		if err != nil {
			return err
		}
		d.Funds = fp.Items
		if c.PayeeID == "" {
			if d.Payees, err = v.payees(); err != nil {
				return err
			}
		}
		af := d.F("approve")
		second := assist.State(c.Status) == assist.StateAwaitingSecondApproval
		if af.V("fund") == "" && second {
			af.Values["fund"] = c.FundID // the first approval's
		}
		if af.V("fund") == "" && len(d.Funds) > 0 {
			af.Values["fund"] = d.Funds[0].ID
		}
		if af.V("amount") == "" && second {
			af.Values["amount"] = usd(c.ApprovedCents)
		}
		if af.V("amount") == "" {
			af.Values["amount"] = usd(c.AmountCents)
		}
		for i := range d.Funds {
			if d.Funds[i].ID == af.V("fund") {
				d.Fund = &d.Funds[i]
			}
		}
	}
	v.render(status, "case", v.L.T("case.title", "ID", short(c.ID)), d)
	return nil
}

// actionsFor says which actions the case page offers the user now. The
// API decides: an action shown here may still be refused (a claim lost to
// a colleague a second ago), and the refusal is shown at its form.
func actionsFor(v *view, c caseJSON) map[string]bool {
	a := map[string]bool{}
	st := assist.State(c.Status)
	ownPost := v.Has(assist.RoleRequester) && slices.Contains(v.Me.Posts, c.Post)
	if ownPost {
		a["amend"] = st == assist.StateSubmitted || st == assist.StateInfoRequested
		a["withdraw"] = st.Open()
		a["answer"] = st == assist.StateInfoRequested
		a["beneficiary"] = true
	}
	if v.Has(assist.RoleApprover) {
		mine := c.ClaimedBy == v.Me.Username
		a["beneficiary"] = true
		a["claim"] = st == assist.StateSubmitted || (st == assist.StateUnderReview && !mine && claimExpired(c, v.s.now()))
		a["release"] = st == assist.StateUnderReview && mine
		a["approve"] = (st == assist.StateUnderReview && mine) || (st == assist.StateAwaitingSecondApproval && !approvedBy(c, v.Me.Username))
		a["reject"] = a["approve"]
		a["request-info"] = st == assist.StateUnderReview && mine
	}
	a["as-of"] = v.Has(assist.RoleApprover) || v.Has(assist.RoleAuditor)
	a["access"] = v.Has(assist.RoleAuditor)
	return a
}

// approvedBy reports whether user gave one of the case's approvals.
func approvedBy(c caseJSON, user string) bool {
	return slices.ContainsFunc(c.Approvals, func(a approval) bool { return a.Approver == user })
}

func claimExpired(c caseJSON, now time.Time) bool {
	t, ok := parseTime(c.ClaimExpiresAt)
	return ok && !now.Before(t)
}

// caseCommands are the case's commands: the form's fields, and the API
// body made of them.
var caseCommands = map[string]struct {
	fields []string
	api    string
	body   func(v *view, f *form) any
}{
	"claim":        {nil, "claim", nil},
	"release":      {nil, "release", nil},
	"withdraw":     {[]string{"reason"}, "withdraw", reasonBody},
	"reject":       {[]string{"reason"}, "reject", reasonBody},
	"answer":       {[]string{"answer"}, "info", func(_ *view, f *form) any { return map[string]string{"answer": f.V("answer")} }},
	"request-info": {[]string{"question"}, "request-info", func(_ *view, f *form) any { return map[string]string{"question": f.V("question")} }},
	"approve":      {[]string{"amount", "fund", "payee", "note"}, "approve", approveBody},
	"amend":        {fileFields[1:], "amend", amendBody},
}

func reasonBody(_ *view, f *form) any { return map[string]string{"reason": f.V("reason")} }

type approveIn struct {
	AmountCents int64  `json:"amount_usd_cents"`
	FundID      string `json:"fund_id"`
	PayeeID     string `json:"payee_id,omitempty"`
	Note        string `json:"note,omitempty"`
}

func approveBody(v *view, f *form) any {
	f.require(v.L, "amount", "fund")
	return approveIn{AmountCents: f.amount(v.L, "amount"), FundID: f.V("fund"), PayeeID: f.V("payee"), Note: f.V("note")}
}

type amendIn struct {
	Category      *string        `json:"category,omitempty"`
	Urgency       *string        `json:"urgency,omitempty"`
	AmountCents   *int64         `json:"amount_usd_cents,omitempty"`
	Justification *string        `json:"justification,omitempty"`
	Beneficiary   *beneficiaryIn `json:"beneficiary,omitempty"`
	PayeeID       *string        `json:"payee_id,omitempty"`
}

// amendBody sends what the form holds; empty fields change nothing, and
// the beneficiary is replaced only when its reference is given.
func amendBody(v *view, f *form) any {
	var in amendIn
	opt := func(name string) *string {
		if s := f.V(name); s != "" {
			return &s
		}
		return nil
	}
	in.Category, in.Urgency, in.Justification, in.PayeeID = opt("category"), opt("urgency"), opt("justification"), opt("payee")
	if f.V("amount") != "" {
		c := f.amount(v.L, "amount")
		in.AmountCents = &c
	}
	f.date(v.L, "ben_dob")
	b := beneficiaryOf(f)
	if b != (beneficiaryIn{}) {
		if b.Reference == "" {
			f.Fail("ben_ref", v.L.T("err.ref_for_amend"))
		}
		in.Beneficiary = &b
	}
	return in
}

// caseCommand is POST /requests/{id}/{command}: the command through the
// API with the form's idempotency key; then the case again, with a note
// of what was done, or the form with the API's errors at its fields.
func (s *site) caseCommand(v *view) error {
	name := chi.URLParam(v.r, "command")
	cmd, ok := caseCommands[name]
	if !ok {
		return &problem{Status: http.StatusNotFound, Code: "not_found"}
	}
	id := chi.URLParam(v.r, "id")
	f := formFrom(v.r, cmd.fields...)
	f.Key = formKey(v.r)
	switch name {
	case "withdraw", "reject":
		f.require(v.L, "reason")
	case "answer":
		f.require(v.L, "answer")
	case "request-info":
		f.require(v.L, "question")
	}
	var body any = struct{}{}
	if cmd.body != nil {
		body = cmd.body(v, f)
	}
	if f.OK() {
		res, err := v.call(call{method: http.MethodPost, path: "/v1/requests/" + url.PathEscape(id) + "/" + cmd.api, key: f.Key, body: body})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			v.redirect("/requests/" + url.PathEscape(id) + "?done=" + name)
			return nil
		}
		switch res.Problem.Status {
		case http.StatusUnauthorized, http.StatusNotFound:
			return res.Problem
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Key = randomKey()
	if name == "amend" {
		c, err := get[caseJSON](v.ctx(), v.s.api, v.token, "/v1/requests/"+url.PathEscape(id))
		if err != nil {
			return err
		}
		return s.showFileForm(v, http.StatusBadRequest, f, &c)
	}
	return s.showCase(v, statusOfForm(f), &caseData{Forms: map[string]*form{name: f}})
}

// statusOfForm is the answer's status for a refused form.
func statusOfForm(f *form) int {
	if len(f.Errors) > 0 {
		return http.StatusBadRequest
	}
	return http.StatusConflict
}

// amendForm is /requests/{id}/amend.
func (s *site) amendForm(v *view) error {
	id := chi.URLParam(v.r, "id")
	c, err := get[caseJSON](v.ctx(), v.s.api, v.token, "/v1/requests/"+url.PathEscape(id))
	if err != nil {
		return err
	}
	f := newForm()
	f.Values["category"], f.Values["urgency"], f.Values["amount"] = c.Category, c.Urgency, usd(c.AmountCents)
	f.Values["justification"], f.Values["payee"] = c.Justification, c.PayeeID
	return s.showFileForm(v, http.StatusOK, f, &c)
}

// beneficiary is POST /requests/{id}/beneficiary: the personal data,
// behind a click, read through the API, which records the read in the
// access log before answering.
func (s *site) beneficiary(v *view) error {
	id := chi.URLParam(v.r, "id")
	b, err := get[beneficiaryJSON](v.ctx(), v.s.api, v.token, "/v1/requests/"+url.PathEscape(id)+"/beneficiary")
	var p *problem
	if errors.As(err, &p) && (p.Status == http.StatusGone || p.Status == http.StatusNotFound) {
		d := &caseData{Forms: map[string]*form{}}
		d.F("beneficiary").Summary = []string{v.L.T("case.beneficiary.gone")}
		return s.showCase(v, http.StatusOK, d)
	}
	if err != nil {
		return err
	}
	return s.showCase(v, http.StatusOK, &caseData{Forms: map[string]*form{}, Beneficiary: &b})
}

// asOf is POST /requests/{id}/as-of: the time chosen, shown by GET.
func (s *site) asOf(v *view) error {
	id := chi.URLParam(v.r, "id")
	f := formFrom(v.r, "at")
	t, err := parseLocalTime(f.V("at"))
	if err != nil {
		f.Fail("at", v.L.T("err.time"))
		return s.showCase(v, http.StatusBadRequest, &caseData{Forms: map[string]*form{"as-of": f}})
	}
	v.redirect(query("/requests/"+url.PathEscape(id)+"/as-of", "t", t.Format(time.RFC3339)))
	return nil
}

// parseLocalTime reads a time typed in a datetime-local field (UTC), or
// an RFC 3339 time.
func parseLocalTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", time.RFC3339Nano} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not a time")
}

// asOfPage is /requests/{id}/as-of?t=: the case as it stood at t, rebuilt
// from the log, beside the case as it is.
func (s *site) asOfPage(v *view) error {
	id := chi.URLParam(v.r, "id")
	t := v.r.URL.Query().Get("t")
	d := &caseData{Forms: map[string]*form{}}
	f := d.F("as-of")
	f.Values["at"] = t
	if at, err := time.Parse(time.RFC3339Nano, t); err == nil {
		f.Values["at"] = at.UTC().Format("2006-01-02T15:04")
		c, err := get[caseJSON](v.ctx(), v.s.api, v.token, query("/v1/requests/"+url.PathEscape(id)+"/as-of", "t", t))
		var p *problem
		switch {
		case errors.As(err, &p) && p.Status == http.StatusBadRequest:
			f.fromProblem(v.L, p)
		case errors.As(err, &p) && p.Status == http.StatusNotFound:
			f.Fail("at", v.L.T("case.asof.none"))
		case err != nil:
			return err
		default:
			d.AsOf, d.AsOfAt = &c, t
		}
	} else {
		f.Fail("at", v.L.T("err.time"))
	}
	return s.showCase(v, http.StatusOK, d)
}
