package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

func login(h *harness, username, password, query string) *httptest.ResponseRecorder {
	return h.do(req{method: http.MethodPost, path: "/v1/auth/token" + query,
		body: `{"username":` + strconv.Quote(username) + `,"password":` + strconv.Quote(password) + `}`})
}

func TestLogin(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)

		t.Run("ok", func(t *testing.T) {
			w := login(h, "ana", "pw", "")
			tok := decodeJSONBody[tokenResponse](t, w, http.StatusOK)
			if !strings.HasPrefix(tok.Token, tokenPrefix) || len(tok.Token) < 40 {
				t.Fatalf("token %q", tok.Token)
			}
			if want := formatTime(h.clock.Now().Add(DefaultTokenTTL)); tok.ExpiresAt != want {
				t.Fatalf("expires_at %s, want %s", tok.ExpiresAt, want)
			}
			if w.Header().Get("Set-Cookie") != "" {
				t.Fatal("cookie set without ?cookie=1")
			}
			r := req{method: http.MethodGet, path: "/v1/me", header: map[string]string{"Authorization": "Bearer " + tok.Token}}
			me := decodeJSONBody[meResponse](t, h.do(r), http.StatusOK)
			if me.Username != "ana" || len(me.Roles) != 1 || me.Roles[0] != requester || len(me.Posts) != 1 || me.Posts[0] != "BGD-DHAKA" {
				t.Fatalf("me = %+v", me)
			}
			// Only the token's hash is stored.
			rows, err := db.Query(context.Background(), `SELECT hash FROM gateway_tokens`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var hash string
				if err := rows.Scan(&hash); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(hash, tok.Token) || strings.Contains(tok.Token, hash) {
					t.Fatal("token stored in clear")
				}
			}
		})

		t.Run("wrong password and unknown user look alike", func(t *testing.T) {
			wrong := decodeProblem(t, login(h, "olu", "nope", ""), http.StatusUnauthorized)
			unknown := decodeProblem(t, login(h, "nobody", "pw", ""), http.StatusUnauthorized)
			if wrong.Detail != unknown.Detail || wrong.Detail == "" {
				t.Fatalf("details differ: %q vs %q", wrong.Detail, unknown.Detail)
			}
		})

		t.Run("missing fields", func(t *testing.T) {
			for body, field := range map[string]string{
				`{"password":"pw"}`:                        "username",
				`{"username":"ana"}`:                       "password",
				`{"username":"ana","password":"pw","x":1}`: "x",
				`{"username":1,"password":"pw"}`:           "username",
			} {
				p := decodeProblem(t, h.do(req{method: http.MethodPost, path: "/v1/auth/token", body: body}), http.StatusBadRequest)
				if fs := fieldsOf(p); len(fs) == 0 || fs[0] != field {
					t.Errorf("%s: fields %v, want %s", body, fs, field)
				}
			}
		})

		t.Run("cookie", func(t *testing.T) {
			w := login(h, "fin", "pw", "?cookie=1")
			tok := decodeJSONBody[tokenResponse](t, w, http.StatusOK)
			cookies := w.Result().Cookies()
			if len(cookies) != 1 {
				t.Fatalf("cookies %v", cookies)
			}
			c := cookies[0]
			if c.Name != SessionCookie || c.Value != tok.Token || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure {
				t.Fatalf("cookie %+v", c)
			}
			r := req{method: http.MethodGet, path: "/v1/me", header: map[string]string{"Cookie": SessionCookie + "=" + c.Value}}
			if me := decodeJSONBody[meResponse](t, h.do(r), http.StatusOK); me.Username != "fin" {
				t.Fatalf("me by cookie = %+v", me)
			}
		})

		t.Run("secure cookie", func(t *testing.T) {
			h := newHarness(t, sqldbtest.SQLite(t), func(c *Config) { c.CookieSecure = true })
			w := login(h, "fin", "pw", "?cookie=1")
			if c := w.Result().Cookies(); len(c) != 1 || !c[0].Secure {
				t.Fatalf("cookie %+v, want Secure", c)
			}
		})
	})
}

func TestLoginRateLimit(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	free := DefaultThrottlePolicy.PairFree
	for range free {
		decodeProblem(t, login(h, "olu", "wrong", ""), http.StatusUnauthorized)
	}
	// Now even the right password waits, from this address.
	w := login(h, "olu", "pw", "")
	p := decodeProblem(t, w, http.StatusTooManyRequests)
	if w.Header().Get("Retry-After") != "1" || !strings.Contains(p.Detail, "1 s") {
		t.Fatalf("Retry-After %q, detail %q", w.Header().Get("Retry-After"), p.Detail)
	}
	// Other usernames are not held back.
	decodeJSONBody[tokenResponse](t, login(h, "mei", "pw", ""), http.StatusOK)
	// Unknown usernames are limited too.
	for range free {
		decodeProblem(t, login(h, "ghost", "x", ""), http.StatusUnauthorized)
	}
	decodeProblem(t, login(h, "ghost", "x", ""), http.StatusTooManyRequests)
	// After the wait, the right password works again, and resets.
	h.clock.Advance(time.Second)
	decodeJSONBody[tokenResponse](t, login(h, "olu", "pw", ""), http.StatusOK)
	for range free {
		decodeProblem(t, login(h, "olu", "wrong", ""), http.StatusUnauthorized)
	}
}

func TestAuthRequired(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		for name, hdr := range map[string]map[string]string{
			"no credentials":     nil,
			"basic":              {"Authorization": "Basic YW5hOnB3"},
			"bearer, no token":   {"Authorization": "Bearer "},
			"unknown token":      {"Authorization": "Bearer eva_notatoken"},
			"huge token":         {"Authorization": "Bearer " + strings.Repeat("x", 10000)},
			"unknown cookie":     {"Cookie": SessionCookie + "=eva_nope"},
			"token of the token": {"Authorization": "Bearer " + string(tokenHash(h.tokens["ana"]))},
		} {
			w := h.do(req{method: http.MethodGet, path: "/v1/requests/" + dhakaCase, header: hdr})
			decodeProblem(t, w, http.StatusUnauthorized)
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s: no WWW-Authenticate", name)
			}
		}
		// Commands too, and nothing reaches a service.
		decodeProblem(t, h.do(req{method: http.MethodPost, path: "/v1/requests", body: `{}`}), http.StatusUnauthorized)
		if got := h.calls.list(); len(got) != 0 {
			t.Fatalf("services called without credentials: %v", got)
		}

		t.Run("expired", func(t *testing.T) {
			h.clock.Advance(DefaultTokenTTL - time.Second)
			decodeJSONBody[meResponse](t, h.get("ana", "/v1/me"), http.StatusOK)
			h.clock.Advance(time.Second)
			p := decodeProblem(t, h.get("ana", "/v1/me"), http.StatusUnauthorized)
			if !strings.Contains(p.Detail, "expired") {
				t.Fatalf("detail %q", p.Detail)
			}
		})

		t.Run("sign out", func(t *testing.T) {
			h := newHarness(t, db)
			w := h.do(req{user: "fin", method: http.MethodDelete, path: "/v1/auth/token"})
			if w.Code != http.StatusNoContent {
				t.Fatalf("sign out: %d %s", w.Code, w.Body)
			}
			decodeProblem(t, h.get("fin", "/v1/me"), http.StatusUnauthorized)
			decodeJSONBody[meResponse](t, h.get("aud", "/v1/me"), http.StatusOK)
		})

		t.Run("public routes", func(t *testing.T) {
			for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.json"} {
				if w := h.do(req{method: http.MethodGet, path: path}); w.Code != http.StatusOK {
					t.Errorf("%s: %d", path, w.Code)
				}
			}
		})
	})
}
