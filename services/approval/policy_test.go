package approval_test

import (
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval/approvalapi"
)

var adm = assist.Actor{Username: "adm", Role: assist.RoleAdmin}

func policyDoc(claimTTL string, threshold int64) approvalapi.PolicyDoc {
	return approvalapi.PolicyDoc{CapsUSDCents: map[string]int64{"shelter": 30_000}, CaseCapUSDCents: 100_000,
		SecondApprovalAboveUSDCents: threshold, Deadlines: map[string]string{"critical": "1h", "urgent": "2h", "routine": "3h"},
		ClaimTTL: claimTTL}
}

// A policy change applies to what comes after it: a case keeps the
// version it was filed under, a decision the one it was taken under, and
// the history lists every version with its actor.
func TestPolicyChangeMidFlight(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{placeHold: heldAsAsked(1_000_000)})
	before := h.file(ana)
	h.claim(before.ID, olu)
	decided, err := h.svc.Approve(h.ctx, approveRequest(before.ID, olu, 25_000))
	if err != nil {
		t.Fatal(err)
	}
	pending := h.file(ana)

	_, err = h.svc.ChangePolicy(h.ctx, approvalapi.ChangePolicyRequest{CommandID: newID(), Actor: olu, Policy: policyDoc("10m", 20_000)})
	if !assist.IsCode(err, assist.CodeForbidden) {
		t.Fatalf("a change by an approver: %v, want forbidden", err)
	}
	bad := policyDoc("500ms", 20_000)
	bad.Deadlines["urgent"] = "tomorrow"
	_, err = h.svc.ChangePolicy(h.ctx, approvalapi.ChangePolicyRequest{CommandID: newID(), Actor: adm, Policy: bad})
	requireField(t, err, "deadlines.urgent")
	v, err := h.svc.ChangePolicy(h.ctx, approvalapi.ChangePolicyRequest{CommandID: newID(), Actor: adm, Policy: policyDoc("10m", 20_000)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Policy.Version != "2" || v.ChangedBy != "adm" {
		t.Fatalf("new version %+v", v)
	}

	// The decided case did not change; the pending one keeps its filing
	// version but is decided under the new one (two approvers above
	// 200.00 USD now).
	if got := h.get(before.ID); got.Version != decided.Version || got.PolicyVersion != "default-1" ||
		got.Approvals[0].PolicyVersion != "default-1" || got.State != assist.StateApproved {
		t.Fatalf("the decided case: %+v", got)
	}
	c := h.claim(pending.ID, olu)
	if want := c.UpdatedAt.Add(10 * time.Minute); !c.ClaimExpiresAt.Equal(want) {
		t.Fatalf("claim until %s, want the new policy's 10m: %s", c.ClaimExpiresAt, want)
	}
	got, err := h.svc.Approve(h.ctx, approveRequest(pending.ID, olu, 25_000))
	if err != nil {
		t.Fatal(err)
	}
	if got.PolicyVersion != "default-1" || got.State != assist.StateAwaitingSecondApproval || got.Approvals[0].PolicyVersion != "2" {
		t.Fatalf("the pending case after its first approval: %s, filed under %s, approved under %s", got.State,
			got.PolicyVersion, got.Approvals[0].PolicyVersion)
	}
	// A new filing is checked against the new caps and records version 2.
	r := fileRequest(ana)
	r.AmountCents = 30_001
	if _, err := h.intake.File(h.ctx, r); err == nil {
		t.Fatal("a request above the new shelter cap was filed")
	}
	r = fileRequest(ana)
	if c := h.fileWith(h.intake, r); c.PolicyVersion != "2" {
		t.Fatalf("filed under %q, want 2", c.PolicyVersion)
	}

	hist, err := h.svc.PolicyHistory(h.ctx, approvalapi.PolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.Items) != 2 || hist.Items[0].Policy.Version != "default-1" || hist.Items[1].ChangedBy != "adm" ||
		hist.Items[1].Policy.ClaimTTL != "10m0s" || hist.Items[1].Policy.Deadlines["critical"] != "1h0m0s" {
		t.Fatalf("history %+v", hist.Items)
	}
	cur, err := h.svc.Policy(h.ctx, approvalapi.PolicyRequest{})
	if err != nil || cur.Policy.Version != "2" {
		t.Fatalf("policy in force: %+v, %v", cur, err)
	}
}
