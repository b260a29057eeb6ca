package gateway

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

func TestCaseJSON(t *testing.T) {
	c := sampleCase(dhakaCase, "BGD-DHAKA")
	c.CreatedAt = time.Date(2025, 3, 1, 11, 30, 0, 500, time.FixedZone("BDT", 6*3600))
	raw, err := json.Marshal(toCaseJSON(c))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "status", "post", "category", "urgency", "amount_usd_cents", "approved_usd_cents",
		"deadline", "escalated", "created_at", "updated_at", "version", "requester", "justification", "payee_id"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %s", k, raw)
		}
	}
	for _, k := range []string{"fund_id", "payout_id", "claimed_by", "claim_expires_at", "question"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present while zero: %s", k, raw)
		}
	}
	if m["created_at"] != "2025-03-01T05:30:00.0000005Z" || m["deadline"] != "2025-03-01T13:30:00.123456Z" {
		t.Errorf("times not RFC 3339 UTC: %s", raw)
	}
	for _, secret := range []string{"SEALED", "REF-HASH", "U0VBTEVE" /* base64 of SEALED */, "Beneficiary", "beneficiary"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("case JSON holds %q: %s", secret, raw)
		}
	}
	c.Status, c.Question = string(assist.StateInfoRequested), "which shelter?"
	c.ClaimedBy, c.ClaimExpiresAt = "olu", t0
	j := toCaseJSON(c)
	if j.Question != "which shelter?" || j.ClaimedBy != "olu" || *j.ClaimExpiresAt != formatTime(t0) {
		t.Errorf("%+v", j)
	}
}

func TestResponses(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))

	t.Run("queue", func(t *testing.T) {
		var got approvalapi.QueueRequest
		h.approval.queue = func(_ context.Context, r approvalapi.QueueRequest) (approvalapi.QueuePage, error) {
			got = r
			return approvalapi.QueuePage{Items: []approvalapi.QueueItem{
				{CaseID: dhakaCase, Overdue: true, PossibleDuplicates: []string{mumbaiCase}},
				{CaseID: mumbaiCase},
			}, NextCursor: "next"}, nil
		}
		w := h.get("olu", "/v1/queue?limit=2&cursor=abc")
		type queueResp struct {
			Items []map[string]any `json:"items"`
			Next  string           `json:"next_cursor"`
		}
		p := decodeJSONBody[queueResp](t, w, http.StatusOK)
		if got.Limit != 2 || got.Cursor != "abc" || p.Next != "next" || len(p.Items) != 2 {
			t.Fatalf("queue %+v → %s", got, w.Body)
		}
		if p.Items[0]["id"] != dhakaCase || p.Items[0]["overdue"] != true ||
			len(p.Items[0]["possible_duplicates"].([]any)) != 1 || p.Items[1]["overdue"] != false ||
			p.Items[1]["possible_duplicates"] == nil {
			t.Fatalf("queue items %s", w.Body)
		}
	})

	t.Run("commands answer the case", func(t *testing.T) {
		var got approvalapi.ApproveRequest
		h.approval.approve = func(_ context.Context, r approvalapi.ApproveRequest) (caseview.Case, error) {
			got = r
			c := sampleCase(r.CaseID, "BGD-DHAKA")
			c.Status, c.ApprovedCents, c.FundID = string(assist.StateApproved), r.AmountCents, r.FundID
			return c, nil
		}
		body := `{"amount_usd_cents":20000,"fund_id":"` + fundID + `","payee_id":"` + payeeID + `","note":"n"}`
		c := decodeJSONBody[caseJSON](t, h.post("olu", "/v1/requests/"+dhakaCase+"/approve", body), http.StatusOK)
		if got.Actor != (assist.Actor{Username: "olu", Role: approver}) || got.CaseID != dhakaCase || got.AmountCents != 20000 ||
			got.FundID != fundID || got.PayeeID != payeeID || got.Note != "n" || got.CommandID == "" {
			t.Fatalf("approve request %+v", got)
		}
		if c.Status != "approved" || c.ApprovedCents != 20000 || c.FundID != fundID {
			t.Fatalf("case %+v", c)
		}
	})

	t.Run("amend passes only the fields sent", func(t *testing.T) {
		var got intakeapi.AmendRequest
		h.intake.amend = func(_ context.Context, r intakeapi.AmendRequest) (caseview.Case, error) {
			got = r
			return sampleCase(r.CaseID, "BGD-DHAKA"), nil
		}
		decodeJSONBody[caseJSON](t, h.post("ana", "/v1/requests/"+dhakaCase+"/amend", `{"urgency":"routine","payee_id":null}`), http.StatusOK)
		if got.Urgency == nil || *got.Urgency != "routine" || got.Category != nil || got.AmountCents != nil ||
			got.Justification != nil || got.Beneficiary != nil || got.PayeeID != nil {
			t.Fatalf("amend request %+v", got)
		}
	})

	t.Run("money", func(t *testing.T) {
		var gotFund disbursementapi.CreateFundRequest
		h.disb.createFund = func(_ context.Context, r disbursementapi.CreateFundRequest) (disbursementapi.Fund, error) {
			gotFund = r
			return disbursementapi.Fund{ID: r.CommandID, Name: r.Name, AllocatedCents: r.AllocatedCents, AvailableCents: r.AllocatedCents,
				CreatedAt: t0}, nil
		}
		w := h.post("fin", "/v1/funds", validBodies["/v1/funds"])
		f := decodeJSONBody[fundJSON](t, w, http.StatusCreated)
		if gotFund.Actor != (assist.Actor{Username: "fin", Role: finance}) || f.AllocatedCents != 100000000 ||
			w.Header().Get("Location") != "/v1/funds/"+f.ID {
			t.Fatalf("fund %+v, request %+v, location %q", f, gotFund, w.Header().Get("Location"))
		}
		var gotList disbursementapi.ListRequest
		h.disb.payouts = func(_ context.Context, r disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error) {
			gotList = r
			return disbursementapi.PayoutsPage{}, nil
		}
		p := decodeJSONBody[page[payoutJSON]](t, h.get("aud", "/v1/payouts?request="+dhakaCase+"&status=failed&limit=5"), http.StatusOK)
		if gotList.CaseID != dhakaCase || gotList.Status != "failed" || gotList.Limit != 5 || p.Items == nil {
			t.Fatalf("payouts %+v → %+v", gotList, p)
		}
		var gotCancel disbursementapi.PayoutCommand
		h.disb.cancelPayout = func(_ context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error) {
			gotCancel = r
			return disbursementapi.Payout{ID: r.PayoutID, Status: disbursementapi.PayoutCancelled}, nil
		}
		po := decodeJSONBody[payoutJSON](t, h.post("fin", "/v1/payouts/"+payoutID+"/cancel", `{"reason":"closed"}`), http.StatusOK)
		if gotCancel.PayoutID != payoutID || gotCancel.Reason != "closed" || po.Status != "cancelled" {
			t.Fatalf("cancel %+v → %+v", gotCancel, po)
		}
		decodeProblem(t, h.get("fin", "/v1/funds/unknown-fund"), http.StatusNotFound)
		hist := decodeJSONBody[fundHistoryJSON](t, h.get("aud", "/v1/funds/"+fundID+"/history"), http.StatusOK)
		if hist.FundID != fundID || len(hist.Items) != 2 || hist.Items[1].ReservedCents != 25000 ||
			hist.Items[1].AvailableCents != 100_000_000-25000 || hist.Items[1].At != formatTime(t0.Add(time.Hour)) {
			t.Fatalf("fund history %+v", hist)
		}
		decodeProblem(t, h.get("fin", "/v1/funds/"+payoutID+"/history"), http.StatusNotFound)
	})

	t.Run("audit", func(t *testing.T) {
		p := decodeJSONBody[eventsPageJSON](t, h.get("aud", "/v1/audit/events"), http.StatusOK)
		if len(p.Items) != 2 || p.NextAfter != 2 || p.NextCursor != "2" || p.Items[0].Actor.Username != "ana" ||
			string(p.Items[0].Data) != `{"amountUsdCents":"25000"}` {
			t.Fatalf("events %+v", p)
		}
		p = decodeJSONBody[eventsPageJSON](t, h.get("aud", "/v1/audit/events?cursor="+p.NextCursor), http.StatusOK)
		if len(p.Items) != 1 || p.Items[0].Seq != 3 || p.NextAfter != 0 || p.NextCursor != "" {
			t.Fatalf("last page %+v", p)
		}
		// An event whose body could not be rendered shows data null and why.
		h.audit.history = func(_ context.Context, id string) ([]auditapi.ArchivedEvent, error) {
			return []auditapi.ArchivedEvent{{Seq: 9, ID: id, CaseID: id, Type: "FutureEvent", At: t0, DecodeError: "unknown type"}}, nil
		}
		hist := decodeJSONBody[map[string][]map[string]any](t, h.get("aud", "/v1/requests/"+dhakaCase+"/history"), http.StatusOK)
		if e := hist["items"][0]; e["data"] != nil || e["decode_error"] != "unknown type" {
			t.Fatalf("history %v", hist)
		}
		v := decodeJSONBody[map[string]any](t, h.get("aud", "/v1/audit/verify"), http.StatusOK)
		if fb, ok := v["first_bad"]; v["ok"] != true || v["events"] != float64(3) || !ok || fb != nil {
			t.Fatalf("verify %v", v)
		}
		// The checkpoint, the key and a leaf are text and bytes as the
		// service gives them; proofs are base64.
		for path, want := range map[string]string{
			"/v1/audit/checkpoint": fakeCheckpoint,
			"/v1/audit/key":        fakeVerifierKey + "\n",
			"/v1/audit/leaves/2":   "eva-audit-leaf/v1\nseq 2\n",
		} {
			if w := h.get("aud", path); w.Code != http.StatusOK || w.Body.String() != want {
				t.Fatalf("GET %s = %d %q, want %q", path, w.Code, w.Body, want)
			}
		}
		for path, status := range map[string]int{
			"/v1/audit/leaves/4": http.StatusNotFound, "/v1/audit/leaves/0": http.StatusBadRequest,
			"/v1/audit/leaves/x": http.StatusBadRequest, "/v1/audit/proof/inclusion?seq=1&size=4": http.StatusBadRequest,
			"/v1/audit/proof/inclusion?seq=1": http.StatusBadRequest, "/v1/audit/proof/consistency?from=a&to=2": http.StatusBadRequest,
		} {
			if w := h.get("aud", path); w.Code != status {
				t.Fatalf("GET %s = %d %s, want %d", path, w.Code, w.Body, status)
			}
		}
		inc := decodeJSONBody[map[string]any](t, h.get("aud", "/v1/audit/proof/inclusion?seq=2&size=3"), http.StatusOK)
		if hs := inc["hashes"].([]any); inc["seq"] != float64(2) || inc["size"] != float64(3) || len(hs) != 2 ||
			hs[0] != "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" {
			t.Fatalf("inclusion proof %v", inc)
		}
		con := decodeJSONBody[map[string]any](t, h.get("aud", "/v1/audit/proof/consistency?from=1&to=3"), http.StatusOK)
		if con["from"] != float64(1) || con["to"] != float64(3) || len(con["hashes"].([]any)) != 1 {
			t.Fatalf("consistency proof %v", con)
		}
		acc := decodeJSONBody[page[accessJSON]](t, h.get("aud", "/v1/audit/access?case="+dhakaCase), http.StatusOK)
		if len(acc.Items) != 1 || acc.Items[0].RequestID != dhakaCase || acc.Items[0].Username != "olu" {
			t.Fatalf("access %+v", acc)
		}
		var at time.Time
		h.audit.asOf = func(_ context.Context, r auditapi.AsOfRequest) (caseview.Case, error) {
			at = r.At
			return sampleCase(r.CaseID, "BGD-DHAKA"), nil
		}
		decodeJSONBody[caseJSON](t, h.get("aud", "/v1/requests/"+dhakaCase+"/as-of?t=2025-03-01T15:04:05.25%2B02:00"), http.StatusOK)
		if !at.Equal(time.Date(2025, 3, 1, 13, 4, 5, 250_000_000, time.UTC)) {
			t.Fatalf("as-of %v", at)
		}
	})

	t.Run("export", func(t *testing.T) {
		w := h.get("aud", "/v1/audit/export")
		if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/jsonl") {
			t.Fatalf("export: %d %s", w.Code, w.Header())
		}
		var seqs []uint64
		sc := bufio.NewScanner(w.Body)
		for sc.Scan() {
			var e eventJSON
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			seqs = append(seqs, e.Seq)
		}
		if !slices.Equal(seqs, []uint64{1, 2, 3}) {
			t.Fatalf("exported %v", seqs)
		}
		w = h.get("aud", "/v1/audit/export?format=csv")
		recs, err := csv.NewReader(w.Body).ReadAll()
		if err != nil || len(recs) != 4 || !slices.Equal(recs[0], csvHeader) || recs[3][0] != "3" ||
			recs[1][slices.Index(csvHeader, "data")] != `{"amountUsdCents":"25000"}` {
			t.Fatalf("csv %v, %v", recs, err)
		}
		// The first page failing is a problem; a later one aborts.
		events := h.audit.events
		h.audit.events = func(ctx context.Context, r auditapi.EventsRequest) (auditapi.EventsPage, error) {
			if r.After > 0 {
				return auditapi.EventsPage{}, assist.Errorf(assist.CodeUnavailable, "audit is gone")
			}
			return events(ctx, r)
		}
		func() {
			defer func() {
				if rv := recover(); rv != http.ErrAbortHandler {
					t.Fatalf("a broken export ended with %v, want an abort", rv)
				}
			}()
			h.get("aud", "/v1/audit/export")
		}()
		h.audit.events = func(context.Context, auditapi.EventsRequest) (auditapi.EventsPage, error) {
			return auditapi.EventsPage{}, assist.Errorf(assist.CodeUnavailable, "audit is gone")
		}
		decodeProblem(t, h.get("aud", "/v1/audit/export"), http.StatusServiceUnavailable)
	})
}

// Admins see the dead letters, paged by the dead-letter stream's sequence.
func TestDeadLettersForAdmins(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	var got auditapi.DeadLettersRequest
	h.audit.dead = func(_ context.Context, r auditapi.DeadLettersRequest) (auditapi.DeadLettersPage, error) {
		got = r
		return auditapi.DeadLettersPage{Items: []eventlog.DeadLetter{{Seq: 8, Consumer: "approval", Subject: "eva.case.x.RequestAmended",
			EventSeq: 7, EventID: "e", Reason: "cannot apply", DeadLetteredAt: t0}}, Next: 8}, nil
	}
	out := decodeJSONBody[deadLettersJSON](t, h.get("adm", "/v1/admin/dead-letters?after=7&limit=1"), http.StatusOK)
	if got.After != 7 || got.Limit != 1 {
		t.Fatalf("asked audit for %+v", got)
	}
	if len(out.Items) != 1 || out.Items[0].Reason != "cannot apply" || out.Items[0].Consumer != "approval" || out.NextAfter != 8 {
		t.Fatalf("answer %+v", out)
	}
	decodeProblem(t, h.get("adm", "/v1/admin/dead-letters?after=x"), http.StatusBadRequest)
	decodeProblem(t, h.get("aud", "/v1/admin/dead-letters"), http.StatusForbidden)
}

// The duplicate check recorded at filing is shown to approvers, finance
// and auditors — as a list, empty when there was no match — and never to
// a requester, not even the filer.
func TestPossibleDuplicatesOnlyForStaff(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	get := h.intake.get
	h.intake.get = func(ctx context.Context, id string) (caseview.Case, error) {
		c, err := get(ctx, id)
		c.PossibleDuplicateOf = []string{"0194e1c2-7a3b-7c4d-8e5f-0000000000aa"}
		return c, err
	}
	for user, want := range map[string]bool{"ana": false, "olu": true, "fin": true, "aud": true, "ana-aud": true} {
		w := h.get(user, "/v1/requests/"+dhakaCase)
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", user, w.Code, w.Body)
		}
		dups, ok := m["possible_duplicate_of"].([]any)
		if ok != want || (want && (len(dups) != 1 || dups[0] != "0194e1c2-7a3b-7c4d-8e5f-0000000000aa")) {
			t.Errorf("%s sees possible_duplicate_of %v (shown: %v, want %v)", user, m["possible_duplicate_of"], ok, want)
		}
	}
	h.intake.get = get
	if w := h.get("olu", "/v1/requests/"+dhakaCase); !strings.Contains(w.Body.String(), `"possible_duplicate_of":[]`) {
		t.Errorf("no duplicates: want an empty list for an approver, got %s", w.Body)
	}
}

// A requester picks a payee by name and country; where its money goes
// (the provider account) is for finance, approvers, auditors and admins.
func TestPayeeAccountNotForRequesters(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	for user, want := range map[string]bool{"ana": false, "raj": false, "olu": true, "fin": true, "aud": true, "adm": true} {
		for _, path := range []string{"/v1/payees", "/v1/payees/" + payeeID} {
			w := h.get(user, path)
			if w.Code != http.StatusOK {
				t.Fatalf("%s %s: %d %s", user, path, w.Code, w.Body)
			}
			if got := strings.Contains(w.Body.String(), `"account"`); got != want {
				t.Errorf("%s %s shows the account: %v, want %v: %s", user, path, got, want, w.Body)
			}
		}
	}
}
