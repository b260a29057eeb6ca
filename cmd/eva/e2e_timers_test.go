package main

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestE2EKill9DeadlineTimer: adm sets a 3-second deadline for urgent
// requests; a request is filed and eva is killed with SIGKILL before the
// deadline; it stays down past the deadline and, restarted on the same
// data, appends DeadlineMissed once and shows the case escalated.
func TestE2EKill9DeadlineTimer(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	eva, c := startDev(t, "eva dev #1", dataDir)
	policy := map[string]any{"caps_usd_cents": map[string]int64{"shelter": 500_000}, "case_cap_usd_cents": 2_000_000,
		"second_approval_above_usd_cents": 500_000, "deadlines": map[string]string{"critical": "4h", "urgent": "3s", "routine": "72h"},
		"claim_ttl": "30m"}
	if r := c.do(req{user: "adm", method: http.MethodPut, path: "/v1/policy", body: policy}); r.Status != http.StatusOK {
		t.Fatalf("PUT /v1/policy: %s", r)
	}
	cs, err := tryPost[caseJSON](c, "ana", "/v1/requests", fileBody(c.payee().ID, "REF-TIMER-1", 25_000), http.StatusCreated)
	if err != nil {
		t.Fatal(err)
	}
	eva.kill()
	time.Sleep(4 * time.Second) // the deadline passes while nothing runs

	_, c = startDev(t, "eva dev #2", dataDir)
	var got caseJSON
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(100 * time.Millisecond) {
		if got = get[caseJSON](c, "olu", "/v1/requests/"+cs.ID, http.StatusOK); got.Escalated {
			break
		}
	}
	if !got.Escalated {
		t.Fatalf("after the restart, past the deadline: %+v, want escalated", got)
	}
	types := eventTypes(c.history(cs.ID))
	if n := len(slices.DeleteFunc(slices.Clone(types), func(s string) bool { return s != "DeadlineMissed" })); n != 1 {
		t.Fatalf("history %v: DeadlineMissed %d times, want once", types, n)
	}
}
