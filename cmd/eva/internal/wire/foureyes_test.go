package wire_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/gateway"
)

// apiClient signs in once and sends JSON to the API.
type apiClient struct {
	tb    testing.TB
	base  string
	token string
}

func signIn(tb testing.TB, base, user string) *apiClient {
	tb.Helper()
	c := &apiClient{tb: tb, base: base}
	status, body := c.do(http.MethodPost, "/v1/auth/token", map[string]string{"username": user, "password": "demo"})
	if status != http.StatusOK {
		tb.Fatalf("sign in %s: %d %s", user, status, body)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(body, &tok); err != nil {
		tb.Fatal(err)
	}
	c.token = tok.Token
	return c
}

func (c *apiClient) do(method, path string, in any) (int, []byte) {
	c.tb.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			c.tb.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestFourEyesBypassRefused is issue 7's four-eyes bypass, end to end on a
// whole EVA: dua is both requester and approver at BGD-DHAKA. She amends
// ana's request upwards, then claims and approves it. Both are refused
// with 403 and a problem naming the four-eyes rule, and the case stays
// submitted for someone else; olu, who never wrote it, claims it.
func TestFourEyesBypassRefused(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	ctx := context.Background()
	gw, err := s.P.DB(ctx, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.SeedUsers(ctx, gw, []gateway.User{{Username: "dua", Password: "demo",
		Roles: []string{assist.RoleRequester, assist.RoleApprover}, Posts: []string{"BGD-DHAKA"}}}); err != nil {
		t.Fatal(err)
	}
	ana, dua, olu := signIn(t, s.URL, "ana"), signIn(t, s.URL, "dua"), signIn(t, s.URL, "olu")

	status, body := ana.do(http.MethodPost, "/v1/requests", map[string]any{"post": "BGD-DHAKA", "category": "shelter",
		"urgency": "urgent", "amount_usd_cents": 20_000, "justification": "Two nights in a shelter",
		"beneficiary": map[string]string{"reference": "DHK-4EYES-1"}, "payee_id": wire.DemoPayees[0].CommandID})
	if status != http.StatusCreated {
		t.Fatalf("file: %d %s", status, body)
	}
	var c struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if status, body := dua.do(http.MethodPost, "/v1/requests/"+c.ID+"/amend", map[string]any{"amount_usd_cents": 90_000}); status != http.StatusOK {
		t.Fatalf("amend upwards: %d %s", status, body)
	}

	for _, step := range []struct {
		path string
		body any
	}{
		{"/claim", nil},
		{"/approve", map[string]any{"amount_usd_cents": 90_000, "fund_id": wire.DemoFundID, "note": "mine"}},
	} {
		status, body := dua.do(http.MethodPost, "/v1/requests/"+c.ID+step.path, step.body)
		var p struct {
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("%s: %d %s", step.path, status, body)
		}
		if status != http.StatusForbidden || p.Status != http.StatusForbidden || !strings.Contains(p.Detail, "four-eyes rule") {
			t.Fatalf("%s by the amender: %d %s, want 403 naming the four-eyes rule", step.path, status, body)
		}
	}

	status, body = olu.do(http.MethodPost, "/v1/requests/"+c.ID+"/claim", nil)
	if status != http.StatusOK {
		t.Fatalf("claim by olu, who never wrote the case: %d %s", status, body)
	}
}
