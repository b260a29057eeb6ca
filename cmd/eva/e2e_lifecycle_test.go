package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// TestE2ELifecycle drives one case from filing to disbursed through the
// real binary (`eva dev`, everything embedded), checks what each role may
// and may not do on the way, the history, the money and the audit, then
// stops eva gracefully and verifies the audit archive offline with
// `eva audit verify`.
func TestE2ELifecycle(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	eva, c := startDev(t, "eva dev", dataDir)

	fund := c.demoFund()
	payee := c.payee()
	seeded := c.waitVerified(20 * time.Second).Events // the demo fund's and payees' events
	const requested, approved = 125_000, 100_000

	// ana files, with an Idempotency-Key; the same key and body again
	// answers the same, and files nothing new.
	body := fileBody(payee.ID, "REF-LIFECYCLE-1", requested)
	key := map[string]string{"Idempotency-Key": "lifecycle-file-1"}
	first := c.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests", body: body, header: key})
	if first.Status != http.StatusCreated {
		t.Fatalf("file: %s, want 201", first)
	}
	var cs caseJSON
	first.decode(t, &cs)
	if cs.ID == "" || cs.Status != "submitted" || cs.AmountCents != requested || cs.Post != "BGD-DHAKA" {
		t.Fatalf("filed case: %+v", cs)
	}
	if loc := first.Header.Get("Location"); loc != "/v1/requests/"+cs.ID {
		t.Errorf("Location %q, want /v1/requests/%s", loc, cs.ID)
	}
	again := c.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests", body: body, header: key})
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
		t.Errorf("same Idempotency-Key and body: %s; first answer was %s", again, first)
	}
	// Idempotent-Replayed is not asserted: the gateway stores the answer
	// for the key just after sending it, so a retry that quick runs the
	// command again under the same command id (the services de-duplicate
	// it) and is not marked as replayed. The answer is the same all the
	// same, which is what API.md promises.
	t.Logf("second answer for the same key: Idempotent-Replayed=%q", again.Header.Get("Idempotent-Replayed"))
	body2 := fileBody(payee.ID, "REF-LIFECYCLE-1", requested+1)
	if r := c.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests", body: body2, header: key}); r.Status != http.StatusUnprocessableEntity {
		t.Errorf("same Idempotency-Key, other body: %s, want 422", r)
	}
	id := cs.ID
	if n := len(get[pageJSON[caseJSON]](c, "olu", "/v1/requests?limit=500", http.StatusOK).Items); n != 1 {
		t.Errorf("%d requests after filing once and replaying, want 1", n)
	}

	// Invariant 7: a requester of another post learns nothing.
	for _, path := range []string{"/v1/requests/" + id, "/v1/requests/" + id + "/history"} {
		if r := c.do(req{user: "raj", method: http.MethodGet, path: path}); r.Status != http.StatusNotFound {
			t.Errorf("raj GET %s: %s, want 404", path, r)
		}
	}
	if got := get[pageJSON[caseJSON]](c, "raj", "/v1/requests", http.StatusOK).Items; len(got) != 0 {
		t.Errorf("raj lists %d requests of another post", len(got))
	}
	if r := c.do(req{user: "raj", method: http.MethodPost, path: "/v1/requests/" + id + "/withdraw",
		body: map[string]string{"reason": "not mine"}}); r.Status != http.StatusNotFound {
		t.Errorf("raj withdraws ana's case: %s, want 404", r)
	}

	// olu claims.
	claimed := post[caseJSON](c, "olu", "/v1/requests/"+id+"/claim", nil, http.StatusOK, nil)
	if claimed.Status != "under_review" {
		t.Fatalf("claimed case: %+v", claimed)
	}

	approve := map[string]any{"amount_usd_cents": approved, "fund_id": fund.ID, "note": "approved for two weeks"}
	// mei does not hold the claim: 409. ana is no approver: 403.
	if r := c.do(req{user: "mei", method: http.MethodPost, path: "/v1/requests/" + id + "/approve", body: approve}); r.Status != http.StatusConflict {
		t.Errorf("mei approves a case olu holds: %s, want 409", r)
	}
	if r := c.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests/" + id + "/approve", body: approve}); r.Status != http.StatusForbidden {
		t.Errorf("ana approves: %s, want 403", r)
	}
	// The auditor can change nothing: every POST route is 403.
	for _, path := range []string{
		"/v1/requests", "/v1/requests/" + id + "/amend", "/v1/requests/" + id + "/withdraw",
		"/v1/requests/" + id + "/info", "/v1/requests/" + id + "/claim", "/v1/requests/" + id + "/release",
		"/v1/requests/" + id + "/approve", "/v1/requests/" + id + "/reject", "/v1/requests/" + id + "/request-info",
		"/v1/funds", "/v1/payees", "/v1/payouts/" + id + "/retry", "/v1/payouts/" + id + "/cancel",
	} {
		b := map[string]any{"reason": "audit"}
		switch {
		case strings.HasSuffix(path, "/approve"):
			b = approve
		case path == "/v1/requests":
			b = fileBody(payee.ID, "REF-AUD", 1000)
		case path == "/v1/funds":
			b = map[string]any{"name": "AUD-FUND", "allocated_usd_cents": 100}
		case path == "/v1/payees":
			b = map[string]any{"name": "Aud Payee", "account": "AUD-1"}
		}
		r := c.do(req{user: "aud", method: http.MethodPost, path: path, body: b})
		if r.Status != http.StatusForbidden {
			t.Errorf("aud POST %s: %s, want 403", path, r)
		}
		checkProblem(t, "aud POST "+path, r, "")
	}

	fundBefore := c.fund(fund.ID)
	ok := post[caseJSON](c, "olu", "/v1/requests/"+id+"/approve", approve, http.StatusOK, nil)
	if ok.ApprovedCents != approved {
		t.Errorf("approved case: %+v", ok)
	}
	done := c.waitStatus(id, "disbursed", 30*time.Second)
	if done.ApprovedCents != approved || done.FundID != fund.ID {
		t.Errorf("disbursed case: %+v", done)
	}

	// The history: the auditor reads the case's events in order.
	wantTypes := []string{"RequestSubmitted", "ReviewClaimed", "RequestApproved", "FundsReserved", "PayoutSent", "PayoutSettled"}
	var hist []eventJSON
	evatest.Await(t, 20*time.Second, "the history to hold PayoutSettled", func() (bool, string) {
		hist = c.history(id)
		return slices.Contains(eventTypes(hist), "PayoutSettled"), strings.Join(eventTypes(hist), ",")
	})
	if got := eventTypes(hist); !slices.Equal(got, wantTypes) {
		t.Errorf("history %v, want %v", got, wantTypes)
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Seq <= hist[i-1].Seq {
			t.Errorf("history out of order: seq %d after %d", hist[i].Seq, hist[i-1].Seq)
		}
	}

	// One payout, settled, of the approved amount.
	pays := c.settledPayouts(id)
	if len(pays) != 1 || pays[0].Status != "settled" || pays[0].AmountCents != approved || pays[0].RequestID != id ||
		pays[0].FundID != fund.ID || pays[0].PayeeID != payee.ID {
		t.Errorf("payouts of %s: %+v, want one settled of %d", id, pays, approved)
	}

	// The fund moved by exactly the approved amount.
	fundAfter := c.fund(fund.ID)
	if fundAfter.PaidCents != fundBefore.PaidCents+approved || fundAfter.AvailableCents != fundBefore.AvailableCents-approved ||
		fundAfter.ReservedCents != fundBefore.ReservedCents || fundAfter.AllocatedCents != fundBefore.AllocatedCents {
		t.Errorf("fund before %+v, after %+v: want paid +%d, available -%d", fundBefore, fundAfter, approved, approved)
	}

	// The audit verifies, and counts every event of the log: the seeds'
	// and this case's.
	v := c.waitVerified(20 * time.Second)
	if v.Events != seeded+uint64(len(hist)) {
		t.Errorf("audit verify counts %d events, the log holds %d (%d seeded, then the one case's history)",
			v.Events, seeded+uint64(len(hist)), seeded)
	}
	if size, note := c.checkpoint(); size > v.Events || !strings.Contains(note, "\n\n— ") {
		t.Errorf("checkpoint %q with %d events verified", note, v.Events)
	}

	// As of a moment between filing and claim, the case was submitted.
	var filedAt, claimedAt time.Time
	for _, e := range hist {
		at, err := time.Parse(time.RFC3339Nano, e.At)
		if err != nil {
			t.Fatalf("event time %q: %v", e.At, err)
		}
		switch e.Type {
		case "RequestSubmitted":
			filedAt = at
		case "ReviewClaimed":
			claimedAt = at
		}
	}
	if !filedAt.Before(claimedAt) {
		t.Fatalf("filed at %s, claimed at %s", filedAt, claimedAt)
	}
	mid := filedAt.Add(claimedAt.Sub(filedAt) / 2).UTC().Format(time.RFC3339Nano)
	for _, user := range []string{"aud", "olu"} {
		was := get[caseJSON](c, user, "/v1/requests/"+id+"/as-of?t="+mid, http.StatusOK)
		if was.Status != "submitted" || was.ID != id {
			t.Errorf("as-of %s (as %s): %+v, want submitted", mid, user, was)
		}
	}
	now := get[caseJSON](c, "aud", "/v1/requests/"+id+"/as-of?t="+time.Now().UTC().Format(time.RFC3339Nano), http.StatusOK)
	if now.Status != "disbursed" {
		t.Errorf("as-of now: %+v, want disbursed", now)
	}

	// Graceful stop, then the offline check on the same data.
	if code := eva.stop(); code != 0 {
		t.Errorf("eva dev exited with %d after SIGINT, want 0", code)
	}
	verify := startProc(t, "eva audit verify", childEnv(), "audit", "verify", "--data", dataDir)
	code := verify.wait(60 * time.Second)
	out := verify.out.String()
	if code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Errorf("eva audit verify: exit %d, output:\n%s", code, out)
	}
	t.Logf("eva audit verify:\n%s", out)
}

// checkProblem checks that r is an RFC 9457 problem with the status of
// the response and, when field is not empty, an error naming it.
func checkProblem(t *testing.T, name string, r *response, field string) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s: Content-Type %q, want application/problem+json (%s)", name, ct, r)
		return
	}
	var p problemJSON
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Errorf("%s: problem does not parse: %v (%s)", name, err, r)
		return
	}
	if p.Type == "" || p.Title == "" || p.Detail == "" || p.Status != r.Status {
		t.Errorf("%s: problem %+v with status %d: want type, title, detail and the same status", name, p, r.Status)
	}
	if field == "" {
		return
	}
	var fields []string
	for _, e := range p.Errors {
		fields = append(fields, e.Field)
		if e.Message == "" {
			t.Errorf("%s: error for %q has no message", name, e.Field)
		}
	}
	if !slices.Contains(fields, field) {
		t.Errorf("%s: errors name %v, want %q (%s)", name, fields, field, r)
	}
}
