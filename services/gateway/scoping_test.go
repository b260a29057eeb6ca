package gateway

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// TestPostScoping: a requester sees and changes only its posts' requests;
// another post's request is "not found", exactly like one that does not
// exist.
func TestPostScoping(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		other := "/v1/requests/" + dhakaCase // raj is at IND-MUMBAI
		missing := "/v1/requests/" + noCase

		t.Run("reads", func(t *testing.T) {
			for _, suffix := range []string{"", "/history", "/beneficiary"} {
				h.calls.reset()
				got := decodeProblem(t, h.get("raj", other+suffix), http.StatusNotFound)
				want := decodeProblem(t, h.get("raj", missing+suffix), http.StatusNotFound)
				if got.Detail == "" || got.Title != want.Title || got.Code != want.Code {
					t.Errorf("%s: %+v vs missing %+v", suffix, got, want)
				}
				for _, c := range []string{"audit.History", "intake.Personal"} {
					if h.calls.count(c) != 0 {
						t.Errorf("%s: %s called for another post's request", suffix, c)
					}
				}
				// The request's own post reads it.
				if w := h.get("ana", other+suffix); w.Code != http.StatusOK {
					t.Errorf("ana %s: %d %s", suffix, w.Code, w.Body)
				}
			}
		})

		t.Run("commands", func(t *testing.T) {
			for _, action := range []string{"amend", "withdraw", "info"} {
				h.calls.reset()
				decodeProblem(t, h.post("raj", other+"/"+action, validBodies["/v1/requests/{id}/"+action]), http.StatusNotFound)
				if got := h.calls.list(); !slices.Equal(got, []string{"intake.Get"}) {
					t.Errorf("%s: calls %v, want only the visibility read", action, got)
				}
			}
		})

		t.Run("the actor's post is the request's", func(t *testing.T) {
			var got intakeapi.WithdrawRequest
			h.intake.withdraw = func(_ context.Context, r intakeapi.WithdrawRequest) (caseview.Case, error) {
				got = r
				return sampleCase(r.CaseID, "BGD-DHAKA"), nil
			}
			decodeJSONBody[caseJSON](t, h.post("ana", other+"/withdraw", `{"reason":"r"}`), http.StatusOK)
			if got.Actor != (assist.Actor{Username: "ana", Role: requester, Post: "BGD-DHAKA"}) || got.CaseID != dhakaCase || got.Reason != "r" {
				t.Fatalf("withdraw request %+v", got)
			}
		})

		t.Run("filing for another post", func(t *testing.T) {
			h.calls.reset()
			body := validBodies["/v1/requests"] // BGD-DHAKA
			decodeProblem(t, h.post("raj", "/v1/requests", body), http.StatusForbidden)
			p := decodeProblem(t, h.post("raj", "/v1/requests", `{"category":"shelter"}`), http.StatusBadRequest)
			if fs := fieldsOf(p); !slices.Equal(fs, []string{"post"}) {
				t.Fatalf("fields %v", fs)
			}
			if n := h.calls.count("intake.File"); n != 0 {
				t.Fatalf("File called %d times", n)
			}
			var got intakeapi.FileRequest
			h.intake.file = func(_ context.Context, r intakeapi.FileRequest) (caseview.Case, error) {
				got = r
				return sampleCase(r.CommandID, r.Post), nil
			}
			w := h.post("ana", "/v1/requests", body)
			c := decodeJSONBody[caseJSON](t, w, http.StatusCreated)
			if got.Actor != (assist.Actor{Username: "ana", Role: requester, Post: "BGD-DHAKA"}) || got.Post != "BGD-DHAKA" ||
				got.Category != "shelter" || got.AmountCents != 25000 || got.Beneficiary.Reference != "REF-1" ||
				got.Beneficiary.Name != "Person Name" || got.PayeeID != payeeID || got.IdempotencyKeyHash != nil {
				t.Fatalf("file request %+v", got)
			}
			if c.ID != got.CommandID || w.Header().Get("Location") != "/v1/requests/"+got.CommandID {
				t.Fatalf("case %s, location %q, command %s", c.ID, w.Header().Get("Location"), got.CommandID)
			}
		})

		t.Run("lists", func(t *testing.T) {
			var filters []intakeapi.ListFilter
			list := h.intake.list
			h.intake.list = func(ctx context.Context, f intakeapi.ListFilter) (intakeapi.ListPage, error) {
				filters = append(filters, f)
				return list(ctx, f)
			}
			for user, want := range map[string][]string{"ana": {dhakaCase}, "raj": {mumbaiCase},
				"olu": {dhakaCase, mumbaiCase}, "fin": {dhakaCase, mumbaiCase}, "aud": {dhakaCase, mumbaiCase},
				"ana-aud": {dhakaCase, mumbaiCase}} {
				filters = nil
				p := decodeJSONBody[page[caseJSON]](t, h.get(user, "/v1/requests?status=submitted&post=BGD-DHAKA&urgency=critical&limit=10"), http.StatusOK)
				var ids []string
				for _, c := range p.Items {
					ids = append(ids, c.ID)
				}
				if !slices.Equal(ids, want) {
					t.Errorf("%s sees %v, want %v", user, ids, want)
				}
				f := filters[0]
				if f.Status != "submitted" || f.Post != "BGD-DHAKA" || f.Urgency != "critical" || f.Limit != 10 {
					t.Errorf("%s: filter %+v", user, f)
				}
				if scoped := user == "ana" || user == "raj"; scoped != (len(f.Posts) > 0) {
					t.Errorf("%s: posts %v", user, f.Posts)
				}
			}
			// A requester bound to no post sees nothing, and the list is
			// not even asked (an empty Posts would mean every post).
			h.calls.reset()
			p := decodeJSONBody[page[caseJSON]](t, h.get("nopost", "/v1/requests"), http.StatusOK)
			if len(p.Items) != 0 || h.calls.count("intake.List") != 0 {
				t.Fatalf("no-post requester: %+v, calls %v", p, h.calls.list())
			}
		})

		t.Run("a requester who is also auditor reads everything but opens only its posts", func(t *testing.T) {
			decodeJSONBody[caseJSON](t, h.get("ana-aud", "/v1/requests/"+mumbaiCase), http.StatusOK)
			decodeProblem(t, h.get("ana-aud", "/v1/requests/"+mumbaiCase+"/beneficiary"), http.StatusNotFound)
			decodeJSONBody[beneficiaryJSON](t, h.get("ana-aud", "/v1/requests/"+dhakaCase+"/beneficiary"), http.StatusOK)
		})

		t.Run("beneficiary actor", func(t *testing.T) {
			var got []intakeapi.PersonalRequest
			h.intake.personal = func(_ context.Context, r intakeapi.PersonalRequest) (intakeapi.Beneficiary, error) {
				got = append(got, r)
				return intakeapi.Beneficiary{Reference: "REF-1", Name: "Person Name"}, nil
			}
			b := decodeJSONBody[beneficiaryJSON](t, h.get("olu", other+"/beneficiary"), http.StatusOK)
			decodeJSONBody[beneficiaryJSON](t, h.get("ana", other+"/beneficiary"), http.StatusOK)
			if b.Reference != "REF-1" || b.Name != "Person Name" {
				t.Fatalf("beneficiary %+v", b)
			}
			want := []intakeapi.PersonalRequest{
				{Actor: assist.Actor{Username: "olu", Role: approver}, CaseID: dhakaCase},
				{Actor: assist.Actor{Username: "ana", Role: requester, Post: "BGD-DHAKA"}, CaseID: dhakaCase},
			}
			if !slices.Equal(got, want) {
				t.Fatalf("personal requests %+v, want %+v", got, want)
			}
		})
	})
}
