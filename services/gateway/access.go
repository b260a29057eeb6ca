package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

// Access tokens (ADR 0017). A session is a row of gateway_tokens, known by
// the SHA-256 of its random id, and lives TokenTTL. What a client holds is
// an access token: the session id, the account's roles and posts, and two
// expiries, signed with HMAC-SHA256 under a key every replica shares.
// While it is fresh (AccessTTL) and not revoked, a replica accepts it
// without its database; past that, the session row decides, and POST
// /v1/auth/refresh hands out a fresh one.

// accessClaims is what an access token says. Times are Unix microseconds.
type accessClaims struct {
	// Kid names the signing key.
	Kid string `json:"kid"`
	// Sid is the session id: secret, it opens the session.
	Sid      string   `json:"sid"`
	Username string   `json:"sub"`
	Roles    []string `json:"roles"`
	Posts    []string `json:"posts,omitempty"`
	IssuedAt int64    `json:"iat"`
	// Expires ends local verification; SessionExpires ends the session.
	Expires        int64 `json:"exp"`
	SessionExpires int64 `json:"sexp"`
}

func (c accessClaims) account() Account {
	return Account{Username: c.Username, Roles: nonNil(c.Roles), Posts: nonNil(c.Posts)}
}

// sessionHash is the key of a session in the store.
func sessionHash(sid string) []byte { return tokenHash(sid) }

// keyring holds the signing key, read from (or first written to) the
// store on first use.
type keyring struct {
	mu  sync.Mutex
	kid string
	key []byte
}

// signingKey is the shared key; errors are the store's.
func (s *server) signingKey(ctx context.Context) (string, []byte, error) {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	if s.keys.key == nil {
		fresh := make([]byte, 32)
		_, _ = rand.Read(fresh) // crypto/rand.Read never fails
		kid, key, err := s.store.SigningKey(ctx, fresh, s.now())
		if err != nil {
			return "", nil, err
		}
		s.keys.kid, s.keys.key = kid, key
	}
	return s.keys.kid, s.keys.key, nil
}

// sign makes the access token of c.
func (s *server) sign(ctx context.Context, c accessClaims) (string, error) {
	kid, key, err := s.signingKey(ctx)
	if err != nil {
		return "", err
	}
	c.Kid = kid
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

var errUnknownToken = assist.Errorf(assist.CodeUnauthenticated, "unknown token")

// parseAccess checks an access token's signature and reads its claims;
// signed is false for a token that is not an access token (an opaque
// token of an older EVA, looked up in the store).
func (s *server) parseAccess(ctx context.Context, token string) (c accessClaims, signed bool, err error) {
	body, sig, ok := strings.Cut(token, ".")
	if !ok {
		return accessClaims{}, false, nil
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, tokenPrefix))
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if !strings.HasPrefix(body, tokenPrefix) || err1 != nil || err2 != nil {
		return accessClaims{}, true, errUnknownToken
	}
	_, key, err := s.signingKey(ctx)
	if err != nil {
		return accessClaims{}, true, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(body))
	if !hmac.Equal(mac, m.Sum(nil)) {
		return accessClaims{}, true, errUnknownToken
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Sid == "" || c.Username == "" {
		return accessClaims{}, true, errUnknownToken
	}
	return c, true, nil
}

// startSession stores a new session of acct and returns its first access
// token and the session's end.
func (s *server) startSession(ctx context.Context, acct Account) (string, accessClaims, error) {
	sid, exp, err := s.newSession(ctx, acct)
	if err != nil {
		return "", accessClaims{}, err
	}
	return s.accessToken(ctx, sid, acct, exp)
}

// newSession stores a new session of acct, living TokenTTL, and returns
// its id and end.
func (s *server) newSession(ctx context.Context, acct Account) (sid string, exp time.Time, err error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	sid = base64.RawURLEncoding.EncodeToString(raw)
	now := s.now()
	exp = now.Add(s.cfg.TokenTTL)
	if err := s.store.CreateToken(ctx, Token{Hash: sessionHash(sid), Username: acct.Username, ExpiresAt: exp, CreatedAt: now}); err != nil {
		return "", time.Time{}, err
	}
	return sid, exp, nil
}

// accessToken signs a fresh access token of the session sid for acct.
func (s *server) accessToken(ctx context.Context, sid string, acct Account, sessionExp time.Time) (string, accessClaims, error) {
	now := s.now()
	c := accessClaims{Sid: sid, Username: acct.Username, Roles: acct.Roles, Posts: acct.Posts,
		IssuedAt: sqldb.Micros(now), Expires: sqldb.Micros(minTime(now.Add(s.cfg.AccessTTL), sessionExp)),
		SessionExpires: sqldb.Micros(sessionExp)}
	token, err := s.sign(ctx, c)
	return token, c, err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tokenAccount returns the account a token speaks for. A fresh, unrevoked access
// token needs no database; a stale one (or one issued before its account
// changed) is checked against its session, as is an opaque token of an
// older EVA. Errors: CodeUnauthenticated; CodeUnavailable when the
// session must be read and the database is down.
func (s *server) tokenAccount(ctx context.Context, token string) (Account, error) {
	c, signed, err := s.parseAccess(ctx, token)
	if err != nil {
		return Account{}, err
	}
	now := s.now()
	if !signed {
		acct, _, err := s.store.TokenAccount(ctx, tokenHash(token), now)
		return acct, err
	}
	if s.revoked.session(c.Sid) {
		return Account{}, assist.Errorf(assist.CodeUnauthenticated, "signed out; sign in again")
	}
	if now.Before(sqldb.Time(c.Expires)) && !s.revoked.user(c.Username, sqldb.Time(c.IssuedAt)) {
		return c.account(), nil
	}
	acct, _, err := s.store.TokenAccount(ctx, sessionHash(c.Sid), now)
	return acct, err
}

// sessionOf returns the session id of a token: the id in an access token,
// the token itself for an opaque token of an older EVA (its hash keys
// its session).
func (s *server) sessionOf(ctx context.Context, token string) (string, error) {
	c, signed, err := s.parseAccess(ctx, token)
	switch {
	case err != nil:
		return "", err
	case !signed:
		return token, nil
	}
	return c.Sid, nil
}

// revocations is what a replica knows of signed-out sessions and changed
// accounts, refreshed from the store every second (RevocationPoll).
type revocations struct {
	mu       sync.RWMutex
	sessions map[string]bool      // hex session hash
	users    map[string]time.Time // tokens issued until then no longer hold
}

func (r *revocations) session(sid string) bool {
	h := hex.EncodeToString(sessionHash(sid))
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sessions[h]
}

func (r *revocations) user(username string, issued time.Time) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	at, ok := r.users[username]
	return ok && !issued.After(at)
}

// set replaces what r knows with rs.
func (r *revocations) set(rs []Revocation) {
	sessions, users := map[string]bool{}, map[string]time.Time{}
	for _, v := range rs {
		switch v.Kind {
		case RevokeSession:
			sessions[v.Subject] = true
		case RevokeUser:
			if v.At.After(users[v.Subject]) {
				users[v.Subject] = v.At
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions, r.users = sessions, users
}

// add records one revocation at once (on the replica that made it).
func (r *revocations) add(v Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions == nil {
		r.sessions, r.users = map[string]bool{}, map[string]time.Time{}
	}
	switch v.Kind {
	case RevokeSession:
		r.sessions[v.Subject] = true
	case RevokeUser:
		if v.At.After(r.users[v.Subject]) {
			r.users[v.Subject] = v.At
		}
	}
}

// refreshRevocations reads the revocations that still matter: those newer
// than the longest an access token lives, with a minute's margin.
func (s *server) refreshRevocations(ctx context.Context) error {
	rs, err := s.store.Revocations(ctx, s.now().Add(-s.cfg.AccessTTL-time.Minute))
	if err != nil {
		return err
	}
	s.revoked.set(rs)
	return nil
}

// watchRevocations refreshes the revocations every interval until ctx
// ends. While the database is out of reach the last known ones stay in
// force (logged once per outage): sign-outs cannot happen then either.
func (s *server) watchRevocations(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.refreshRevocations(ctx); err != nil && ctx.Err() == nil {
			s.outages.Failed(s.log, "refresh token revocations", err, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// revokeSession signs a session out on every replica: its row goes, and
// a revocation is recorded for the access tokens still in flight.
func (s *server) revokeSession(ctx context.Context, sid string) error {
	v := Revocation{Kind: RevokeSession, Subject: hex.EncodeToString(sessionHash(sid)), At: s.now()}
	if err := s.store.Revoke(ctx, v); err != nil {
		return err
	}
	if err := s.store.DeleteToken(ctx, sessionHash(sid)); err != nil {
		return err
	}
	s.revoked.add(v)
	return nil
}

// refresh is POST /v1/auth/refresh: a fresh access token for the session
// of the request's token, with the account's current roles and posts.
// It reads the session, so it needs the database.
func (s *server) refresh(w http.ResponseWriter, r *http.Request, q loginQuery, _ bodiless) (tokenResponse, error) {
	token, _ := requestToken(r)
	sid, err := s.sessionOf(r.Context(), token)
	if err != nil {
		return tokenResponse{}, err
	}
	acct, exp, err := s.store.TokenAccount(r.Context(), sessionHash(sid), s.now())
	if err != nil {
		return tokenResponse{}, err
	}
	return s.answerToken(w, r, q, sid, acct, exp)
}

// answerToken signs an access token of the session sid for acct and
// answers it, setting the session cookie with ?cookie=1.
func (s *server) answerToken(w http.ResponseWriter, r *http.Request, q loginQuery, sid string, acct Account, sessionExp time.Time) (tokenResponse, error) {
	token, c, err := s.accessToken(r.Context(), sid, acct, sessionExp)
	if err != nil {
		return tokenResponse{}, err
	}
	if q.Cookie == "1" {
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: token, Path: "/", Expires: sessionExp,
			MaxAge: int(sessionExp.Sub(s.now()).Seconds()), HttpOnly: true, Secure: s.cfg.CookieSecure,
			SameSite: http.SameSiteStrictMode})
	}
	return tokenResponse{Token: token, ExpiresAt: formatTime(sessionExp),
		AccessExpiresAt: formatTime(sqldb.Time(c.Expires))}, nil
}

// unverifiedClaims reads an access token's claims without checking its
// signature; ok is false for anything else.
func unverifiedClaims(token string) (accessClaims, bool) {
	body, _, ok := strings.Cut(token, ".")
	if !ok || !strings.HasPrefix(body, tokenPrefix) {
		return accessClaims{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, tokenPrefix))
	var c accessClaims
	if err != nil || json.Unmarshal(payload, &c) != nil || c.Sid == "" {
		return accessClaims{}, false
	}
	return c, true
}

// SessionKey is what stays the same across the renewals of a session's
// token — its session id — or the token itself when it is not an access
// token. The web UI keys its CSRF tokens and idle cookie on it, so that a
// renewal does not void a form already shown. It checks nothing: the API
// still verifies the token of every request.
func SessionKey(token string) string {
	if c, ok := unverifiedClaims(token); ok {
		return "session:" + c.Sid
	}
	return token
}

// AccessExpiry is when an access token stops being accepted without the
// database (POST /v1/auth/refresh renews it); ok is false for a token
// that is not an access token. It checks nothing.
func AccessExpiry(token string) (time.Time, bool) {
	c, ok := unverifiedClaims(token)
	if !ok {
		return time.Time{}, false
	}
	return sqldb.Time(c.Expires), true
}
