package gateway

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

func loginOTP(h *harness, username, password, code string) *httptest.ResponseRecorder {
	return h.do(req{method: http.MethodPost, path: "/v1/auth/token",
		body: `{"username":` + strconv.Quote(username) + `,"password":` + strconv.Quote(password) + `,"otp":` + strconv.Quote(code) + `}`})
}

// codeAt is the code of secret at t, as an authenticator shows it.
func codeAt(tb testing.TB, secret string, t time.Time) string {
	tb.Helper()
	c, err := totp.GenerateCodeCustom(secret, t, totpOpts)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TOTP on the test's clock: enrol, confirm, sign in with a code; a code
// is good one step either side of now and only once.
func TestTOTP(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		enrol := decodeJSONBody[totpEnrolResponse](t, h.do(req{method: http.MethodPost, path: "/v1/auth/totp",
			body: `{"username":"olu","password":"pw"}`}), http.StatusOK)
		if len(enrol.Secret) < 16 || !strings.HasPrefix(enrol.URL, "otpauth://totp/EVA:olu?") {
			t.Fatalf("enrolment %+v", enrol)
		}
		// Until confirmed, the factor is not asked for.
		decodeJSONBody[tokenResponse](t, login(h, "olu", "pw", ""), http.StatusOK)
		confirm := func(code string) *httptest.ResponseRecorder {
			return h.do(req{method: http.MethodPost, path: "/v1/auth/totp/confirm",
				body: `{"username":"olu","password":"pw","otp":"` + code + `"}`})
		}
		p := decodeProblem(t, confirm("000000"), http.StatusUnauthorized)
		if fs := fieldsOf(p); len(fs) != 1 || fs[0] != "otp" {
			t.Fatalf("wrong code at confirmation: fields %v", fs)
		}
		decodeJSONBody[totpConfirmResponse](t, confirm(codeAt(t, enrol.Secret, h.clock.Now())), http.StatusOK)

		// Now the password alone is not enough.
		p = decodeProblem(t, login(h, "olu", "pw", ""), http.StatusUnauthorized)
		if fs := fieldsOf(p); len(fs) != 1 || fs[0] != "otp" {
			t.Fatalf("no code: fields %v", fs)
		}
		// The confirmation's code is used; the next step's is good.
		decodeProblem(t, loginOTP(h, "olu", "pw", codeAt(t, enrol.Secret, h.clock.Now())), http.StatusUnauthorized)
		h.clock.Advance(totpPeriod)
		code := codeAt(t, enrol.Secret, h.clock.Now())
		decodeJSONBody[tokenResponse](t, loginOTP(h, "olu", "pw", code), http.StatusOK)
		// Once only.
		decodeProblem(t, loginOTP(h, "olu", "pw", code), http.StatusUnauthorized)
		// A code of the next step is good now (clock drift), one of two
		// steps ahead or behind is not.
		h.clock.Advance(totpPeriod)
		decodeProblem(t, loginOTP(h, "olu", "pw", codeAt(t, enrol.Secret, h.clock.Now().Add(-2*totpPeriod))), http.StatusUnauthorized)
		decodeProblem(t, loginOTP(h, "olu", "pw", codeAt(t, enrol.Secret, h.clock.Now().Add(2*totpPeriod))), http.StatusUnauthorized)
		h.clock.Advance(time.Second) // the throttle's wait
		decodeJSONBody[tokenResponse](t, loginOTP(h, "olu", "pw", codeAt(t, enrol.Secret, h.clock.Now().Add(totpPeriod))), http.StatusOK)
		// A code with the wrong password is nothing.
		h.clock.Advance(2 * totpPeriod)
		decodeProblem(t, loginOTP(h, "olu", "wrong", codeAt(t, enrol.Secret, h.clock.Now())), http.StatusUnauthorized)

		// Replacing the factor takes the current code.
		h.clock.Advance(totpPeriod)
		p = decodeProblem(t, h.do(req{method: http.MethodPost, path: "/v1/auth/totp",
			body: `{"username":"olu","password":"pw"}`}), http.StatusUnauthorized)
		if fs := fieldsOf(p); len(fs) != 1 || fs[0] != "otp" {
			t.Fatalf("re-enrol without a code: fields %v", fs)
		}
		decodeJSONBody[totpEnrolResponse](t, h.do(req{method: http.MethodPost, path: "/v1/auth/totp",
			body: `{"username":"olu","password":"pw","otp":"` + codeAt(t, enrol.Secret, h.clock.Now()) + `"}`}), http.StatusOK)
	})
}

// With RequireTOTP, approver, finance and admin accounts need a second
// factor; requesters and auditors do not.
func TestTOTPRequired(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), func(c *Config) { c.RequireTOTP = true })
	for _, u := range []string{"olu", "fin", "adm"} {
		p := decodeProblem(t, login(h, u, "pw", ""), http.StatusForbidden)
		if !strings.Contains(p.Detail, "/v1/auth/totp") {
			t.Errorf("%s: detail %q", u, p.Detail)
		}
	}
	for _, u := range []string{"ana", "aud"} {
		decodeJSONBody[tokenResponse](t, login(h, u, "pw", ""), http.StatusOK)
	}
	enrol := decodeJSONBody[totpEnrolResponse](t, h.do(req{method: http.MethodPost, path: "/v1/auth/totp",
		body: `{"username":"fin","password":"pw"}`}), http.StatusOK)
	decodeJSONBody[totpConfirmResponse](t, h.do(req{method: http.MethodPost, path: "/v1/auth/totp/confirm",
		body: `{"username":"fin","password":"pw","otp":"` + codeAt(t, enrol.Secret, h.clock.Now()) + `"}`}), http.StatusOK)
	h.clock.Advance(totpPeriod)
	decodeJSONBody[tokenResponse](t, loginOTP(h, "fin", "pw", codeAt(t, enrol.Secret, h.clock.Now())), http.StatusOK)
}
