package web

import (
	"net/http"
	"strconv"
)

type adminData struct {
	Items []deadLetterJSON
	Next  string
}

// adminPage is /admin: what the API offers admins today, the dead letters
// (events a consumer gave up on, with the reason).
func (s *site) adminPage(v *view) error {
	after, _ := strconv.ParseUint(v.r.URL.Query().Get("after"), 10, 64)
	p, err := get[deadLettersPage](v.ctx(), v.s.api, v.token, query("/v1/admin/dead-letters", "limit", "50", "after", strconv.FormatUint(after, 10)))
	if err != nil {
		return err
	}
	d := adminData{Items: p.Items}
	if p.NextAfter > after && len(p.Items) > 0 {
		d.Next = "/admin?after=" + strconv.FormatUint(p.NextAfter, 10)
	}
	v.render(http.StatusOK, "admin", v.L.T("admin.title"), d)
	return nil
}
