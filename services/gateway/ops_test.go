package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

func TestOperations(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))

	if s := decodeJSONBody[statusJSON](t, h.get("", "/healthz"), http.StatusOK); s.Status != "ok" {
		t.Fatalf("healthz %+v", s)
	}
	if s := decodeJSONBody[statusJSON](t, h.get("", "/readyz"), http.StatusOK); s.Status != "ready" {
		t.Fatalf("readyz %+v", s)
	}
	notReady := errors.New("nats: no servers available")
	h.ready.Store(&notReady)
	h.logs.TakeAll()
	p := decodeProblem(t, h.get("", "/readyz"), http.StatusServiceUnavailable)
	if p.Code != "unavailable" || strings.Contains(p.Detail, "nats") {
		t.Fatalf("readyz problem %+v", p)
	}
	if e := h.logs.FilterMessage("dependency unavailable: requests answer 503").All(); len(e) != 1 ||
		!strings.Contains(fmt.Sprint(e[0].ContextMap()["error"]), "nats: no servers available") {
		t.Fatalf("the reason is not logged: %v", h.logs.All())
	}
	// healthz answers even when not ready.
	decodeJSONBody[statusJSON](t, h.get("", "/healthz"), http.StatusOK)

	t.Run("metrics", func(t *testing.T) {
		h.get("ana", "/v1/requests/"+dhakaCase)
		h.get("raj", "/v1/requests/"+dhakaCase)
		w := h.get("", "/metrics")
		body := w.Body.String()
		for _, want := range []string{
			`eva_http_requests_total{method="GET",route="/v1/requests/{id}",status="200"} 1`,
			`eva_http_requests_total{method="GET",route="/v1/requests/{id}",status="404"} 1`,
			`eva_http_request_duration_seconds_bucket{method="GET",route="/v1/requests/{id}",status="200",le="+Inf"} 1`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %s:\n%s", want, body)
			}
		}
		if strings.Contains(body, dhakaCase) {
			t.Error("metrics are labelled with raw paths")
		}
	})

	t.Run("openapi", func(t *testing.T) {
		w := h.get("", "/v1/openapi.json")
		if w.Code != 200 || w.Body.String() != string(h.srv.openAPI) || w.Header().Get("Content-Type") != "application/json" ||
			w.Header().Get("Cache-Control") != "public, max-age=300" {
			t.Fatalf("openapi: %d %s", w.Code, w.Header())
		}
	})

	t.Run("headers", func(t *testing.T) {
		w := h.get("ana", "/v1/me")
		if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("headers %v", w.Header())
		}
	})
}

// TestLogsHoldNoPersonalData files a request and reads its personal data:
// nothing of the person, the password or the token reaches the logs, and
// each request is logged once.
func TestLogsHoldNoPersonalData(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	h.logs.TakeAll()
	secrets := []string{"Zainab Example", "+8801700000000", "REF-SECRET-7", "1999-01-02", "the story of her escape", "pw", h.tokens["ana"]}
	body := `{"post":"BGD-DHAKA","category":"shelter","urgency":"critical","amount_usd_cents":25000,` +
		`"justification":"the story of her escape","beneficiary":{"reference":"REF-SECRET-7","name":"Zainab Example",` +
		`"date_of_birth":"1999-01-02","contact":"+8801700000000"}}`
	decodeJSONBody[caseJSON](t, h.post("ana", "/v1/requests", body), http.StatusCreated)
	decodeJSONBody[tokenResponse](t, login(h, "ana", "pw", ""), http.StatusOK)
	decodeProblem(t, login(h, "ana", "wrong-password", ""), http.StatusUnauthorized)
	decodeJSONBody[beneficiaryJSON](t, h.get("ana", "/v1/requests/"+dhakaCase+"/beneficiary"), http.StatusOK)
	decodeProblem(t, h.post("ana", "/v1/requests", `{"justification": "the story of her escape", "x": 1}`), http.StatusBadRequest)
	if n := h.logs.Len(); n != 5 {
		t.Errorf("%d log lines for 5 requests", n)
	}
	for _, e := range h.logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if s == "pw" {
				if strings.Contains(line, `"pw"`) || strings.Contains(line, ":pw") {
					t.Errorf("log holds the password: %s", line)
				}
				continue
			}
			if strings.Contains(line, s) {
				t.Errorf("log holds %q: %s", s, line)
			}
		}
	}
}

// TestRun serves on a real port and shuts down when ctx ends.
func TestRun(t *testing.T) {
	db := sqldbtest.SQLite(t)
	core, logs := observer.New(zapcore.InfoLevel)
	h := &harness{t: t, calls: &calls{}}
	h.intake, h.approval, h.disb, h.audit = &fakeIntake{calls: h.calls}, &fakeApproval{calls: h.calls},
		&fakeDisbursement{calls: h.calls}, &fakeAudit{calls: h.calls}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Deps{Config: Config{Addr: "127.0.0.1:0"}, Intake: h.intake, Approval: h.approval,
			Disbursement: h.disb, Audit: h.audit, DB: db, Logger: zap.New(core)})
	}()
	var addr string
	evatest.Eventually(t, "the gateway to listen", func() bool {
		if e := logs.FilterMessage("gateway listening").All(); len(e) > 0 {
			addr = e[0].ContextMap()["addr"].(string)
		}
		return addr != ""
	})
	// Run migrated the database: seeding and signing in work.
	if err := seedUsers(ctx, db, []User{{Username: "fin", Password: "pw", Roles: []string{finance}}}, testPasswordParams, time.Now); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/v1/auth/token", "application/json", strings.NewReader(`{"username":"fin","password":"pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in: %d %s", resp.StatusCode, b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}
