package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
)

// userJSON is an account as GET /v1/admin/users answers it.
type userJSON struct {
	Username string   `json:"username"`
	Roles    []string `json:"roles"`
	Posts    []string `json:"posts"`
	Disabled bool     `json:"disabled"`
	Email    string   `json:"email"`
}

// userRow is one account of /users with its change form.
type userRow struct {
	userJSON
	// P prefixes the ids of its form's controls; Action is where it posts.
	P, Action string
	Form      *form
}

type usersData struct {
	Items []userRow
	Next  string
	// Form is the form that creates an account.
	Form *form
}

// usersPage is /users: the accounts, a form per account to change its
// roles, posts and whether it is disabled, and a form to create one.
func (s *site) usersPage(v *view) error { return s.showUsers(v, http.StatusOK, newForm(), "", nil) }

// showUsers renders /users; failed, when not "", is the account whose
// change form f2 was refused.
func (s *site) showUsers(v *view, status int, create *form, failed string, f2 *form) error {
	cursor := v.r.URL.Query().Get("cursor")
	p, err := get[page[userJSON]](v.ctx(), v.s.api, v.token, query("/v1/admin/users", "limit", "50", "cursor", cursor))
	if err != nil {
		return err
	}
	d := usersData{Form: create}
	for i, u := range p.Items {
		row := userRow{userJSON: u, P: "user" + strconv.Itoa(i), Action: "/users/" + url.PathEscape(u.Username)}
		if u.Username == failed && f2 != nil {
			row.Form = f2
		} else {
			row.Form = newForm()
			row.Form.Values = map[string]string{"roles": strings.Join(u.Roles, ", "), "posts": strings.Join(u.Posts, ", "),
				"email": u.Email}
			if u.Disabled {
				row.Form.Values["disabled"] = "on"
			}
		}
		d.Items = append(d.Items, row)
	}
	if p.NextCursor != "" {
		d.Next = query("/users", "cursor", p.NextCursor)
	}
	v.render(status, "users", v.L.T("users.title"), d)
	return nil
}

// list splits a comma-separated field into its items.
func list(s string) []string {
	out := []string{}
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// createUser is POST /users.
func (s *site) createUser(v *view) error {
	f := formFrom(v.r, "username", "password", "roles", "posts", "email")
	f.Key = formKey(v.r)
	f.require(v.L, "username", "password", "roles")
	if f.OK() {
		res, err := v.call(call{method: http.MethodPost, path: "/v1/admin/users", key: f.Key,
			body: map[string]any{"username": f.V("username"), "password": v.r.PostForm.Get("password"),
				"roles": list(f.V("roles")), "posts": list(f.V("posts")), "email": strings.TrimSpace(f.V("email"))}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			v.redirect("/users?done=user_created")
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized {
			return res.Problem
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Values["password"] = "" // never sent back
	f.Key = randomKey()
	return s.showUsers(v, statusOfForm(f), f, "", nil)
}

// changeUser is POST /users/{username}: the account's roles, posts,
// e-mail address and disabled flag, as the form shows them.
func (s *site) changeUser(v *view) error {
	username := chi.URLParam(v.r, "username")
	if u, err := url.PathUnescape(username); err == nil {
		username = u
	}
	f := formFrom(v.r, "roles", "posts", "disabled", "email")
	f.Key = formKey(v.r)
	res, err := v.call(call{method: http.MethodPatch, path: "/v1/admin/users/" + url.PathEscape(username), key: f.Key,
		body: map[string]any{"roles": list(f.V("roles")), "posts": list(f.V("posts")), "disabled": f.V("disabled") != "",
			"email": strings.TrimSpace(f.V("email"))}})
	if err != nil {
		return err
	}
	if res.Problem == nil {
		v.redirect("/users?done=user_changed")
		return nil
	}
	if res.Problem.Status == http.StatusUnauthorized {
		return res.Problem
	}
	f.fromProblem(v.L, res.Problem)
	f.Key = randomKey()
	return s.showUsers(v, statusOfForm(f), newForm(), username, f)
}
