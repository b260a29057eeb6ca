package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// TestServiceErrors: each error code a service answers with becomes its
// status and a problem; internal errors hide their detail and are logged
// once.
func TestServiceErrors(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		h.offContract = []int{http.StatusTooManyRequests} // no service rate-limits; the mapping is tested all the same
		for _, c := range []struct {
			err    error
			status int
		}{
			{assist.Errorf(assist.CodeInvalid, "bad"), 400},
			{assist.Errorf(assist.CodeUnauthenticated, "who"), 401},
			{assist.Errorf(assist.CodeForbidden, "you filed this request"), 403},
			{assist.Errorf(assist.CodeNotFound, "no request"), 404},
			{assist.Errorf(assist.CodeConflict, "already claimed by mei"), 409},
			{assist.Errorf(assist.CodeTooLarge, "too large"), 413},
			{assist.Errorf(assist.CodeIdempotencyMismatch, "mismatch"), 422},
			{assist.Errorf(assist.CodeRateLimited, "slow"), 429},
			{assist.Errorf(assist.CodeUnavailable, "approval is not answering"), 503},
			{fmt.Errorf("approve: %w", assist.Errorf(assist.CodeConflict, "wrapped")), 409},
		} {
			h.approval.approve = func(context.Context, approvalapi.ApproveRequest) (caseview.Case, error) {
				return caseview.Case{}, c.err
			}
			w := h.post("olu", "/v1/requests/"+dhakaCase+"/approve", validBodies["/v1/requests/{id}/approve"])
			p := decodeProblem(t, w, c.status)
			var ae *assist.Error
			errors.As(c.err, &ae)
			wantDetail := ae.Message
			if c.status == 503 {
				// What is down is not the client's business: it is logged.
				wantDetail = "EVA cannot reach one of its parts right now; try again in a moment"
			}
			if p.Detail != wantDetail || p.Code != ae.Code || p.Type != problemType+string(ae.Code) {
				t.Errorf("%v: problem %+v", c.err, p)
			}
			if (c.status == 429 || c.status == 503) && w.Header().Get("Retry-After") == "" {
				t.Errorf("%d without Retry-After", c.status)
			}
		}
		h.offContract = nil

		t.Run("insufficient funds names the available amount", func(t *testing.T) {
			avail := int64(12345)
			h.approval.approve = func(context.Context, approvalapi.ApproveRequest) (caseview.Case, error) {
				return caseview.Case{}, &assist.Error{Code: assist.CodeInsufficientFunds, Message: "the fund cannot cover $200.00",
					AvailableUSDCents: &avail}
			}
			w := h.post("olu", "/v1/requests/"+dhakaCase+"/approve", validBodies["/v1/requests/{id}/approve"])
			decodeProblem(t, w, http.StatusConflict)
			var raw map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			if raw["available_usd_cents"] != float64(12345) || raw["code"] != "insufficient_funds" {
				t.Fatalf("problem %s", w.Body)
			}
		})

		t.Run("field errors pass through", func(t *testing.T) {
			h.intake.file = func(context.Context, intakeapi.FileRequest) (caseview.Case, error) {
				var p assist.Problems
				p.Add("amount_usd_cents", "$9,000.00 exceeds the per-case cap")
				p.Add("beneficiary.reference", "is required")
				return caseview.Case{}, p.Err()
			}
			p := decodeProblem(t, h.post("ana", "/v1/requests", validBodies["/v1/requests"]), http.StatusBadRequest)
			if fs := fieldsOf(p); len(fs) != 2 || fs[0] != "amount_usd_cents" || fs[1] != "beneficiary.reference" {
				t.Fatalf("fields %v", fs)
			}
		})

		t.Run("internal errors are hidden and logged once", func(t *testing.T) {
			for _, err := range []error{errBoom, assist.Errorf(assist.CodeInternal, "secret detail"), assist.Errorf("weird_code", "?")} {
				h.logs.TakeAll()
				h.disb.funds = func(context.Context, disbursementapi.ListRequest) (disbursementapi.FundsPage, error) {
					return disbursementapi.FundsPage{}, err
				}
				w := h.get("fin", "/v1/funds")
				p := decodeProblem(t, w, http.StatusInternalServerError)
				if p.Detail != "internal error" || p.Code != assist.CodeInternal || strings.Contains(w.Body.String(), "10.0.0.7") ||
					strings.Contains(w.Body.String(), "secret") {
					t.Fatalf("internal error leaked: %s", w.Body)
				}
				entries := h.logs.FilterMessage("request failed").All()
				if len(entries) != 1 || h.logs.Len() != 1 {
					t.Fatalf("%d log entries (%d failures) for one internal error", h.logs.Len(), len(entries))
				}
				if got := entries[0].ContextMap()["route"]; got != "/v1/funds" {
					t.Fatalf("logged route %v", got)
				}
			}
		})

		t.Run("a panic is a 500 problem, logged", func(t *testing.T) {
			h.logs.TakeAll()
			h.disb.payees = func(context.Context, disbursementapi.ListRequest) (disbursementapi.PayeesPage, error) {
				panic("nil map somewhere")
			}
			p := decodeProblem(t, h.get("fin", "/v1/payees"), http.StatusInternalServerError)
			if p.Detail != "internal error" {
				t.Fatalf("problem %+v", p)
			}
			entries := h.logs.FilterMessage("request failed").All()
			if len(entries) != 1 || !strings.Contains(fmt.Sprint(entries[0].ContextMap()["error"]), "nil map somewhere") {
				t.Fatalf("panic not logged: %+v", h.logs.All())
			}
			// The server goes on.
			decodeJSONBody[meResponse](t, h.get("fin", "/v1/me"), http.StatusOK)
		})

		t.Run("a service answering nothing is internal, not a crash", func(t *testing.T) {
			h.approval.claim = func(context.Context, approvalapi.CaseCommand) (caseview.Case, error) { return caseview.Case{}, nil }
			decodeProblem(t, h.post("olu", "/v1/requests/"+dhakaCase+"/claim", ""), http.StatusInternalServerError)
		})
	})
}

func TestToProblem(t *testing.T) {
	for code, status := range statusOf {
		p, internal := toProblem(assist.Errorf(code, "m"))
		if p.Status != status || internal != (status == 500) {
			t.Errorf("%s: %d internal=%v", code, p.Status, internal)
		}
	}
	// Every code of the vocabulary has a status.
	for _, code := range []assist.Code{assist.CodeInvalid, assist.CodeUnauthenticated, assist.CodeForbidden,
		assist.CodeNotFound, assist.CodeGone, assist.CodeConflict, assist.CodeInsufficientFunds, assist.CodeTooLarge,
		assist.CodeIdempotencyMismatch, assist.CodeRateLimited, assist.CodeUnavailable, assist.CodeInternal} {
		if _, ok := statusOf[code]; !ok {
			t.Errorf("no status for %s", code)
		}
	}
}
