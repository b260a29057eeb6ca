package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/go-chi/chi/v5"
)

type fundListData struct {
	Items []fundJSON
	Bars  []fundBar
	Form  *form
	Next  string
}

// fundList is /funds: every fund with what is paid, reserved and
// available, and for finance the form that creates one.
func (s *site) fundList(v *view) error { return s.showFunds(v, http.StatusOK, newForm()) }

func (s *site) showFunds(v *view, status int, f *form) error {
	cursor := v.r.URL.Query().Get("cursor")
	p, err := get[page[fundJSON]](v.ctx(), v.s.api, v.token, query("/v1/funds", "limit", "50", "cursor", cursor))
	if err != nil {
		return err
	}
	d := fundListData{Items: p.Items, Form: f}
	for _, fd := range p.Items {
		d.Bars = append(d.Bars, newFundBar(fd))
	}
	if p.NextCursor != "" {
		d.Next = query("/funds", "cursor", p.NextCursor)
	}
	v.render(status, "funds", v.L.T("funds.title"), d)
	return nil
}

// createFund is POST /funds.
func (s *site) createFund(v *view) error {
	f := formFrom(v.r, "name", "allocated")
	f.Key = formKey(v.r)
	f.require(v.L, "name", "allocated")
	cents := f.amount(v.L, "allocated")
	if f.OK() {
		res, err := v.call(call{method: http.MethodPost, path: "/v1/funds", key: f.Key,
			body: map[string]any{"name": f.V("name"), "allocated_usd_cents": cents}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			var fd fundJSON
			if err := res.decode(&fd); err != nil {
				return err
			}
			v.redirect("/funds/" + url.PathEscape(fd.ID) + "?done=fund")
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized {
			return res.Problem
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Key = randomKey()
	return s.showFunds(v, statusOfForm(f), f)
}

type fundData struct {
	Fund   fundJSON
	Chart  burnChart
	Bar    fundBar
	Ledger ledgerJSON
	// Next is the link to the ledger's next page; empty on the last.
	Next string
	// Form is finance's form that changes the allocation; Committed is
	// what is reserved and paid, the lowest allocation it can set.
	Form      *form
	Committed int64
}

// fundPage is /funds/{id}: the fund, its burn-down (allocated, reserved,
// paid over time) from GET /v1/funds/{id}/history, a page of its
// double-entry ledger from GET /v1/funds/{id}/ledger (?after= pages on),
// and for finance the form that changes its allocation.
func (s *site) fundPage(v *view) error { return s.showFund(v, http.StatusOK, newForm()) }

func (s *site) showFund(v *view, status int, f *form) error {
	id := chi.URLParam(v.r, "id")
	fd, err := get[fundJSON](v.ctx(), v.s.api, v.token, "/v1/funds/"+url.PathEscape(id))
	if err != nil {
		return err
	}
	h, err := get[fundHistory](v.ctx(), v.s.api, v.token, "/v1/funds/"+url.PathEscape(id)+"/history")
	if err != nil {
		return err
	}
	l, err := get[ledgerJSON](v.ctx(), v.s.api, v.token, query("/v1/funds/"+url.PathEscape(id)+"/ledger",
		"limit", "100", "after", v.r.URL.Query().Get("after")))
	if err != nil {
		return err
	}
	d := fundData{Fund: fd, Chart: burnDownChart(v.L, fd, h.Items, v.s.now()), Bar: newFundBar(fd), Ledger: l, Form: f,
		Committed: fd.ReservedCents + fd.PaidCents}
	if l.NextAfter > 0 {
		d.Next = query("/funds/"+url.PathEscape(id), "after", strconv.FormatUint(l.NextAfter, 10)) + "#ledger-h"
	}
	v.render(status, "fund", fd.Name, d)
	return nil
}

// changeAllocation is POST /funds/{id}/allocation: the new allocation in
// dollars and the reason, through POST /v1/funds/{id}/allocation; a
// refusal (a cut below what is reserved and paid, the same allocation, no
// reason) comes back at its field.
func (s *site) changeAllocation(v *view) error {
	id := chi.URLParam(v.r, "id")
	f := formFrom(v.r, "allocated", "reason")
	f.Key = formKey(v.r)
	f.require(v.L, "allocated", "reason")
	cents := f.amount(v.L, "allocated")
	if f.OK() {
		path := "/funds/" + url.PathEscape(id)
		res, err := v.call(call{method: http.MethodPost, path: "/v1" + path + "/allocation", key: f.Key,
			body: map[string]any{"allocated_usd_cents": cents, "reason": f.V("reason")}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			v.redirect(path + "?done=allocation")
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized || res.Problem.Status == http.StatusForbidden {
			return res.Problem
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Key = randomKey()
	return s.showFund(v, statusOfForm(f), f)
}

type payeeListData struct {
	Items []payeeJSON
	Form  *form
	Next  string
}

// payeeList is /payees.
func (s *site) payeeList(v *view) error { return s.showPayees(v, http.StatusOK, newForm()) }

func (s *site) showPayees(v *view, status int, f *form) error {
	cursor := v.r.URL.Query().Get("cursor")
	p, err := get[page[payeeJSON]](v.ctx(), v.s.api, v.token, query("/v1/payees", "limit", "50", "cursor", cursor))
	if err != nil {
		return err
	}
	d := payeeListData{Items: p.Items, Form: f}
	if p.NextCursor != "" {
		d.Next = query("/payees", "cursor", p.NextCursor)
	}
	v.render(status, "payees", v.L.T("payees.title"), d)
	return nil
}

// createPayee is POST /payees.
func (s *site) createPayee(v *view) error {
	f := formFrom(v.r, "name", "country", "account")
	f.Key = formKey(v.r)
	f.require(v.L, "name", "account")
	if f.OK() {
		res, err := v.call(call{method: http.MethodPost, path: "/v1/payees", key: f.Key,
			body: map[string]any{"name": f.V("name"), "country": f.V("country"), "account": f.V("account")}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			v.redirect("/payees?done=payee")
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized {
			return res.Problem
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Key = randomKey()
	return s.showPayees(v, statusOfForm(f), f)
}

// payoutStatuses are the API's payout statuses.
var payoutStatuses = []string{"pending", "sent", "settled", "failed", "cancelled"}

type payoutListData struct {
	Items    []payoutJSON
	Status   string
	Statuses []string
	Next     string
	Payees   map[string]string
	Forms    map[string]*form
	// Failed names the payout whose form failed.
	Failed string
}

// F is the form of a payout's action.
func (d *payoutListData) F(id, action string) *form {
	if f, ok := d.Forms[id+"/"+action]; ok {
		return f
	}
	return newForm()
}

// payoutList is /payouts, filtered by status, with retry and cancel for
// finance.
func (s *site) payoutList(v *view) error {
	return s.showPayouts(v, http.StatusOK, map[string]*form{})
}

func (s *site) showPayouts(v *view, status int, forms map[string]*form) error {
	q := v.r.URL.Query()
	st := q.Get("status")
	if !slices.Contains(payoutStatuses, st) {
		st = ""
	}
	p, err := get[page[payoutJSON]](v.ctx(), v.s.api, v.token, query("/v1/payouts", "limit", "50", "status", st, "cursor", q.Get("cursor")))
	if err != nil {
		return err
	}
	d := payoutListData{Items: p.Items, Status: st, Statuses: payoutStatuses, Payees: map[string]string{}, Forms: forms}
	if p.NextCursor != "" {
		d.Next = query("/payouts", "status", st, "cursor", p.NextCursor)
	}
	if payees, err := v.payees(); err == nil {
		for _, pe := range payees {
			d.Payees[pe.ID] = pe.Name
		}
	}
	v.render(status, "payouts", v.L.T("payouts.title"), d)
	return nil
}

// payoutCommand is POST /payouts/{id}/retry and /cancel.
func (s *site) payoutCommand(v *view) error {
	id, name := chi.URLParam(v.r, "id"), chi.URLParam(v.r, "command")
	if name != "retry" && name != "cancel" {
		return &problem{Status: http.StatusNotFound, Code: "not_found"}
	}
	f := formFrom(v.r, "reason")
	f.Key = formKey(v.r)
	var body any = struct{}{}
	if name == "cancel" {
		f.require(v.L, "reason")
		body = map[string]string{"reason": f.V("reason")}
	}
	if f.OK() {
		res, err := v.call(call{method: http.MethodPost, path: "/v1/payouts/" + url.PathEscape(id) + "/" + name, key: f.Key, body: body})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			v.redirect("/payouts?done=payout_" + name)
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized {
			return res.Problem
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Key = randomKey()
	return s.showPayouts(v, statusOfForm(f), map[string]*form{id + "/" + name: f})
}

// streamWriter passes a successful API answer through to the browser as
// it comes (an export), and keeps a refusal to show it as a page.
type streamWriter struct {
	w       http.ResponseWriter
	header  http.Header
	status  int
	refused []byte
}

func (s *streamWriter) Header() http.Header { return s.header }

func (s *streamWriter) WriteHeader(status int) {
	if s.status != 0 {
		return
	}
	s.status = status
	if status < 400 {
		for _, k := range []string{"Content-Type", "Content-Disposition"} {
			if v := s.header.Get(k); v != "" {
				s.w.Header().Set(k, v)
			}
		}
		s.w.WriteHeader(status)
	}
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.status >= 400 {
		s.refused = append(s.refused, p...)
		return len(p), nil
	}
	return s.w.Write(p)
}

func (s *streamWriter) Flush() {
	if f, ok := s.w.(http.Flusher); ok && s.status > 0 && s.status < 400 {
		f.Flush()
	}
}

// export is POST /audit/export: the API's export, streamed to the browser
// as a download.
func (s *site) export(v *view) error {
	format := v.r.PostForm.Get("format")
	if format != "csv" {
		format = "jsonl"
	}
	req, err := http.NewRequestWithContext(v.ctx(), http.MethodGet, "http://eva.internal/v1/audit/export?format="+format, http.NoBody)
	if err != nil {
		return err
	}
	req.RemoteAddr = "in-process"
	req.Header.Set("Authorization", "Bearer "+v.token)
	sw := &streamWriter{w: v.w, header: http.Header{}}
	v.s.api.h.ServeHTTP(sw, req)
	if sw.status >= 400 {
		p := &problem{}
		if err := json.Unmarshal(sw.refused, p); err != nil || p.Status == 0 {
			p.Status = sw.status
		}
		return p
	}
	if sw.status == 0 {
		return errors.New("the export answered nothing")
	}
	return nil
}

var _ io.Writer = (*streamWriter)(nil)
