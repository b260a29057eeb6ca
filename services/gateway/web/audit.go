package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

type auditData struct {
	Events []eventJSON
	After  uint64
	Next   string
	First  string
	// Checkpoint is the latest signed checkpoint and Key its verifier
	// key, as text.
	Checkpoint, Key string
	Verify          *verifyJSON
	Access          []accessJSON
	AccessCase      string
	Forms           map[string]*form
}

// F is the form of an action of the page.
func (d *auditData) F(name string) *form {
	if f, ok := d.Forms[name]; ok {
		return f
	}
	f := newForm()
	d.Forms[name] = f
	return f
}

// auditPage is /audit: the event log paged in log order (?after=), the
// head of the archive, Verify, the access log of a case, Export.
func (s *site) auditPage(v *view) error {
	return s.showAudit(v, http.StatusOK, &auditData{Forms: map[string]*form{}})
}

func (s *site) showAudit(v *view, status int, d *auditData) error {
	after, _ := strconv.ParseUint(v.r.URL.Query().Get("after"), 10, 64)
	p, err := get[eventsPage](v.ctx(), v.s.api, v.token, query("/v1/audit/events", "limit", "50", "after", strconv.FormatUint(after, 10)))
	if err != nil {
		return err
	}
	d.Events, d.After = p.Items, after
	if p.NextAfter > after && len(p.Items) > 0 {
		d.Next = "/audit?after=" + strconv.FormatUint(p.NextAfter, 10)
	}
	if after > 0 {
		d.First = "/audit"
	}
	if id := v.r.URL.Query().Get("access"); id != "" {
		f := d.F("access")
		f.Values["case"] = id
		p, err := get[page[accessJSON]](v.ctx(), v.s.api, v.token, query("/v1/audit/access", "case", id))
		var prob *problem
		switch {
		case errors.As(err, &prob) && prob.Status == http.StatusBadRequest:
			f.fromProblem(v.L, prob)
			status = http.StatusBadRequest
		case err != nil:
			return err
		default:
			d.Access, d.AccessCase = p.Items, id
		}
	}
	if c, err := getText(v.ctx(), v.s.api, v.token, "/v1/audit/checkpoint"); err == nil {
		d.Checkpoint = c
	}
	if k, err := getText(v.ctx(), v.s.api, v.token, "/v1/audit/key"); err == nil {
		d.Key = k
	}
	v.render(status, "audit", v.L.T("audit.title"), d)
	return nil
}

// verify is POST /audit/verify: the archive checked against its hash
// chain, its Merkle tree, its signed checkpoints and the event log, the
// result marked data-verify="ok" or "failed".
func (s *site) verify(v *view) error {
	r, err := get[verifyJSON](v.ctx(), v.s.api, v.token, "/v1/audit/verify")
	if err != nil {
		return err
	}
	return s.showAudit(v, http.StatusOK, &auditData{Forms: map[string]*form{}, Verify: &r})
}

// accessLog is POST /audit/access: the case's id typed, shown by GET
// /audit?access=<id>.
func (s *site) accessLog(v *view) error {
	f := formFrom(v.r, "case")
	f.Values["case"] = strings.TrimPrefix(f.V("case"), "/requests/")
	f.require(v.L, "case")
	if f.OK() {
		v.redirect(accessPath(f.V("case")))
		return nil
	}
	return s.showAudit(v, http.StatusBadRequest, &auditData{Forms: map[string]*form{"access": f}})
}

// accessPath is the page of a case's access log.
func accessPath(id string) string { return "/audit?access=" + url.QueryEscape(id) + "#access" }
