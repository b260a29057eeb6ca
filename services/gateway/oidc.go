package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/eva-org/eva/pkg/assist"
)

// Single sign-on with OpenID Connect (ADR 0023). GET /v1/auth/oidc/login
// sends the browser to the identity provider with the authorization code
// flow, PKCE (S256), a state and a nonce, all four kept in a short-lived
// cookie MACed with the access-token key; GET /v1/auth/oidc/callback
// checks the state, redeems the code with the PKCE verifier, verifies the
// ID token (signature against the provider's keys, issuer, audience,
// expiry, nonce), maps its claims to EVA roles and posts by
// configuration, keeps the user's account row up to date, and starts a
// session exactly as a password sign-in does.

// OIDCConfig turns on single sign-on with an OpenID provider. Roles and
// posts come from the ID token's claims, by configuration only: an IdP
// group that RoleMap does not name gives nothing.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (its discovery document is at
	// Issuer/.well-known/openid-configuration).
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is where the provider sends the browser back: the web
	// UI's /login/sso/callback, or /v1/auth/oidc/callback without the UI.
	RedirectURL string
	// Scopes are asked for besides "openid" (default profile and email).
	Scopes []string
	// UsernameClaim names the claim that is the EVA username (default
	// preferred_username): 1 to 64 visible ASCII characters, no comma.
	UsernameClaim string
	// RolesClaim names the claim (a string or a list of strings) whose
	// values RoleMap maps to EVA roles (default groups).
	RolesClaim string
	// RoleMap maps a value of RolesClaim to EVA roles.
	RoleMap map[string][]string
	// PostsClaim names the claim (a string or a list of strings) whose
	// values are the user's posts; empty: no posts (then the requester
	// role cannot be given).
	PostsClaim string
	// HTTPClient talks to the provider (default: a client with a 10 s
	// timeout).
	HTTPClient *http.Client
}

// Defaults of OIDCConfig.
const (
	DefaultOIDCUsernameClaim = "preferred_username"
	DefaultOIDCRolesClaim    = "groups"
)

// ParseRoleMap reads a role map written group=role,group=role (a group
// may be named twice for two roles), as --oidc-role-map takes it.
//
// Errors: a pair without "=", an empty group, a role that is not one of
// assist.Roles.
func ParseRoleMap(s string) (map[string][]string, error) {
	m := map[string][]string{}
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		group, role, ok := strings.Cut(pair, "=")
		group, role = strings.TrimSpace(group), strings.TrimSpace(role)
		switch {
		case !ok || group == "":
			return nil, fmt.Errorf("role map: %q is not group=role", pair)
		case !slices.Contains(assist.Roles, role):
			return nil, fmt.Errorf("role map: %q is not a role (%s)", role, strings.Join(assist.Roles, ", "))
		}
		if !slices.Contains(m[group], role) {
			m[group] = append(m[group], role)
		}
	}
	return m, nil
}

func (c OIDCConfig) withDefaults() OIDCConfig {
	if c.UsernameClaim == "" {
		c.UsernameClaim = DefaultOIDCUsernameClaim
	}
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultOIDCRolesClaim
	}
	if c.Scopes == nil {
		c.Scopes = []string{"profile", "email"}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return c
}

// ssoPassword is the password hash of an account made by single sign-on:
// no password verifies against it, and it marks the account as the
// provider's (a sign-on never takes over an account with a password).
const ssoPassword = "!oidc"

// isSSO reports whether an account was made by single sign-on.
func isSSO(a Account) bool { return string(a.PasswordHash) == ssoPassword }

// sso is the client of the provider, discovered on first use (and again
// after a failure), so that a provider down at start-up does not stop
// the gateway.
type sso struct {
	cfg OIDCConfig

	mu       sync.Mutex
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newSSO(c *OIDCConfig) *sso {
	if c == nil {
		return nil
	}
	return &sso{cfg: c.withDefaults()}
}

var errSSOUnreachable = assist.Errorf(assist.CodeUnavailable, "the identity provider cannot be reached; try again")

// client returns the OAuth 2 configuration and the ID token verifier,
// discovering the provider first if needed.
func (o *sso) client(ctx context.Context, now func() time.Time) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.oauth == nil {
		p, err := oidc.NewProvider(o.ctx(ctx), o.cfg.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("%w (%v)", errSSOUnreachable, err)
		}
		o.oauth = &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: p.Endpoint(),
			RedirectURL: o.cfg.RedirectURL, Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}
		o.verifier = p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: now})
	}
	return o.oauth, o.verifier, nil
}

// ctx carries the HTTP client to go-oidc and oauth2.
func (o *sso) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, o.cfg.HTTPClient)
}

// SSOCookie holds a sign-on in progress between its two legs (the web
// UI passes it on to the callback). SameSite is Lax: the provider's
// redirect back is a cross-site navigation.
const SSOCookie = "eva_oidc"

// ssoFlowTTL is how long a sign-on may take at the provider.
const ssoFlowTTL = 10 * time.Minute

// ssoFlow is what the cookie holds.
type ssoFlow struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"` // Unix seconds
}

type ssoLoginQuery struct {
	Next string `query:"next" maxLength:"512" doc:"a local path to go to once signed in (default /)"`
}

type ssoCallbackQuery struct {
	Code   string `query:"code" maxLength:"4096" doc:"the authorization code"`
	State  string `query:"state" maxLength:"256" doc:"the state sent to the provider"`
	Error  string `query:"error" maxLength:"256" doc:"the provider's error, when it refused"`
	Cookie string `query:"cookie" doc:"1: also set the session cookie eva_session, for the web UI"`
}

// ssoResponse is the answer of the callback.
type ssoResponse struct {
	tokenResponse
	Next string `json:"next" jsonschema_description:"the local path given to /v1/auth/oidc/login"`
}

var errSSOOff = assist.Errorf(assist.CodeNotFound, "single sign-on is not configured")

// ssoLogin is GET /v1/auth/oidc/login: a redirect to the provider.
func (s *server) ssoLogin(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		writeProblem(w, r, errSSOOff)
		return
	}
	q, err := parseQuery[ssoLoginQuery](r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	oc, _, err := s.sso.client(r.Context(), s.now)
	if err != nil {
		s.ssoRefused(r, "discovery", err)
		writeProblem(w, r, err)
		return
	}
	f := ssoFlow{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier(), Next: LocalPath(q.Next),
		Expires: s.now().Add(ssoFlowTTL).Unix()}
	value, err := s.sealFlow(r.Context(), f)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SSOCookie, Value: value, Path: "/", MaxAge: int(ssoFlowTTL.Seconds()),
		HttpOnly: true, Secure: s.cfg.CookieSecure, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Location", oc.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)))
	w.WriteHeader(http.StatusFound)
}

// ssoCallback is GET /v1/auth/oidc/callback: the provider's answer.
func (s *server) ssoCallback(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil {
		writeProblem(w, r, errSSOOff)
		return
	}
	q, err := parseQuery[ssoCallbackQuery](r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	// The flow is over whatever happens: its cookie goes.
	http.SetCookie(w, &http.Cookie{Name: SSOCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.cfg.CookieSecure, SameSite: http.SameSiteLaxMode})
	res, err := s.ssoFinish(w, r, q)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *server) ssoFinish(w http.ResponseWriter, r *http.Request, q ssoCallbackQuery) (ssoResponse, error) {
	ctx := r.Context()
	f, err := s.openFlow(ctx, r)
	if err != nil {
		return ssoResponse{}, s.ssoRefused(r, "flow", err)
	}
	switch {
	case q.State == "" || subtle.ConstantTimeCompare([]byte(q.State), []byte(f.State)) != 1:
		return ssoResponse{}, s.ssoRefused(r, "state", invalidSSO("state", "is not the state of this browser's sign-in; start again"))
	case q.Error != "":
		return ssoResponse{}, s.ssoRefused(r, "provider",
			assist.Errorf(assist.CodeUnauthenticated, "the identity provider refused the sign-in (%s)", q.Error))
	case q.Code == "":
		return ssoResponse{}, s.ssoRefused(r, "code", invalidSSO("code", "is required"))
	}
	oc, verifier, err := s.sso.client(ctx, s.now)
	if err != nil {
		return ssoResponse{}, s.ssoRefused(r, "discovery", err)
	}
	tok, err := oc.Exchange(s.sso.ctx(ctx), q.Code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return ssoResponse{}, s.ssoRefused(r, "code", invalidSSO("code", "the identity provider did not accept it"))
		}
		return ssoResponse{}, s.ssoRefused(r, "token endpoint", fmt.Errorf("%w (%v)", errSSOUnreachable, err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return ssoResponse{}, s.ssoRefused(r, "id_token", invalidSSO("id_token", "the identity provider sent none"))
	}
	idt, err := verifier.Verify(s.sso.ctx(ctx), raw)
	if err != nil {
		return ssoResponse{}, s.ssoRefused(r, "id_token",
			invalidSSO("id_token", "is not valid (signature, issuer, audience or expiry): %v", err))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return ssoResponse{}, s.ssoRefused(r, "nonce", invalidSSO("nonce", "the ID token was not made for this sign-in"))
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return ssoResponse{}, s.ssoRefused(r, "claims", invalidSSO("id_token", "its claims do not decode"))
	}
	acct, err := s.ssoAccount(claims)
	if err != nil {
		return ssoResponse{}, s.ssoRefused(r, "claims", err)
	}
	if acct, err = s.provision(ctx, acct); err != nil {
		return ssoResponse{}, s.ssoRefused(r, "account", err)
	}
	sid, exp, err := s.newSession(ctx, acct)
	if err != nil {
		return ssoResponse{}, err
	}
	t, err := s.answerToken(w, r, loginQuery{Cookie: q.Cookie}, sid, acct, exp)
	if err != nil {
		return ssoResponse{}, err
	}
	noteSignIn(r, "oidc")
	return ssoResponse{tokenResponse: t, Next: f.Next}, nil
}

// invalidSSO is a refused sign-on naming what was wrong: 401, as a wrong
// password.
func invalidSSO(field, format string, args ...any) error {
	e := assist.Errorf(assist.CodeUnauthenticated, "single sign-on failed: "+field+" "+format, args...)
	e.Fields = []assist.FieldError{{Field: field, Message: fmt.Sprintf(format, args...)}}
	return e
}

// ssoRefused notes a refused sign-on for the request's log line (its
// reason, never who) and returns err.
func (s *server) ssoRefused(r *http.Request, reason string, err error) error {
	noteSignIn(r, "oidc refused: "+reason)
	return err
}

// ssoAccount maps the claims of an ID token to an account: the username
// claim, the roles RoleMap gives the roles claim's values, the posts
// claim. Errors: CodeForbidden for claims that give no usable account.
func (s *server) ssoAccount(claims map[string]any) (Account, error) {
	c := s.sso.cfg
	name, _ := claims[c.UsernameClaim].(string)
	if name == "" || len(name) > maxUsername || !visibleASCII(name) || strings.Contains(name, ",") {
		return Account{}, assist.Errorf(assist.CodeForbidden,
			"the identity provider's %s claim is missing or not a username EVA takes (1 to %d visible ASCII characters, no comma)",
			c.UsernameClaim, maxUsername)
	}
	var roles []string
	for _, g := range claimStrings(claims[c.RolesClaim]) {
		for _, role := range c.RoleMap[g] {
			if !slices.Contains(roles, role) {
				roles = append(roles, role)
			}
		}
	}
	if len(roles) == 0 {
		return Account{}, assist.Errorf(assist.CodeForbidden,
			"your account at the identity provider gives you no EVA role; ask an administrator")
	}
	slices.SortFunc(roles, func(a, b string) int { return slices.Index(assist.Roles, a) - slices.Index(assist.Roles, b) })
	var posts []string
	if c.PostsClaim != "" {
		for _, p := range claimStrings(claims[c.PostsClaim]) {
			if p == "" || strings.Contains(p, ",") || !visibleASCII(p) {
				return Account{}, assist.Errorf(assist.CodeForbidden, "the identity provider's %s claim holds a value that is not a post", c.PostsClaim)
			}
			if !slices.Contains(posts, p) {
				posts = append(posts, p)
			}
		}
	}
	if slices.Contains(roles, assist.RoleRequester) && len(posts) == 0 {
		return Account{}, assist.Errorf(assist.CodeForbidden, "a requester needs a post, and the identity provider gives you none")
	}
	return Account{Username: name, Roles: roles, Posts: posts, PasswordHash: []byte(ssoPassword)}, nil
}

// claimStrings reads a claim that is a string or a list of strings.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// provision creates or updates the account row of a signed-on user (ADR
// 0023): its roles and posts are the claims' of this sign-in, and a
// change revokes its older access tokens like any account change. An
// account with a password is never taken over.
func (s *server) provision(ctx context.Context, a Account) (Account, error) {
	old, err := s.store.Account(ctx, a.Username)
	switch {
	case err == nil && !isSSO(old):
		return Account{}, assist.Errorf(assist.CodeConflict,
			"the EVA account %q signs in with a password, not with single sign-on", a.Username)
	case err == nil && old.Disabled:
		// An admin disabled it (ADR 0026): single sign-on does not
		// enable it again.
		return Account{}, assist.Errorf(assist.CodeUnauthenticated, "this account is disabled")
	case err == nil:
		a.CreatedAt = old.CreatedAt
		if slices.Equal(old.Roles, a.Roles) && slices.Equal(old.Posts, a.Posts) {
			return a, nil
		}
	case assist.IsCode(err, assist.CodeNotFound):
		a.CreatedAt = s.now()
	default:
		return Account{}, err
	}
	if err := s.store.PutAccount(ctx, a); err != nil {
		return Account{}, err
	}
	return a, nil
}

// sealFlow writes f as the cookie's value: base64url JSON, a dot, and
// its HMAC under the access-token key.
func (s *server) sealFlow(ctx context.Context, f ssoFlow) (string, error) {
	_, key, err := s.signingKey(ctx)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(f)
	if err != nil {
		return "", fmt.Errorf("sso flow: %w", err)
	}
	body := base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(flowMAC(key, body)), nil
}

func flowMAC(key []byte, body string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("eva-oidc-flow\x00" + body))
	return m.Sum(nil)
}

// openFlow reads and checks the request's flow cookie.
func (s *server) openFlow(ctx context.Context, r *http.Request) (ssoFlow, error) {
	start := invalidSSO("state", "no sign-in was started in this browser, or it took too long; start again")
	c, err := r.Cookie(SSOCookie)
	if err != nil || len(c.Value) > 2048 {
		return ssoFlow{}, start
	}
	body, sig, ok := strings.Cut(c.Value, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil {
		return ssoFlow{}, start
	}
	_, key, err := s.signingKey(ctx)
	if err != nil {
		return ssoFlow{}, err
	}
	if !hmac.Equal(mac, flowMAC(key, body)) {
		return ssoFlow{}, start
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	var f ssoFlow
	if err != nil || json.Unmarshal(payload, &f) != nil || f.State == "" || f.Nonce == "" || f.Verifier == "" ||
		!s.now().Before(time.Unix(f.Expires, 0)) {
		return ssoFlow{}, start
	}
	return f, nil
}

// LocalPath keeps a next= path on this site: anything else is "/".
func LocalPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return p
}
