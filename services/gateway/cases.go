package gateway

import (
	"errors"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Request bodies. Decoding is strict (decodeJSON): unknown fields are
// refused, so every field a client may send is here.
type (
	fileBody struct {
		Post          string                `json:"post"`
		Category      string                `json:"category"`
		Urgency       string                `json:"urgency"`
		AmountCents   int64                 `json:"amount_usd_cents"`
		Justification string                `json:"justification"`
		Beneficiary   intakeapi.Beneficiary `json:"beneficiary"`
		PayeeID       string                `json:"payee_id"`
	}
	amendBody struct {
		Category      *string                `json:"category"`
		Urgency       *string                `json:"urgency"`
		AmountCents   *int64                 `json:"amount_usd_cents"`
		Justification *string                `json:"justification"`
		Beneficiary   *intakeapi.Beneficiary `json:"beneficiary"`
		PayeeID       *string                `json:"payee_id"`
	}
	reasonBody struct {
		Reason string `json:"reason"`
	}
	answerBody struct {
		Answer string `json:"answer"`
	}
	approveBody struct {
		AmountCents int64  `json:"amount_usd_cents"`
		FundID      string `json:"fund_id"`
		PayeeID     string `json:"payee_id"`
		Note        string `json:"note"`
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

func caseReply(status int, c caseview.Case, err error) (reply, error) {
	if err != nil {
		return reply{}, err
	}
	if c.ID == "" {
		return reply{}, errors.New("the service answered no case")
	}
	return reply{status: status, body: toCaseJSON(c)}, nil
}

func requesterActor(u Account, post string) assist.Actor {
	return assist.Actor{Username: u.Username, Role: requester, Post: post}
}

func approverActor(u Account) assist.Actor {
	return assist.Actor{Username: u.Username, Role: approver}
}

// fileRequest is POST /v1/requests.
func (s *server) fileRequest(r *http.Request, c command, in fileBody) (reply, error) {
	switch {
	case in.Post == "":
		return reply{}, invalid("post", "is required")
	case !assist.ValidPost(in.Post):
		return reply{}, invalid("post", "must be up to %d characters A-Z, 0-9, '-' or '_'", assist.MaxPost)
	case !ofPost(c.User, in.Post):
		return reply{}, assist.Errorf(assist.CodeForbidden, "you do not file for post %q", in.Post)
	}
	cs, err := s.intake.File(r.Context(), intakeapi.FileRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, in.Post), Post: in.Post, Category: in.Category,
		Urgency: in.Urgency, AmountCents: in.AmountCents, Justification: in.Justification,
		Beneficiary: in.Beneficiary, PayeeID: in.PayeeID, IdempotencyKeyHash: c.KeyHash, RequestHash: c.RequestHash,
	})
	rep, err := caseReply(http.StatusCreated, cs, err)
	if err == nil {
		rep.location = "/v1/requests/" + cs.ID
	}
	return rep, err
}

// listRequests is GET /v1/requests.
func (s *server) listRequests(r *http.Request) (any, error) {
	q := newQuery(r)
	f := intakeapi.ListFilter{
		Status:  enum(q, "status", assist.States),
		Post:    q.one("post"),
		Urgency: enum(q, "urgency", assist.Urgencies),
		Limit:   q.limit(),
		Cursor:  q.cursor(),
	}
	if len(f.Post) > assist.MaxPost {
		q.fail("post", "must be at most %d characters", assist.MaxPost)
	}
	if q.err != nil {
		return nil, q.err
	}
	u := userOf(r)
	if !seesAllCases(u) {
		if len(u.Posts) == 0 {
			return page[caseJSON]{Items: []caseJSON{}}, nil
		}
		f.Posts = u.Posts
	}
	p, err := s.intake.List(r.Context(), f)
	if err != nil {
		return nil, err
	}
	return page[caseJSON]{Items: toCasesJSON(p.Items), NextCursor: p.NextCursor}, nil
}

// getRequest is GET /v1/requests/{id}.
func (s *server) getRequest(r *http.Request) (any, error) {
	c, err := s.visibleCase(r, userOf(r), chi.URLParam(r, "id"))
	if err != nil {
		return nil, err
	}
	return toCaseJSON(c), nil
}

// amendRequest is POST /v1/requests/{id}/amend.
func (s *server) amendRequest(r *http.Request, c command, in amendBody) (reply, error) {
	cs, err := s.ownCase(r, c.User, chi.URLParam(r, "id"))
	if err != nil {
		return reply{}, err
	}
	out, err := s.intake.Amend(r.Context(), intakeapi.AmendRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, cs.Post), CaseID: cs.ID, Category: in.Category,
		Urgency: in.Urgency, AmountCents: in.AmountCents, Justification: in.Justification,
		Beneficiary: in.Beneficiary, PayeeID: in.PayeeID,
	})
	return caseReply(http.StatusOK, out, err)
}

// withdrawRequest is POST /v1/requests/{id}/withdraw.
func (s *server) withdrawRequest(r *http.Request, c command, in reasonBody) (reply, error) {
	cs, err := s.ownCase(r, c.User, chi.URLParam(r, "id"))
	if err != nil {
		return reply{}, err
	}
	out, err := s.intake.Withdraw(r.Context(), intakeapi.WithdrawRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, cs.Post), CaseID: cs.ID, Reason: in.Reason,
	})
	return caseReply(http.StatusOK, out, err)
}

// answerRequest is POST /v1/requests/{id}/info.
func (s *server) answerRequest(r *http.Request, c command, in answerBody) (reply, error) {
	cs, err := s.ownCase(r, c.User, chi.URLParam(r, "id"))
	if err != nil {
		return reply{}, err
	}
	out, err := s.intake.Answer(r.Context(), intakeapi.AnswerRequest{
		CommandID: c.ID, Actor: requesterActor(c.User, cs.Post), CaseID: cs.ID, Answer: in.Answer,
	})
	return caseReply(http.StatusOK, out, err)
}

// history is GET /v1/requests/{id}/history.
func (s *server) history(r *http.Request) (any, error) {
	u, id := userOf(r), chi.URLParam(r, "id")
	if !seesAllCases(u) {
		if _, err := s.visibleCase(r, u, id); err != nil {
			return nil, err
		}
	}
	evs, err := s.audit.History(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return page[eventJSON]{Items: mapSlice(evs, toEventJSON)}, nil
}

// asOf is GET /v1/requests/{id}/as-of?t=.
func (s *server) asOf(r *http.Request) (any, error) {
	q := newQuery(r)
	t := q.timeParam("t")
	if q.err != nil {
		return nil, q.err
	}
	c, err := s.audit.AsOf(r.Context(), chi.URLParam(r, "id"), t)
	if err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, errors.New("audit answered no case")
	}
	return toCaseJSON(c), nil
}

// beneficiaryJSON is a case's personal data, opened.
type beneficiaryJSON struct {
	Reference   string `json:"reference"`
	Name        string `json:"name,omitempty"`
	DateOfBirth string `json:"date_of_birth,omitempty"`
	Nationality string `json:"nationality,omitempty"`
	Contact     string `json:"contact,omitempty"`
}

// beneficiary is GET /v1/requests/{id}/beneficiary: an approver, or a
// requester of the case's post, reads the personal data; intake records
// every read in the access log before it answers.
func (s *server) beneficiary(r *http.Request) (any, error) {
	u, id := userOf(r), chi.URLParam(r, "id")
	actor := approverActor(u)
	if !u.Has(approver) {
		c, err := s.ownCase(r, u, id)
		if err != nil {
			return nil, err
		}
		actor = requesterActor(u, c.Post)
	}
	b, err := s.intake.Personal(r.Context(), intakeapi.PersonalRequest{Actor: actor, CaseID: id})
	if err != nil {
		return nil, err
	}
	return beneficiaryJSON{Reference: b.Reference, Name: b.Name, DateOfBirth: b.DateOfBirth,
		Nationality: b.Nationality, Contact: b.Contact}, nil
}

// queue is GET /v1/queue.
func (s *server) queue(r *http.Request) (any, error) {
	q := newQuery(r)
	req := approvalapi.QueueRequest{Limit: q.limit(), Cursor: q.cursor()}
	if q.err != nil {
		return nil, q.err
	}
	p, err := s.approval.Queue(r.Context(), req)
	if err != nil {
		return nil, err
	}
	// The queue keeps its order and flags; the cases are intake's.
	ids := make([]string, len(p.Items))
	for i, it := range p.Items {
		ids[i] = it.CaseID
	}
	cases, err := s.intake.Cases(r.Context(), ids)
	if err != nil {
		return nil, err
	}
	return toQueueJSON(p, cases.Items), nil
}

func caseCommand(r *http.Request, c command) approvalapi.CaseCommand {
	return approvalapi.CaseCommand{CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id")}
}

// claim is POST /v1/requests/{id}/claim.
func (s *server) claim(r *http.Request, c command, _ noBody) (reply, error) {
	out, err := s.approval.Claim(r.Context(), caseCommand(r, c))
	return caseReply(http.StatusOK, out, err)
}

// release is POST /v1/requests/{id}/release.
func (s *server) release(r *http.Request, c command, _ noBody) (reply, error) {
	out, err := s.approval.Release(r.Context(), caseCommand(r, c))
	return caseReply(http.StatusOK, out, err)
}

// approve is POST /v1/requests/{id}/approve.
func (s *server) approve(r *http.Request, c command, in approveBody) (reply, error) {
	out, err := s.approval.Approve(r.Context(), approvalapi.ApproveRequest{
		CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id"),
		AmountCents: in.AmountCents, FundID: in.FundID, PayeeID: in.PayeeID, Note: in.Note,
	})
	return caseReply(http.StatusOK, out, err)
}

// reject is POST /v1/requests/{id}/reject.
func (s *server) reject(r *http.Request, c command, in reasonBody) (reply, error) {
	out, err := s.approval.Reject(r.Context(), approvalapi.RejectRequest{
		CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id"), Reason: in.Reason,
	})
	return caseReply(http.StatusOK, out, err)
}

// requestInfo is POST /v1/requests/{id}/request-info.
func (s *server) requestInfo(r *http.Request, c command, in questionBody) (reply, error) {
	out, err := s.approval.RequestInfo(r.Context(), approvalapi.RequestInfoRequest{
		CommandID: c.ID, Actor: approverActor(c.User), CaseID: chi.URLParam(r, "id"), Question: in.Question,
	})
	return caseReply(http.StatusOK, out, err)
}
