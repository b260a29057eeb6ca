package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// replica starts a second gateway on h's database and fakes, and runs the
// revocation watch of both until the test ends.
func replica(t *testing.T, h *harness) *server {
	t.Helper()
	b, err := newServer(Deps{Config: Config{Password: testPasswordParams}, Intake: h.intake, Approval: h.approval,
		Disbursement: h.disb, Audit: h.audit, DB: h.db, Registry: prometheus.NewRegistry(), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for _, s := range []*server{h.srv, b} {
		go func() {
			s.watchRevocations(ctx, DefaultRevocationPoll)
			done <- struct{}{}
		}()
	}
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	return b
}

// meOn is GET /v1/me on srv with token.
func meOn(srv *server, token string) (int, meResponse, string) {
	r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	srv.router().ServeHTTP(w, r)
	var me meResponse
	if w.Code == http.StatusOK {
		_ = json.Unmarshal(w.Body.Bytes(), &me)
	}
	return w.Code, me, w.Body.String()
}

// waitFor polls cond every 20 ms for up to limit; it returns how long
// cond took to hold, or fails the test.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestAccessTokens(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		b := replica(t, h)

		t.Run("sign-out reaches every replica within the poll", func(t *testing.T) {
			tok := decodeJSONBody[tokenResponse](t, login(h, "fin", "pw", ""), http.StatusOK)
			if code, _, body := meOn(b, tok.Token); code != http.StatusOK {
				t.Fatalf("replica b: %d %s", code, body)
			}
			w := h.do(req{method: http.MethodDelete, path: "/v1/auth/token",
				header: map[string]string{"Authorization": "Bearer " + tok.Token}})
			if w.Code != http.StatusNoContent {
				t.Fatalf("sign out: %d %s", w.Code, w.Body)
			}
			if code, _, _ := meOn(h.srv, tok.Token); code != http.StatusUnauthorized {
				t.Fatalf("replica a after sign-out: %d", code)
			}
			took := waitFor(t, 2*DefaultRevocationPoll, "sign-out seen by replica b", func() bool {
				code, _, _ := meOn(b, tok.Token)
				return code == http.StatusUnauthorized
			})
			t.Logf("sign-out reached the other replica in %v", took)
		})

		t.Run("a changed account is read again by every replica", func(t *testing.T) {
			tok := decodeJSONBody[tokenResponse](t, login(h, "mei", "pw", ""), http.StatusOK)
			if _, me, _ := meOn(b, tok.Token); !slices.Equal(roleStrings(me.Roles), []string{approver}) {
				t.Fatalf("before: %+v", me)
			}
			if err := h.store.PutAccount(context.Background(), Account{Username: "mei", PasswordHash: lowCostHash(),
				Roles: []string{auditor}, CreatedAt: t0}); err != nil {
				t.Fatal(err)
			}
			took := waitFor(t, 2*DefaultRevocationPoll, "role change seen by replica b", func() bool {
				_, me, _ := meOn(b, tok.Token)
				return slices.Equal(roleStrings(me.Roles), []string{auditor})
			})
			t.Logf("role change reached the other replica in %v", took)
		})

		t.Run("refresh", func(t *testing.T) {
			tok := decodeJSONBody[tokenResponse](t, login(h, "aud", "pw", ""), http.StatusOK)
			if want := formatTime(h.clock.Now().Add(DefaultAccessTTL)); tok.AccessExpiresAt != want {
				t.Fatalf("access_expires_at %s, want %s", tok.AccessExpiresAt, want)
			}
			h.clock.Advance(DefaultAccessTTL + time.Second)
			// Past its access lifetime the token still works, reading its session.
			if code, _, body := meOn(b, tok.Token); code != http.StatusOK {
				t.Fatalf("stale token: %d %s", code, body)
			}
			w := h.do(req{method: http.MethodPost, path: "/v1/auth/refresh?cookie=1",
				header: map[string]string{"Authorization": "Bearer " + tok.Token}})
			fresh := decodeJSONBody[tokenResponse](t, w, http.StatusOK)
			if fresh.Token == tok.Token || fresh.ExpiresAt != tok.ExpiresAt ||
				fresh.AccessExpiresAt != formatTime(h.clock.Now().Add(DefaultAccessTTL)) {
				t.Fatalf("refreshed %+v from %+v", fresh, tok)
			}
			if c := w.Result().Cookies(); len(c) != 1 || c[0].Name != SessionCookie || c[0].Value != fresh.Token {
				t.Fatalf("cookie %+v", c)
			}
			// Signing out with either ends the session of both.
			h.do(req{method: http.MethodDelete, path: "/v1/auth/token", header: map[string]string{"Authorization": "Bearer " + fresh.Token}})
			for _, tk := range []string{tok.Token, fresh.Token} {
				if code, _, _ := meOn(h.srv, tk); code != http.StatusUnauthorized {
					t.Fatalf("after sign-out: %d", code)
				}
			}
			w = h.do(req{method: http.MethodPost, path: "/v1/auth/refresh", header: map[string]string{"Authorization": "Bearer " + fresh.Token}})
			decodeProblem(t, w, http.StatusUnauthorized)
		})

		t.Run("forged", func(t *testing.T) {
			tok := decodeJSONBody[tokenResponse](t, login(h, "ana", "pw", ""), http.StatusOK)
			body, sig, _ := strings.Cut(tok.Token, ".")
			payload, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, tokenPrefix))
			if err != nil {
				t.Fatal(err)
			}
			forged := strings.Replace(string(payload), `"roles":["requester"]`, `"roles":["admin"]`, 1)
			if forged == string(payload) {
				t.Fatalf("payload %s", payload)
			}
			for name, tk := range map[string]string{
				"roles changed":   tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + sig,
				"no signature":    body + ".",
				"other signature": body + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 32)),
				"not base64":      body + ".!!",
			} {
				if code, _, _ := meOn(b, tk); code != http.StatusUnauthorized {
					t.Errorf("%s: %d, want 401", name, code)
				}
			}
		})
	})
}

func roleStrings(rs []roleName) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
