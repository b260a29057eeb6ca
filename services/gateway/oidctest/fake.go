// Package oidctest is an OpenID provider for tests: FakeProvider serves
// discovery, JWKS, an authorization endpoint that signs in whoever it is
// told to without asking, and a token endpoint that checks the client,
// the redirect URL and the PKCE verifier and signs ID tokens (ES256,
// go-jose). Knobs make it misbehave the ways a relying party must refuse.
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// FakeOptions make the provider misbehave.
type FakeOptions struct {
	// Nonce replaces the nonce of the ID tokens it signs ("": the one
	// the authorization request asked for).
	Nonce string
	// Lifetime of the ID tokens (default 5 min); negative: already expired.
	Lifetime time.Duration
	// OtherKey signs ID tokens with a key the JWKS does not hold.
	OtherKey bool
	// Audience replaces the aud claim ("": the client id).
	Audience string
	// Refuse answers the authorization request with ?error=access_denied.
	Refuse bool
}

// FakeProvider is an in-process OpenID provider for one client.
type FakeProvider struct {
	// Issuer is its URL (an httptest server's).
	Issuer                 string
	ClientID, ClientSecret string
	// Now is the clock of the tokens' iat and exp (default time.Now):
	// set it to the relying party's test clock. Set it before use.
	Now func() time.Time

	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	otherKey *ecdsa.PrivateKey

	mu        sync.Mutex
	claims    map[string]any
	opts      FakeOptions
	grants    map[string]grant
	exchanges int
}

// grant is an authorization code waiting to be redeemed.
type grant struct {
	challenge, nonce, redirect string
	claims                     map[string]any
}

const kid = "fake-key-1"

// NewFakeProvider starts a provider for the client clientID/secret; it
// stops when the test ends.
func NewFakeProvider(t testing.TB, clientID, secret string) *FakeProvider {
	t.Helper()
	p := &FakeProvider{ClientID: clientID, ClientSecret: secret, Now: time.Now, grants: map[string]grant{}}
	var err error
	if p.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if p.otherKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewServer(mux)
	p.Issuer = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// SignIn makes the next authorizations sign in a user with these claims
// (sub, and whatever the relying party maps: preferred_username, groups,
// posts...).
func (p *FakeProvider) SignIn(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims = claims
}

// Set replaces the misbehaviours.
func (p *FakeProvider) Set(o FakeOptions) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opts = o
}

// Exchanges is how many codes were redeemed.
func (p *FakeProvider) Exchanges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exchanges
}

func (p *FakeProvider) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.Issuer,
		"authorization_endpoint":                p.Issuer + "/authorize",
		"token_endpoint":                        p.Issuer + "/token",
		"jwks_uri":                              p.Issuer + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (p *FakeProvider) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &p.key.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}}})
}

// authorize signs in the configured user at once and sends the browser
// back with a code. It insists on PKCE S256.
func (p *FakeProvider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	switch {
	case q.Get("client_id") != p.ClientID:
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code", redirect == "":
		http.Error(w, "response_type=code and redirect_uri are required", http.StatusBadRequest)
		return
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		http.Error(w, "PKCE with S256 is required", http.StatusBadRequest)
		return
	}
	back, err := url.Parse(redirect)
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := back.Query()
	v.Set("state", q.Get("state"))
	p.mu.Lock()
	if p.opts.Refuse {
		v.Set("error", "access_denied")
	} else {
		code := rand.Text()
		p.grants[code] = grant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: redirect, claims: p.claims}
		v.Set("code", code)
	}
	p.mu.Unlock()
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// token redeems a code once: the client's secret, the same redirect_uri
// and the PKCE verifier of the code's challenge.
func (p *FakeProvider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != p.ClientID || secret != p.ClientSecret {
		tokenError(w, "invalid_client")
		return
	}
	p.mu.Lock()
	code := r.PostForm.Get("code")
	g, ok := p.grants[code]
	delete(p.grants, code)
	opts := p.opts
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("redirect_uri") != g.redirect ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		tokenError(w, "invalid_grant")
		return
	}
	now := p.Now()
	life := opts.Lifetime
	if life == 0 {
		life = 5 * time.Minute
	}
	claims := map[string]any{}
	for k, v := range g.claims {
		claims[k] = v
	}
	claims["iss"], claims["aud"], claims["nonce"] = p.Issuer, p.ClientID, g.nonce
	claims["iat"], claims["exp"] = now.Add(-time.Minute).Unix(), now.Add(life).Unix()
	if opts.Nonce != "" {
		claims["nonce"] = opts.Nonce
	}
	if opts.Audience != "" {
		claims["aud"] = opts.Audience
	}
	key := p.key
	if opts.OtherKey {
		key = p.otherKey
	}
	idToken, err := sign(key, claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.mu.Lock()
	p.exchanges++
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": rand.Text(), "token_type": "Bearer", "expires_in": 300,
		"id_token": idToken})
}

func sign(key *ecdsa.PrivateKey, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func tokenError(w http.ResponseWriter, code string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
