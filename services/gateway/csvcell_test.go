package gateway

import (
	"context"
	"encoding/csv"
	"slices"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit/auditapi"
)

func TestCSVCellEscapesFormulaStarts(t *testing.T) {
	for in, want := range map[string]string{
		"=HYPERLINK(\"http://x\")": "'=HYPERLINK(\"http://x\")",
		"+1+1":                     "'+1+1",
		"-2+3":                     "'-2+3",
		"@SUM(A1)":                 "'@SUM(A1)",
		"\tindented":               "'\tindented",
		"\rreturn":                 "'\rreturn",
		"":                         "",
		"plain text":               "plain text",
		"a=b":                      "a=b",
		"'quoted":                  "''quoted",
		"12":                       "12",
		`{"amountUsdCents":"1"}`:   `{"amountUsdCents":"1"}`,
	} {
		if got := csvCell(in); got != want {
			t.Errorf("csvCell(%q) = %q, want %q", in, got, want)
		}
	}
}

// The export escapes every cell an actor could have written: a reason, a
// username, a post.
func TestAuditExportCSVEscapesFormulas(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	h.audit.events = func(_ context.Context, r auditapi.EventsRequest) (auditapi.EventsPage, error) {
		if r.After > 0 {
			return auditapi.EventsPage{}, nil
		}
		return auditapi.EventsPage{Items: []auditapi.ArchivedEvent{{Seq: 1, ID: dhakaCase, CaseID: dhakaCase, Type: "RequestWithdrawn",
			At: t0, Actor: assist.Actor{Username: "@evil", Role: "requester", Post: "-BGD"}, Reason: "=cmd|' /C calc'!A0",
			DecodeError: "\tx"}}, Next: 1}, nil
	}
	w := h.get("aud", "/v1/audit/export?format=csv")
	recs, err := csv.NewReader(w.Body).ReadAll()
	if err != nil || len(recs) != 2 {
		t.Fatalf("csv %v, %v", recs, err)
	}
	row := recs[1]
	for col, want := range map[string]string{"reason": "'=cmd|' /C calc'!A0", "actor_username": "'@evil",
		"actor_post": "'-BGD", "decode_error": "'\tx", "seq": "1", "type": "RequestWithdrawn"} {
		if got := row[slices.Index(csvHeader, col)]; got != want {
			t.Errorf("%s = %q, want %q", col, got, want)
		}
	}
}
