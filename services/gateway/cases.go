package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Request bodies. Decoding is strict (decodeJSON): unknown fields are
// refused, so every field a client may send is here. Their schemas are
// reflected from them (openapi.go): a field is required unless it is a
// pointer or omitempty (omitempty means nothing to decoding: it marks an
// optional field); a pointer may be null, which is as if it were absent.
// The decoder checks the shape; the handlers and services check what is
// required and the values, naming every field at fault at once.
type (
	fileBody struct {
		Post          string          `json:"post" jsonschema_description:"one of your posts"`
		Category      assist.Category `json:"category"`
		Urgency       assist.Urgency  `json:"urgency"`
		AmountCents   int64           `json:"amount_usd_cents" jsonschema_description:"amount requested, in integer US cents"`
		Justification string          `json:"justification"`
		Beneficiary   beneficiaryJSON `json:"beneficiary"`
		PayeeID       string          `json:"payee_id,omitempty" jsonschema_description:"the payee to pay, when known"`
	}
	amendBody struct {
		Category      *assist.Category `json:"category"`
		Urgency       *assist.Urgency  `json:"urgency"`
		AmountCents   *int64           `json:"amount_usd_cents" jsonschema_description:"new amount, in integer US cents"`
		Justification *string          `json:"justification"`
		Beneficiary   *beneficiaryJSON `json:"beneficiary"`
		PayeeID       *string          `json:"payee_id"`
	}
	reasonBody struct {
		Reason string `json:"reason"`
	}
	answerBody struct {
		Answer string `json:"answer"`
	}
	approveBody struct {
		AmountCents int64  `json:"amount_usd_cents" jsonschema_description:"amount approved, at most the amount requested (a second approval: at most the first's), in integer US cents"`
		FundID      string `json:"fund_id,omitempty" jsonschema_description:"the fund to pay from; required unless this is the second approval, which uses the first's"`
		PayeeID     string `json:"payee_id,omitempty" jsonschema_description:"required when the request names no payee"`
		Note        string `json:"note,omitempty"`
	}
	questionBody struct {
		Question string `json:"question"`
	}
	// noBody is the body of a command without arguments: empty, or {}.
	noBody struct{}
)

// seesAllCases reports whether u reads every post's cases.
func seesAllCases(u Account) bool {
	return u.Has(approver) || u.Has(finance) || u.Has(auditor)
}

// ofPost reports whether u is a requester at post.
func ofPost(u Account, post string) bool {
	return u.Has(requester) && slices.Contains(u.Posts, post)
}

// visibleCase reads a case the user may see.
//
// Errors: CodeNotFound when it does not exist or is not visible to u (a
// requester of another post learns nothing more than that); the
// service's errors.
func (s *server) visibleCase(r *http.Request, u Account, id string) (caseview.Case, error) {
	c, err := s.intake.Get(r.Context(), id)
	switch {
	case assist.IsCode(err, assist.CodeNotFound):
		return caseview.Case{}, notFound("request", id)
	case err != nil:
		return caseview.Case{}, err
	case c.ID == "":
		return caseview.Case{}, errors.New("intake answered no case")
	case !seesAllCases(u) && !ofPost(u, c.Post):
		return caseview.Case{}, notFound("request", id)
	}
	return c, nil
}

// ownCase reads a case of one of u's posts, for a requester's command.
//
// Errors: CodeNotFound when it does not exist or is another post's.
func (s *server) ownCase(r *http.Request, u Account, id string) (caseview.Case, error) {
	c, err := s.visibleCase(r, u, id)
	if err != nil {
		return caseview.Case{}, err
	}
	if !ofPost(u, c.Post) {
		return caseview.Case{}, notFound("request", id)
	}
	return c, nil
}

// caseAnswer is a command's answer: the case after it.
func caseAnswer(c caseview.Case, err error) (caseJSON, error) {
	if err != nil {
		return caseJSON{}, err
	}
	if c.ID == "" {
		return caseJSON{}, errors.New("the service answered no case")
	}
	return toCaseJSON(c), nil
}

func requesterActor(u Account, post string) assist.Actor {
	return assist.Actor{Username: u.Username, Role: requester, Post: post}
}

func approverActor(u Account) assist.Actor {
	return assist.Actor{Username: u.Username, Role: approver}
}

// fileRequest is POST /v1/requests.
func (s *server) fileRequest(r *http.Request, c command, in fileBody) (caseJSON, error) {
	switch {
	case in.Post == "":
		return caseJSON{}, invalid("post", "is required")
	case !assist.ValidPost(in.Post):
		return caseJSON{}, invalid("post", "must be up to %d characters A-Z, 0-9, '-' or '_'", assist.MaxPost)
	case !ofPost(c.User, in.Post):
		return caseJSON{}, assist.Errorf(assist.CodeForbidden, "you do not file for post %q", in.Post)
	}
	return caseAnswer(s.intake.File(r.Context(), intakeapi.FileRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, in.Post), Post: in.Post, Category: string(in.Category),
		Urgency: string(in.Urgency), AmountCents: in.AmountCents, Justification: in.Justification,
		Beneficiary: toBeneficiary(in.Beneficiary), PayeeID: in.PayeeID, IdempotencyKeyHash: c.KeyHash,
		RequestHash: c.RequestHash,
	}))
}

// listRequestsQuery is the query of GET /v1/requests.
type listRequestsQuery struct {
	Status  assist.State   `query:"status"`
	Post    string         `query:"post" maxLength:"64" doc:"only this post's requests"`
	Urgency assist.Urgency `query:"urgency"`
	pageQuery
}

// listRequests is GET /v1/requests.
func (s *server) listRequests(r *http.Request, q listRequestsQuery) (page[caseJSON], error) {
	f := intakeapi.ListFilter{Status: string(q.Status), Post: q.Post, Urgency: string(q.Urgency),
		Limit: int(q.Limit), Cursor: string(q.Cursor)}
	u := userOf(r)
	if !seesAllCases(u) {
		if len(u.Posts) == 0 {
			return page[caseJSON]{Items: []caseJSON{}}, nil
		}
		f.Posts = u.Posts
	}
	p, err := s.intake.List(r.Context(), f)
	if err != nil {
		return page[caseJSON]{}, err
	}
	return page[caseJSON]{Items: toCasesJSON(p.Items), NextCursor: p.NextCursor}, nil
}

// getRequest is GET /v1/requests/{id}.
func (s *server) getRequest(r *http.Request) (caseJSON, error) {
	u := userOf(r)
	c, err := s.visibleCase(r, u, chi.URLParam(r, "id"))
	if err != nil {
		return caseJSON{}, err
	}
	j := toCaseJSON(c)
	if seesAllCases(u) {
		dups := nonNil(c.PossibleDuplicateOf)
		j.PossibleDuplicateOf = &dups
	}
	return j, nil
}

// amendRequest is POST /v1/requests/{id}/amend.
func (s *server) amendRequest(r *http.Request, c command, in amendBody) (caseJSON, error) {
	cs, err := s.ownCase(r, c.User, chi.URLParam(r, "id"))
	if err != nil {
		return caseJSON{}, err
	}
	var b *intakeapi.Beneficiary
	if in.Beneficiary != nil {
		bb := toBeneficiary(*in.Beneficiary)
		b = &bb
	}
	return caseAnswer(s.intake.Amend(r.Context(), intakeapi.AmendRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, cs.Post), CaseID: cs.ID, Category: (*string)(in.Category),
		Urgency: (*string)(in.Urgency), AmountCents: in.AmountCents, Justification: in.Justification,
		Beneficiary: b, PayeeID: in.PayeeID,
	}))
}

// withdrawRequest is POST /v1/requests/{id}/withdraw.
func (s *server) withdrawRequest(r *http.Request, c command, in reasonBody) (caseJSON, error) {
	cs, err := s.ownCase(r, c.User, chi.URLParam(r, "id"))
	if err != nil {
		return caseJSON{}, err
	}
	return caseAnswer(s.intake.Withdraw(r.Context(), intakeapi.WithdrawRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, cs.Post), CaseID: cs.ID, Reason: in.Reason,
	}))
}

// eraseRequest is POST /v1/requests/{id}/erase: an admin erases a case's
// personal data, whatever its state.
func (s *server) eraseRequest(r *http.Request, c command, in reasonBody) (caseJSON, error) {
	return caseAnswer(s.intake.Erase(r.Context(), intakeapi.EraseRequest{
		CommandID: c.ID, Actor: assist.Actor{Username: c.User.Username, Role: admin}, CaseID: chi.URLParam(r, "id"), Reason: in.Reason,
	}))
}

// answerRequest is POST /v1/requests/{id}/info.
func (s *server) answerRequest(r *http.Request, c command, in answerBody) (caseJSON, error) {
	cs, err := s.ownCase(r, c.User, chi.URLParam(r, "id"))
	if err != nil {
		return caseJSON{}, err
	}
	return caseAnswer(s.intake.Answer(r.Context(), intakeapi.AnswerRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, cs.Post), CaseID: cs.ID, Answer: in.Answer,
	}))
}

// history is GET /v1/requests/{id}/history.
func (s *server) history(r *http.Request) (page[eventJSON], error) {
	u, id := userOf(r), chi.URLParam(r, "id")
	if !seesAllCases(u) {
		if _, err := s.visibleCase(r, u, id); err != nil {
			return page[eventJSON]{}, err
		}
	}
	evs, err := s.audit.History(r.Context(), id)
	if err != nil {
		return page[eventJSON]{}, err
	}
	items := mapSlice(evs, toEventJSON)
	if !seesAllCases(u) {
		for i := range items {
			items[i].Data = requesterData(items[i].Data)
		}
	}
	return page[eventJSON]{Items: items}, nil
}

// requesterEventData are the fields of an event's data that a requester
// (without approver, finance or auditor role) sees in a case's history:
// what was asked, decided and asked back. Everything else — the fund's
// available balance the approver saw, the policy's caps, holds, funds,
// the provider's references and errors, hashes, sealed data, and any field
// added later — is for the roles that see every case. An allowlist, so
// that a new field is hidden until someone decides a requester may see it.
var requesterEventData = map[string]bool{
	"post": true, "category": true, "urgency": true, "amount_usd_cents": true, "justification": true,
	"payee_id": true, "deadline": true, "question": true, "answer": true, "expires_at": true, "expired": true,
	"note": true,
}

// requesterData keeps of an event's data the fields of
// requesterEventData; data that is not an object becomes null.
func requesterData(data json.RawMessage) json.RawMessage {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return json.RawMessage("null")
	}
	for k := range fields {
		if !requesterEventData[k] {
			delete(fields, k)
		}
	}
	out, err := json.Marshal(fields)
	if err != nil {
		return json.RawMessage("null")
	}
	return out
}

// asOfQuery is the query of GET /v1/requests/{id}/as-of.
type asOfQuery struct {
	T time.Time `query:"t,required" doc:"the time, RFC 3339"`
}

// asOf is GET /v1/requests/{id}/as-of?t=.
func (s *server) asOf(r *http.Request, q asOfQuery) (caseJSON, error) {
	c, err := s.audit.AsOf(r.Context(), chi.URLParam(r, "id"), q.T)
	if err != nil {
		return caseJSON{}, err
	}
	if c.ID == "" {
		return caseJSON{}, errors.New("audit answered no case")
	}
	return toCaseJSON(c), nil
}

// beneficiaryJSON is a case's personal data: sent when filing or amending,
// stored sealed, answered opened; never part of a case.
type beneficiaryJSON struct {
	Reference   string `json:"reference" jsonschema_description:"the post's reference for the person"`
	Name        string `json:"name,omitempty"`
	DateOfBirth string `json:"date_of_birth,omitempty" jsonschema_description:"YYYY-MM-DD"`
	Nationality string `json:"nationality,omitempty"`
	Contact     string `json:"contact,omitempty"`
}

func toBeneficiary(b beneficiaryJSON) intakeapi.Beneficiary {
	return intakeapi.Beneficiary{Reference: b.Reference, Name: b.Name, DateOfBirth: b.DateOfBirth,
		Nationality: b.Nationality, Contact: b.Contact}
}

func toBeneficiaryJSON(b intakeapi.Beneficiary) beneficiaryJSON {
	return beneficiaryJSON{Reference: b.Reference, Name: b.Name, DateOfBirth: b.DateOfBirth,
		Nationality: b.Nationality, Contact: b.Contact}
}

// beneficiary is GET /v1/requests/{id}/beneficiary: an approver, or a
// requester of the case's post, reads the personal data; intake records
// every read in the access log before it answers.
func (s *server) beneficiary(r *http.Request) (beneficiaryJSON, error) {
	u, id := userOf(r), chi.URLParam(r, "id")
	actor := approverActor(u)
	if !u.Has(approver) {
		c, err := s.ownCase(r, u, id)
		if err != nil {
			return beneficiaryJSON{}, err
		}
		actor = requesterActor(u, c.Post)
	}
	b, err := s.intake.Personal(r.Context(), intakeapi.PersonalRequest{Actor: actor, CaseID: id})
	if err != nil {
		return beneficiaryJSON{}, err
	}
	return toBeneficiaryJSON(b), nil
}

// queue is GET /v1/queue.
func (s *server) queue(r *http.Request, q pageQuery) (page[queueItemJSON], error) {
	p, err := s.approval.Queue(r.Context(), approvalapi.QueueRequest{Limit: int(q.Limit), Cursor: string(q.Cursor)})
	if err != nil {
		return page[queueItemJSON]{}, err
	}
	// The queue keeps its order and flags; the cases are intake's.
	ids := make([]string, len(p.Items))
	for i, it := range p.Items {
		ids[i] = it.CaseID
	}
	cases, err := s.intake.Cases(r.Context(), ids)
	if err != nil {
		return page[queueItemJSON]{}, err
	}
	return toQueueJSON(p, cases.Items), nil
}

func caseCommand(r *http.Request, c command) approvalapi.CaseCommand {
	return approvalapi.CaseCommand{CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id")}
}

// claim is POST /v1/requests/{id}/claim.
func (s *server) claim(r *http.Request, c command, _ noBody) (caseJSON, error) {
	return caseAnswer(s.approval.Claim(r.Context(), caseCommand(r, c)))
}

// release is POST /v1/requests/{id}/release.
func (s *server) release(r *http.Request, c command, _ noBody) (caseJSON, error) {
	return caseAnswer(s.approval.Release(r.Context(), caseCommand(r, c)))
}

// approve is POST /v1/requests/{id}/approve.
func (s *server) approve(r *http.Request, c command, in approveBody) (caseJSON, error) {
	return caseAnswer(s.approval.Approve(r.Context(), approvalapi.ApproveRequest{
		CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id"),
		AmountCents: in.AmountCents, FundID: in.FundID, PayeeID: in.PayeeID, Note: in.Note,
	}))
}

// reject is POST /v1/requests/{id}/reject.
func (s *server) reject(r *http.Request, c command, in reasonBody) (caseJSON, error) {
	return caseAnswer(s.approval.Reject(r.Context(), approvalapi.RejectRequest{
		CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id"), Reason: in.Reason,
	}))
}

// requestInfo is POST /v1/requests/{id}/request-info.
func (s *server) requestInfo(r *http.Request, c command, in questionBody) (caseJSON, error) {
	return caseAnswer(s.approval.RequestInfo(r.Context(), approvalapi.RequestInfoRequest{
		CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id"), Question: in.Question,
	}))
}
