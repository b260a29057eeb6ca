package main

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// The README demo's requests, as the README writes them (whitespace
// aside); TestE2EReadmeDemo sends them and checks the README still does.
const (
	demoPolicy = `{"caps_usd_cents":{"shelter":500000,"medical":1000000},"case_cap_usd_cents":2000000,
       "second_approval_above_usd_cents":100000,
       "deadlines":{"critical":"30s","urgent":"24h","routine":"72h"},"claim_ttl":"30m"}`
	demoWebhook = `{"url":"http://127.0.0.1:9999/eva","events":["RequestApproved","RequestRejected","DeadlineMissed"],
       "secret":"a-long-shared-secret"}`
	demoSink        = `go run ./cmd/eva webhook-sink --listen 127.0.0.1:9999 --secret a-long-shared-secret &`
	demoSecondBody  = `'{"amount_usd_cents":280000,"note":"agreed"}'`
	demoCriticalAsk = `\"category\":\"medical\",\"urgency\":\"critical\",
       \"amount_usd_cents\":300000,\"justification\":\"Surgery\",
       \"beneficiary\":{\"reference\":\"DHK-2026-0043\"},\"payee_id\":\"$PAYEE\"}`
	demoUrgentAsk = `\"category\":\"food_basic_needs\",\"urgency\":\"urgent\",
       \"amount_usd_cents\":8000,\"justification\":\"Food for a week\",
       \"beneficiary\":{\"reference\":\"DHK-2026-0044\"}}`
)

// TestE2EReadmeDemo runs the escalation, two-approver and webhook steps
// of the README's five-minute demo against eva dev, with `eva
// webhook-sink` as the receiver: adm sets a 30 s critical deadline and a
// 1,000.00 USD two-approver threshold; a critical request misses its
// deadline (DeadlineWarning at 22.5 s, then DeadlineMissed, once each, by
// eva; escalated; first in the queue,
// before an urgent one filed after it); olu's approval holds the money
// and waits (awaiting_second_approval), olu cannot give the second, mei
// does; the sink receives DeadlineMissed and both RequestApproved with
// signatures that verify and no personal data. The README must still
// show these very requests.
func TestE2EReadmeDemo(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	squash := func(s string) string { return strings.Join(strings.Fields(s), "") }
	for _, s := range []string{demoPolicy, demoWebhook, demoSink, demoSecondBody, demoCriticalAsk, demoUrgentAsk, "sleep 35"} {
		if !strings.Contains(squash(string(readme)), squash(s)) {
			t.Errorf("the README's demo no longer shows %s: change this test with it", s)
		}
	}

	_, c := startDev(t, "eva dev", t.TempDir())
	sinkAddr := evatest.FreeAddr(t)
	sink := startProc(t, "webhook-sink", childEnv(), "webhook-sink", "--listen", sinkAddr, "--secret", "a-long-shared-secret")
	sink.waitOutput("receiving webhooks at", 30*time.Second)

	if r := c.do(req{user: "adm", method: http.MethodPost, path: "/v1/webhooks",
		body: strings.Replace(demoWebhook, "127.0.0.1:9999", sinkAddr, 1)}); r.Status != http.StatusCreated {
		t.Fatalf("register the webhook: %s", r)
	}
	var pol struct {
		Version   string            `json:"version"`
		Deadlines map[string]string `json:"deadlines"`
	}
	r := c.do(req{user: "adm", method: http.MethodPut, path: "/v1/policy", body: demoPolicy})
	if r.Status != http.StatusOK {
		t.Fatalf("PUT /v1/policy: %s", r)
	}
	if r.decode(t, &pol); pol.Version != "2" || pol.Deadlines["critical"] != "30s" {
		t.Fatalf("the new policy: %+v", pol)
	}
	payee, fund := c.payee().ID, c.demoFund().ID
	ask := func(body string) string {
		b := `{"post":"BGD-DHAKA",` + strings.ReplaceAll(strings.ReplaceAll(body, `\"`, `"`), "$PAYEE", payee)
		return post[caseJSON](c, "ana", "/v1/requests", b, http.StatusCreated, nil).ID
	}
	critical, urgent := ask(demoCriticalAsk), ask(demoUrgentAsk)

	// The critical request escalates (the README sleeps 35 s).
	var queue pageJSON[struct {
		ID        string `json:"id"`
		Escalated bool   `json:"escalated"`
	}]
	evatest.Await(t, 90*time.Second, "the critical request to escalate", func() (bool, string) {
		queue = get[pageJSON[struct {
			ID        string `json:"id"`
			Escalated bool   `json:"escalated"`
		}]](c, "olu", "/v1/queue", http.StatusOK)
		return len(queue.Items) == 2 && queue.Items[0].Escalated, string(mustJSON(queue))
	})
	if queue.Items[0].ID != critical || queue.Items[1].ID != urgent || queue.Items[1].Escalated {
		t.Fatalf("queue %+v: want the escalated critical request first", queue.Items)
	}
	hist := c.history(critical)
	if types := eventTypes(hist); !slices.Equal(types, []string{"RequestSubmitted", "DeadlineWarning", "DeadlineMissed"}) {
		t.Fatalf("history %v", types)
	}

	// Two approvers.
	post[caseJSON](c, "olu", "/v1/requests/"+critical+"/claim", nil, http.StatusOK, nil)
	first := post[caseJSON](c, "olu", "/v1/requests/"+critical+"/approve",
		map[string]any{"amount_usd_cents": 300000, "fund_id": fund}, http.StatusOK, nil)
	if first.Status != "awaiting_second_approval" {
		t.Fatalf("after the first approval: %s", first.Status)
	}
	post[problemJSON](c, "olu", "/v1/requests/"+critical+"/approve", `{"amount_usd_cents":280000}`, http.StatusForbidden, nil)
	var second struct {
		Status    string `json:"status"`
		Approvals []struct {
			Approver    string `json:"approver"`
			AmountCents int64  `json:"amount_usd_cents"`
		} `json:"approvals"`
	}
	r = c.do(req{user: "mei", method: http.MethodPost, path: "/v1/requests/" + critical + "/approve", body: strings.Trim(demoSecondBody, "'")})
	if r.Status != http.StatusOK {
		t.Fatalf("mei's approval: %s", r)
	}
	r.decode(t, &second)
	if second.Status != "approved" || len(second.Approvals) != 2 || second.Approvals[0].Approver != "olu" ||
		second.Approvals[1].Approver != "mei" || second.Approvals[1].AmountCents != 280000 {
		t.Fatalf("after the second approval: %+v", second)
	}

	// The sink's deliveries: each verified, none refused.
	type delivery struct {
		Type, CaseID, Status string
	}
	want := []delivery{{"DeadlineMissed", critical, "submitted"}, {"RequestApproved", critical, "awaiting_second_approval"},
		{"RequestApproved", critical, "approved"}}
	evatest.Await(t, 60*time.Second, "the sink to receive the three deliveries", func() (bool, string) {
		out := sink.out.String()
		var got []delivery
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, " REFUSED: ") {
				t.Fatalf("the sink refused a delivery: %s", line)
			}
			_, body, ok := strings.Cut(line, " signature ok ")
			if !ok {
				continue
			}
			if strings.Contains(body, "DHK-2026") {
				t.Fatalf("a delivery carries personal data: %s", body)
			}
			var p struct {
				Type   string `json:"type"`
				CaseID string `json:"case_id"`
				Status string `json:"status"`
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				t.Fatalf("a delivery's body %q: %v", body, err)
			}
			if d := (delivery{p.Type, p.CaseID, p.Status}); !slices.Contains(got, d) {
				got = append(got, d)
			}
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false, out
			}
		}
		return len(got) == len(want), out
	})
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
