package web

import "time"

// option is one choice of a select.
type option struct{ V, T string }

// CSRF is the token every form of the page carries.
func (v *view) CSRF() string { return v.csrf }

// Back is the page itself, to come back to after choosing a language.
func (v *view) Back() string { return localPath(v.r.URL.RequestURI()) }

// Now is the time the page is drawn at.
func (v *view) Now() time.Time { return v.s.now() }

// PostOptions are the user's posts.
func (v *view) PostOptions() []option {
	var out []option
	if v.Me != nil {
		for _, p := range v.Me.Posts {
			out = append(out, option{p, p})
		}
	}
	return out
}

// CategoryOptions are the assistance categories; with choose, a first
// empty choice asks for one.
func (v *view) CategoryOptions(choose bool) []option {
	var out []option
	if choose {
		out = append(out, option{"", v.L.T("form.choose")})
	}
	for _, c := range categories() {
		out = append(out, option{c, v.L.T("category." + c)})
	}
	return out
}

// UrgencyOptions are the urgencies with their deadlines.
func (v *view) UrgencyOptions() []option {
	var out []option
	for _, u := range urgencies() {
		out = append(out, option{u, v.L.T("urgency." + u + ".long")})
	}
	return out
}

// PayeeOptions are the payees; with none, a first choice of none.
func (v *view) PayeeOptions(ps []payeeJSON, none bool) []option {
	var out []option
	if none {
		out = append(out, option{"", v.L.T("file.payee.none")})
	} else {
		out = append(out, option{"", v.L.T("form.choose")})
	}
	for _, p := range ps {
		t := p.Name
		if p.Country != "" {
			t += " (" + p.Country + ")"
		}
		out = append(out, option{p.ID, t})
	}
	return out
}

// FundOptions are the funds with what each has available.
func (v *view) FundOptions(fs []fundJSON) []option {
	var out []option
	for _, f := range fs {
		out = append(out, option{f.ID, v.L.T("approve.fund.option", "Name", f.Name, "Available", usd(f.AvailableCents))})
	}
	return out
}
