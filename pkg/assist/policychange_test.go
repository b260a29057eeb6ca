package assist_test

import (
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

func TestChangePolicy(t *testing.T) {
	cmd := assist.Cmd{ID: "cmd-p", Actor: ada, At: t0}
	in := assist.DefaultPolicy()
	in.Version = "ignored"
	e, err := assist.ChangePolicy(cmd, 3, in)
	if err != nil {
		t.Fatal(err)
	}
	b := e.Body.(assist.PolicyChanged)
	if e.Kind() != assist.KindPolicy || e.CaseID != assist.PolicyID || b.Policy.Version != "4" {
		t.Fatalf("event %+v: want a policy event, version 4", e)
	}
	h := assist.PolicyHistory(assist.DefaultPolicy(), []assist.Recorded{{Seq: 9, Event: e}})
	if len(h) != 2 || h[0].Policy.Version != "default-1" || h[1].Policy.Version != "4" || h[1].By != ada || !h[1].At.Equal(t0) {
		t.Fatalf("history %+v", h)
	}

	_, err = assist.ChangePolicy(assist.Cmd{ID: "x", Actor: bob, At: t0}, 1, assist.DefaultPolicy())
	wantCode(t, err, assist.CodeForbidden)

	tests := []struct {
		field  string
		change func(p *assist.Policy)
	}{
		{"case_cap_usd_cents", func(p *assist.Policy) { p.CaseCapUSDCents = 0 }},
		{"caps_usd_cents.yacht", func(p *assist.Policy) { p.CategoryCapsUSDCents["yacht"] = 1 }},
		{"caps_usd_cents.shelter", func(p *assist.Policy) { p.CategoryCapsUSDCents[assist.Shelter] = -1 }},
		{"deadlines.critical", func(p *assist.Policy) { p.Deadlines[assist.Critical] = 999 * time.Millisecond }},
		{"deadlines.routine", func(p *assist.Policy) { delete(p.Deadlines, assist.Routine) }},
		{"deadlines.someday", func(p *assist.Policy) { p.Deadlines["someday"] = time.Hour }},
		{"claim_ttl", func(p *assist.Policy) { p.ClaimTTL = 0 }},
		{"second_approval_above_usd_cents", func(p *assist.Policy) { p.SecondApprovalAboveUSDCents = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			p := assist.DefaultPolicy()
			tt.change(&p)
			_, err := assist.ChangePolicy(cmd, 1, p)
			ae := wantCode(t, err, assist.CodeInvalid)
			if len(ae.Fields) != 1 || ae.Fields[0].Field != tt.field {
				t.Fatalf("fields %+v, want just %s", ae.Fields, tt.field)
			}
		})
	}
}
