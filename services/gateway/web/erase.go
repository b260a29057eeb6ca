package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/eva-org/eva/pkg/assist"
)

// eraseData is the Erase page: its form, and after an erasure the case
// as the erasure answered it. The page shows of that case only its id,
// status, post and category — never a name, a date of birth, a
// justification or anything else of the person (ADR 0006).
type eraseData struct {
	Form   *form
	Erased *caseJSON
}

// eraseForm is GET /admin/erase (admins): a request's id, the reason and
// a confirmation. An admin cannot open a case's page (GET
// /v1/requests/{id} is not theirs), so erasure has its own page, which
// reads nothing of the case before the erasure.
func (s *site) eraseForm(v *view) error {
	if !v.Has(assist.RoleAdmin) {
		return &problem{Status: http.StatusForbidden, Code: "forbidden", Detail: "this needs the role admin"}
	}
	f := newForm()
	f.Values["request"] = strings.TrimSpace(v.r.URL.Query().Get("request"))
	v.render(http.StatusOK, "erase", v.L.T("erase.title"), eraseData{Form: f})
	return nil
}

// erase is POST /admin/erase: POST /v1/requests/{id}/erase with the
// reason, once the admin confirmed.
func (s *site) erase(v *view) error {
	f := formFrom(v.r, "request", "reason", "confirm")
	f.Key = formKey(v.r)
	f.Values["request"] = strings.TrimSpace(f.V("request"))
	f.require(v.L, "request", "reason")
	if f.V("confirm") == "" {
		f.Fail("confirm", v.L.T("erase.confirm.required"))
	}
	if f.OK() {
		res, err := v.call(call{method: http.MethodPost, path: "/v1/requests/" + url.PathEscape(f.V("request")) + "/erase", key: f.Key,
			body: map[string]string{"reason": f.V("reason")}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			var c caseJSON
			if err := json.Unmarshal(res.Body, &c); err != nil {
				return err
			}
			v.renderData(http.StatusOK, "erase", &pageData{Title: v.L.T("erase.title"), Flash: v.L.T("erase.done", "ID", c.ID),
				D: eraseData{Form: newForm(), Erased: &caseJSON{ID: c.ID, Status: c.Status, Post: c.Post, Category: c.Category}}})
			return nil
		}
		switch p := res.Problem; {
		case p.Status == http.StatusUnauthorized || p.Status == http.StatusForbidden:
			return p
		case p.Status == http.StatusNotFound:
			f.Fail("request", v.L.T("erase.notfound"))
		case p.Status == http.StatusConflict:
			f.Fail("request", v.L.T("erase.again"))
		default:
			for i, fe := range p.Errors {
				if fe.Field == "id" {
					p.Errors[i].Field = "request"
				}
			}
			f.fromProblem(v.L, p)
		}
	}
	f.Key = randomKey()
	v.render(statusOfForm(f), "erase", v.L.T("erase.title"), eraseData{Form: f})
	return nil
}
