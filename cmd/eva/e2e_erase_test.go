package main

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// Erasure on the real binary (DESIGN §6, API.md): an admin erases the
// personal data of a case whose payout is under way. The beneficiary
// answers 410, the payout still settles, the history keeps every event,
// the audit log verifies, a checkpoint saved before the erasure is still a
// prefix of the log (the erasure rewrote nothing), the outsider's
// inclusion check passes on the new checkpoint, and the process's logs
// never held the person's data.
func TestE2EErasureKeepsMoneyTrailAndProofs(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	eva, c := startDev(t, "eva dev", dataDir)
	payee, fund := c.payee(), c.demoFund()
	person := map[string]any{"reference": "REF-ERASE-5519-QX", "name": "Yevgenia Tarkovskaya-Lind",
		"date_of_birth": "1997-02-28", "nationality": "UKR", "contact": "+380-44-555-0199 via Lantern shelter"}
	body := fileBody(payee.ID, "", 40_000)
	body["beneficiary"] = person
	id := post[caseJSON](c, "ana", "/v1/requests", body, http.StatusCreated, nil).ID
	if r := c.do(req{user: "olu", method: http.MethodGet, path: "/v1/requests/" + id + "/beneficiary"}); r.Status != http.StatusOK ||
		!strings.Contains(string(r.Body), "Tarkovskaya") {
		t.Fatalf("beneficiary before erasure: %s", r)
	}

	// A checkpoint saved before the erasure.
	v := c.waitVerified(30 * time.Second)
	var before string
	evatest.Await(t, 5*time.Second, "a checkpoint of the log before erasure", func() (bool, string) {
		var size uint64
		size, before = c.checkpoint()
		return size == v.Events, before
	})

	// Approved: the payout starts on its own; the erasure comes while it
	// is under way.
	post[caseJSON](c, "olu", "/v1/requests/"+id+"/claim", nil, http.StatusOK, nil)
	post[caseJSON](c, "olu", "/v1/requests/"+id+"/approve",
		map[string]any{"amount_usd_cents": 40_000, "fund_id": fund.ID, "note": "ok"}, http.StatusOK, nil)

	erase := func(user, key string, body any) *response {
		return c.do(req{user: user, method: http.MethodPost, path: "/v1/requests/" + id + "/erase", body: body,
			header: map[string]string{"Idempotency-Key": key}})
	}
	reason := map[string]any{"reason": "the survivor asked (ticket 88)"}
	if r := erase("olu", "k-olu", reason); r.Status != http.StatusForbidden {
		t.Fatalf("an approver erases: %s, want 403", r)
	}
	if r := erase("adm", "k-blank", map[string]any{"reason": ""}); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"reason"`) {
		t.Fatalf("erase without a reason: %s, want 400 naming reason", r)
	}
	first := erase("adm", "k-1", reason)
	var erased struct {
		Status             string `json:"status"`
		PersonalDataErased bool   `json:"personal_data_erased"`
	}
	first.decode(t, &erased)
	if first.Status != http.StatusOK || !erased.PersonalDataErased {
		t.Fatalf("erase: %s", first)
	}
	t.Logf("erased while %s", erased.Status)
	if again := erase("adm", "k-1", reason); again.Status != http.StatusOK || string(again.Body) != string(first.Body) {
		t.Fatalf("erase retried with its key: %s, want the first answer %s", again, first)
	}
	if r := erase("adm", "k-2", reason); r.Status != http.StatusConflict {
		t.Fatalf("erase again with another key: %s, want 409", r)
	}
	for _, user := range []string{"olu", "ana"} {
		r := c.do(req{user: user, method: http.MethodGet, path: "/v1/requests/" + id + "/beneficiary"})
		if r.Status != http.StatusGone || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
			t.Fatalf("beneficiary after erasure as %s: %s, want 410 problem+json", user, r)
		}
	}

	// The money trail goes on and stays.
	c.waitStatus(id, "disbursed", 60*time.Second)
	if pays := c.settledPayouts(id); len(pays) != 1 || pays[0].AmountCents != 40_000 {
		t.Fatalf("payouts after erasure: %+v", pays)
	}
	types := eventTypes(c.history(id))
	for _, want := range []string{"RequestSubmitted", "RequestApproved", "FundsReserved", "PersonalDataErased", "PayoutSettled"} {
		if !slices.Contains(types, want) {
			t.Fatalf("history %v has no %s", types, want)
		}
	}

	// Every proof still verifies: the audit's own check, the outsider's
	// inclusion check on a new checkpoint, and offline against the
	// checkpoint saved before the erasure.
	v = c.waitVerified(30 * time.Second)
	var after string
	evatest.Await(t, 5*time.Second, "a checkpoint of the log after erasure", func() (bool, string) {
		var size uint64
		size, after = c.checkpoint()
		return size == v.Events, after
	})
	key := c.do(req{user: "aud", method: http.MethodGet, path: "/v1/audit/key"})
	if key.Status != http.StatusOK {
		t.Fatalf("GET /v1/audit/key: %s", key)
	}
	outsiderVerifies(t, c, key.Body, []byte(after), v.Events)
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}
	logs := eva.out.String()
	for _, field := range person {
		if strings.Contains(logs, field.(string)) {
			t.Fatalf("the logs hold personal data %q", field)
		}
	}
	for _, cp := range []string{before, after} {
		saved := filepath.Join(t.TempDir(), "checkpoint")
		if err := os.WriteFile(saved, []byte(cp), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startProc(t, "eva audit verify", childEnv(), "audit", "verify", "--data", dataDir,
			"--checkpoint", saved, "--key", strings.TrimSpace(string(key.Body)))
		if code := p.wait(60 * time.Second); code != 0 {
			t.Fatalf("eva audit verify after erasure, checkpoint %q: exit %d\n%s", lastLine(cp), code, p.out)
		}
	}
}
