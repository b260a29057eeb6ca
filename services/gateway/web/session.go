package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/services/gateway"
)

// Cookies of the UI besides the API's session cookie (gateway.SessionCookie,
// which carries the user's API token and which the API sets at sign-in).
const (
	// seenCookie holds when the user last did something, MACed with the
	// session token, for idle expiry.
	seenCookie = "eva_seen"
	// preCookie is a random value that anchors the CSRF token of the
	// forms shown before sign-in (sign-in, language).
	preCookie = "eva_pre"
)

// sessionToken is the API token of the request's session, "" when none.
func sessionToken(r *http.Request) string {
	if c, err := r.Cookie(gateway.SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// csrfToken is the CSRF token of the forms shown to a holder of secret
// (the session token, or before sign-in the pre-session cookie): a hash
// of it (of its session, which renewals keep), which a page of another
// site cannot read or compute.
func csrfToken(secret string) string {
	if secret == "" {
		return ""
	}
	h := sha256.Sum256([]byte("eva-ui-csrf\x00" + gateway.SessionKey(secret)))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// validCSRF reports whether the form's token is the one of the request's
// session (or pre-session).
func validCSRF(r *http.Request, sent string) bool {
	secret := sessionToken(r)
	if secret == "" {
		if c, err := r.Cookie(preCookie); err == nil {
			secret = c.Value
		}
	}
	want := csrfToken(secret)
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(sent)) == 1
}

// seenValue is the idle cookie's value for a session seen at t.
func seenValue(token string, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(gateway.SessionKey(token)))
	m.Write([]byte("eva-ui-seen\x00" + ts))
	return ts + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// lastSeen reads the idle cookie of the session token; ok is false when
// it is missing or was not made for this token.
func lastSeen(r *http.Request, token string) (time.Time, bool) {
	c, err := r.Cookie(seenCookie)
	if err != nil {
		return time.Time{}, false
	}
	ts, _, ok := strings.Cut(c.Value, ".")
	if !ok {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	t := time.Unix(sec, 0)
	if !hmac.Equal([]byte(c.Value), []byte(seenValue(token, t))) {
		return time.Time{}, false
	}
	return t, true
}

// cookie makes a UI cookie: HttpOnly, SameSite=Strict, Secure as
// configured, for the whole site.
func (s *site) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: s.cfg.CookieSecure, SameSite: http.SameSiteStrictMode}
}

// touch records activity of the session now.
func (s *site) touch(w http.ResponseWriter, token string) {
	http.SetCookie(w, s.cookie(seenCookie, seenValue(token, s.now()), int(s.cfg.SessionTTL.Seconds())))
}

// preSecret returns the pre-session secret, setting the cookie when the
// browser has none yet.
func (s *site) preSecret(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(preCookie); err == nil && len(c.Value) >= 16 && len(c.Value) <= 64 {
		return c.Value
	}
	v := randomKey()
	http.SetCookie(w, s.cookie(preCookie, v, 0))
	return v
}

// randomKey is 128 random bits, base64url: form keys, pre-session values.
func randomKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// clearSession forgets the session's cookies in the browser.
func (s *site) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, s.cookie(gateway.SessionCookie, "", -1))
	http.SetCookie(w, s.cookie(seenCookie, "", -1))
}
