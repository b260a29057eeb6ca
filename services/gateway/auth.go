package gateway

import (
	"context"
	"crypto/sha256"
	"net/http"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
)

// SessionCookie is the cookie that carries a token for the web UI.
const SessionCookie = "eva_session"

// tokenPrefix marks EVA tokens, so that secret scanners recognise them.
const tokenPrefix = "eva_"

// dummyHash is compared against when the username is unknown, so that a
// wrong username costs as much time as a wrong password. It is the hash of
// a random password at bcrypt.DefaultCost.
var dummyHash = []byte("$2a$10$G3j8k5GYBw9ETxBxo2kcJeRy1uuYzt7wmPQabE1kjJbLxb228kumS")

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// OTP is the current TOTP code of an account with a second factor.
	OTP string `json:"otp,omitempty" jsonschema_description:"the current one-time code, for an account with a second factor"`
}

// loginQuery is the query of POST /v1/auth/token.
type loginQuery struct {
	Cookie string `query:"cookie" doc:"1: also set the session cookie eva_session, for the web UI"`
}

type tokenResponse struct {
	Token     string    `json:"token" jsonschema_description:"a bearer token"`
	ExpiresAt timestamp `json:"expires_at" jsonschema_description:"when the session ends: the token is refused from then on"`
	// AccessExpiresAt is an addition to API.md.
	AccessExpiresAt timestamp `json:"access_expires_at" jsonschema_description:"until then every gateway replica accepts the token on its own, even while its database is down; after it, the token still works while the session lasts but each request reads the session: POST /v1/auth/refresh for a fresh one"`
}

// roleName is a role a user may hold (assist.Roles).
type roleName string

type meResponse struct {
	Username string     `json:"username"`
	Roles    []roleName `json:"roles"`
	Posts    []string   `json:"posts"`
}

var errBadCredentials = assist.Errorf(assist.CodeUnauthenticated, "wrong username or password")

// login is POST /v1/auth/token. It ignores Idempotency-Key: a token is
// never stored in clear, so it cannot be replayed, and signing in twice
// is harmless.
func (s *server) login(w http.ResponseWriter, r *http.Request, q loginQuery, in loginRequest) (tokenResponse, error) {
	now := s.now()
	acct, attempt, err := s.checkPassword(r, in.Username, in.Password, now)
	if err != nil {
		return tokenResponse{}, err
	}
	if err := s.checkSecondFactor(r.Context(), acct, in.OTP, now); err != nil {
		return tokenResponse{}, err
	}
	if err := s.store.LoginSucceeded(r.Context(), attempt, now); err != nil {
		return tokenResponse{}, err
	}
	sid, exp, err := s.newSession(r.Context(), acct)
	if err != nil {
		return tokenResponse{}, err
	}
	noteSignIn(r, "password")
	return s.answerToken(w, r, q, sid, acct, exp)
}

// upgradeHash replaces the bcrypt (or otherwise outdated) hash of an
// account that just proved its password with an argon2id hash made with
// the current parameters. A failure is logged, not returned: the sign-in
// stands, and the next one tries again.
func (s *server) upgradeHash(ctx context.Context, acct Account, password string) {
	if _, err := s.store.ReplacePasswordHash(ctx, acct.Username, acct.PasswordHash, s.cfg.Password.hash(password)); err != nil {
		s.log.Warn("upgrade password hash", zap.String("username", acct.Username), zap.Error(err))
	}
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// logout is DELETE /v1/auth/token: it revokes the token the request was
// made with and clears the session cookie.
func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	token, _ := requestToken(r)
	sid, err := s.sessionOf(r.Context(), token)
	if err == nil {
		err = s.revokeSession(r.Context(), sid)
	}
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.cfg.CookieSecure, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// me is GET /v1/me.
func (s *server) me(r *http.Request) (meResponse, error) {
	u := userOf(r)
	roles := make([]roleName, len(u.Roles))
	for i, role := range u.Roles {
		roles[i] = roleName(role)
	}
	return meResponse{Username: u.Username, Roles: roles, Posts: nonNil(u.Posts)}, nil
}

type userKey struct{}

// userOf returns the authenticated user of a request that went through
// authenticate.
func userOf(r *http.Request) Account {
	u, _ := r.Context().Value(userKey{}).(Account)
	return u
}

// requestToken finds the token: the Authorization header, else the
// session cookie. bad reports an Authorization header that is not a bearer
// token.
func requestToken(r *http.Request) (token string, bad bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", true
		}
		return tok, false
	}
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		return c.Value, false
	}
	return "", false
}

// maxToken bounds a token's length (an access token carries the
// account's roles and posts).
const maxToken = 8 << 10

// authenticate admits requests with a valid token; others get 401. A
// fresh access token is verified without the database (tokenAccount).
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, bad := requestToken(r)
		switch {
		case bad:
			writeProblem(w, r, assist.Errorf(assist.CodeUnauthenticated, "the Authorization header must be \"Bearer <token>\""))
			return
		case token == "":
			writeProblem(w, r, assist.Errorf(assist.CodeUnauthenticated, "sign in first: POST /v1/auth/token"))
			return
		case len(token) > maxToken:
			writeProblem(w, r, errUnknownToken)
			return
		}
		acct, err := s.tokenAccount(r.Context(), token)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		acct.PasswordHash = nil
		// Every command sent for this request carries acct, signed.
		ctx := rpc.ActingFor(r.Context(), s.signer, rpc.Principal{Username: acct.Username, Roles: acct.Roles, Posts: acct.Posts})
		next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userKey{}, acct)))
	})
}

// allow admits users holding one of roles; others get 403.
func allow(roles ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u := userOf(r)
			if !slices.ContainsFunc(roles, u.Has) {
				writeProblem(w, r, assist.Errorf(assist.CodeForbidden, "this needs the role %s", strings.Join(roles, " or ")))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
