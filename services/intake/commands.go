package intake

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/seal"
	evav1 "github.com/eva-org/eva/proto/eva/v1"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// File files a new request whose id is the command id; filing the same
// command again returns the request as it was filed. With an idempotency
// key, the key (hashed with its user) is recorded with the case it files
// before anything is appended: a retry with the key — even after a crash,
// even with another command id — files nothing new and answers with the
// first case, and the key with another request is refused.
//
// Errors: CodeInvalid naming each bad field (a cap exceeded names the cap),
// CodeForbidden when the actor does not file for the post,
// CodeIdempotencyMismatch for a key reused with another request,
// CodeUnavailable.
func (s *Service) File(ctx context.Context, r intakeapi.FileRequest) (*assist.Case, error) {
	if !eventlog.ValidCaseID(r.CommandID) {
		return nil, assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", r.CommandID)
	}
	var probs assist.Problems
	checkBeneficiary(&probs, "beneficiary", r.Beneficiary)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	if err := s.checkPayee(ctx, r.PayeeID); err != nil {
		return nil, err
	}
	in := assist.SubmitInput{
		Post: r.Post, Category: assist.Category(r.Category), Urgency: assist.Urgency(r.Urgency),
		AmountCents: r.AmountCents, Justification: r.Justification, PayeeID: r.PayeeID,
		BeneficiaryRefHash: s.keys.RefHash(r.Beneficiary.Reference), IdempotencyKeyHash: r.IdempotencyKeyHash,
	}
	// Decide first: an invalid request records nothing. The personal
	// data is sealed once the filing is decided and its case id known.
	p, err := s.policy.Current(ctx)
	if err != nil {
		return nil, err
	}
	e, err := assist.Submit(assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, in, p)
	if err != nil {
		return nil, err
	}
	b := e.Body.(assist.RequestSubmitted)
	// The duplicate check is recorded with the filing, as the approver
	// will see it. It reads the read model, so two filings for the same
	// person within its lag may miss each other; it only ever informs.
	check := DuplicateCheck{RefHash: b.BeneficiaryRefHash, Category: b.Category, Since: e.At.Add(-DuplicateWindow)}
	var (
		dups []string
		made bool // the case is new: this is the key's first attempt
	)
	if len(r.IdempotencyKeyHash) > 0 {
		// The key's first attempt gets the duplicate check with its
		// record, in one statement.
		var f Filing
		if f, made, dups, err = s.store.Filing(ctx, Filing{KeyHash: r.IdempotencyKeyHash, CaseID: e.CaseID,
			RequestHash: r.RequestHash, CreatedAt: s.now()}, check); err != nil {
			return nil, err
		}
		if !bytes.Equal(f.RequestHash, r.RequestHash) {
			return nil, assist.Errorf(assist.CodeIdempotencyMismatch,
				"this Idempotency-Key was used with another request; use a new key for a new request")
		}
		// The key's first attempt named the case: file it under that id
		// (or, when it was filed, answer as then).
		e.ID, e.CaseID, e.CommandID = f.CaseID, f.CaseID, f.CaseID
	}
	if !made {
		// A case of this id may have been filed, and erased, before; the
		// key's first attempt files a case of a new id, which no erasure
		// can name yet.
		erased, found, err := s.store.CheckFiling(ctx, e.CaseID, check)
		if err != nil {
			return nil, err
		}
		if erased {
			// Only a filed case can be erased: this is a retry. Answer as
			// the first time; never seal under a new key.
			return s.log.Answer(ctx, e.CaseID, e.CommandID)
		}
		dups = found
	}
	sealed, err := s.sealNew(ctx, e.CaseID, r.Beneficiary)
	if err != nil {
		return nil, err
	}
	b.Beneficiary = sealed
	if len(dups) > 0 {
		b.PossibleDuplicateOf = dups
	}
	e.Body = b
	return s.log.Start(ctx, e)
}

// DuplicateWindow is how long a finished case still counts as recent for
// the duplicate check at filing; open cases count whatever their age.
const DuplicateWindow = 30 * 24 * time.Hour

// errErased refuses new personal data for a case whose personal data was
// erased.
var errErased = &assist.Error{Code: assist.CodeConflict, Message: "the personal data of this request was erased; it cannot be changed"}

// Amend changes a request while it is submitted or info_requested.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid naming
// each bad field, CodeUnavailable.
func (s *Service) Amend(ctx context.Context, r intakeapi.AmendRequest) (*assist.Case, error) {
	in := assist.AmendInput{
		Category: (*assist.Category)(r.Category), Urgency: (*assist.Urgency)(r.Urgency),
		AmountCents: r.AmountCents, Justification: r.Justification, PayeeID: r.PayeeID,
	}
	if r.PayeeID != nil {
		if err := s.checkPayee(ctx, *r.PayeeID); err != nil {
			return nil, err
		}
	}
	if r.Beneficiary != nil {
		var probs assist.Problems
		checkBeneficiary(&probs, "beneficiary", *r.Beneficiary)
		if err := probs.Err(); err != nil {
			return nil, err
		}
		in.BeneficiaryRefHash = s.keys.RefHash(r.Beneficiary.Reference)
		in.Beneficiary = &assist.Sealed{} // sealed once the amendment is decided
	}
	p, err := s.policy.Current(ctx)
	if err != nil {
		return nil, err
	}
	return s.execute(ctx, eventlog.Command{CaseID: r.CaseID, ID: r.CommandID,
		Decide: func(c *assist.Case) (assist.Event, error) {
			return c.Amend(s.cmd(r.CommandID, r.Actor), in, p)
		},
		Prepare: func(ctx context.Context, c *assist.Case, e *assist.Event) error {
			if r.Beneficiary == nil {
				return nil
			}
			sealed, err := s.sealAgain(ctx, c, *r.Beneficiary)
			if err != nil {
				return err
			}
			b := e.Body.(assist.RequestAmended)
			b.Beneficiary = &sealed
			e.Body = b
			return nil
		}})
}

// Withdraw ends an open request.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid,
// CodeUnavailable.
func (s *Service) Withdraw(ctx context.Context, r intakeapi.WithdrawRequest) (*assist.Case, error) {
	return s.execute(ctx, eventlog.Command{CaseID: r.CaseID, ID: r.CommandID, Decide: func(c *assist.Case) (assist.Event, error) {
		return c.Withdraw(s.cmd(r.CommandID, r.Actor), r.Reason)
	}})
}

// Answer provides the information an approver asked for.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid,
// CodeUnavailable.
func (s *Service) Answer(ctx context.Context, r intakeapi.AnswerRequest) (*assist.Case, error) {
	return s.execute(ctx, eventlog.Command{CaseID: r.CaseID, ID: r.CommandID, Decide: func(c *assist.Case) (assist.Event, error) {
		return c.ProvideInfo(s.cmd(r.CommandID, r.Actor), r.Answer)
	}})
}

// Get reads a case, rebuilt from its events.
//
// Errors: CodeNotFound, CodeUnavailable.
func (s *Service) Get(ctx context.Context, r intakeapi.GetRequest) (*assist.Case, error) {
	if !eventlog.ValidCaseID(r.CaseID) {
		return nil, assist.Errorf(assist.CodeNotFound, "no request %q", r.CaseID)
	}
	return s.log.Case(ctx, r.CaseID)
}

// List lists requests from the projection, newest first.
//
// Errors: CodeInvalid for a bad cursor.
func (s *Service) List(ctx context.Context, f intakeapi.ListFilter) (intakeapi.ListPage, error) {
	if f.Limit <= 0 {
		f.Limit = listing.DefaultLimit
	}
	f.Limit = min(f.Limit, listing.MaxLimit)
	return s.store.List(ctx, f)
}

// Cases reads cases by id from the read model; a case the read model has
// yet to apply is read from the log. Unknown ids are left out.
//
// Errors: CodeInvalid for more than MaxCases ids, CodeUnavailable.
func (s *Service) Cases(ctx context.Context, r intakeapi.CasesRequest) (intakeapi.CasesPage, error) {
	if len(r.IDs) > intakeapi.MaxCases {
		var probs assist.Problems
		probs.Add("ids", "must name at most %d cases", intakeapi.MaxCases)
		return intakeapi.CasesPage{}, probs.Err()
	}
	ids := slices.DeleteFunc(slices.Clone(r.IDs), func(id string) bool { return !eventlog.ValidCaseID(id) })
	found, err := s.store.Cases(ctx, ids)
	if err != nil {
		return intakeapi.CasesPage{}, err
	}
	page := intakeapi.CasesPage{Items: make([]caseview.Case, 0, len(ids))}
	for _, id := range ids {
		c, ok := found[id]
		if !ok {
			if c, err = s.log.Case(ctx, id); assist.IsCode(err, assist.CodeNotFound) {
				continue
			} else if err != nil {
				return intakeapi.CasesPage{}, err
			}
		}
		page.Items = append(page.Items, caseview.From(c))
	}
	return page, nil
}

// Personal opens a case's personal data for the actor, after recording the
// read in the access log.
//
// Errors: CodeNotFound, CodeGone after erasure, CodeUnavailable.
func (s *Service) Personal(ctx context.Context, r intakeapi.PersonalRequest) (intakeapi.Beneficiary, error) {
	c, err := s.Get(ctx, intakeapi.GetRequest{CaseID: r.CaseID})
	if err != nil {
		return intakeapi.Beneficiary{}, err
	}
	if c.PersonalDataErased {
		return intakeapi.Beneficiary{}, errGone(c.ID)
	}
	if c.Beneficiary.KeyID == "" {
		return intakeapi.Beneficiary{}, assist.Errorf(assist.CodeNotFound, "request %s holds no personal data", r.CaseID)
	}
	wrapped, err := s.store.WrappedKey(ctx, c.Beneficiary.KeyID)
	if err != nil {
		return intakeapi.Beneficiary{}, err
	}
	if wrapped == nil || s.isErased(ctx, c.ID) {
		return intakeapi.Beneficiary{}, errGone(c.ID)
	}
	key, err := s.keys.Unwrap(c.Beneficiary.KeyID, wrapped)
	if err != nil {
		return intakeapi.Beneficiary{}, err
	}
	plain, err := seal.Open(key, c.Beneficiary.Ciphertext, []byte(c.ID))
	if err != nil {
		return intakeapi.Beneficiary{}, err
	}
	var pd evav1.PersonalData
	if err := proto.Unmarshal(plain, &pd); err != nil {
		return intakeapi.Beneficiary{}, err
	}
	if err := s.log.RecordAccess(ctx, eventlog.Access{CaseID: c.ID, Username: r.Actor.Username, Role: r.Actor.Role,
		Post: r.Actor.Post, At: s.now(), What: "beneficiary"}); err != nil {
		return intakeapi.Beneficiary{}, err
	}
	return intakeapi.Beneficiary{Reference: pd.GetReference(), Name: pd.GetName(), DateOfBirth: pd.GetDateOfBirth(),
		Nationality: pd.GetNationality(), Contact: pd.GetContact()}, nil
}

// errGone answers a read of erased personal data.
func errGone(caseID string) error {
	return assist.Errorf(assist.CodeGone, "the personal data of request %s was erased", caseID)
}

// Erase erases a case's personal data: PersonalDataErased is appended
// with the admin and the reason, then the data key it names is destroyed.
// Should the key outlive a crash in between, intake's projection of the
// event destroys it (Store.Project), and reads already answer CodeGone
// from the event. A retry of the same command destroys the key again and
// answers as the first time; another erasure of the case is a conflict.
//
// Errors: CodeNotFound, CodeForbidden for anyone but an admin,
// CodeInvalid without a reason, CodeConflict when erased before,
// CodeUnavailable.
func (s *Service) Erase(ctx context.Context, r intakeapi.EraseRequest) (*assist.Case, error) {
	c, err := s.execute(ctx, eventlog.Command{CaseID: r.CaseID, ID: r.CommandID, Decide: func(c *assist.Case) (assist.Event, error) {
		return c.ErasePersonalData(s.cmd(r.CommandID, r.Actor), r.Reason)
	}})
	if err != nil {
		return nil, err
	}
	if err := s.store.Erase(ctx, c.ID, c.Beneficiary.KeyID); err != nil {
		return nil, err
	}
	return c, nil
}

// execute runs a command on an existing case, after checking its ids.
func (s *Service) execute(ctx context.Context, cmd eventlog.Command) (*assist.Case, error) {
	if !eventlog.ValidCaseID(cmd.CaseID) {
		return nil, assist.Errorf(assist.CodeNotFound, "no request %q", cmd.CaseID)
	}
	if !eventlog.ValidCaseID(cmd.ID) {
		return nil, assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", cmd.ID)
	}
	return s.log.Execute(ctx, cmd)
}

// cmd is what a transition knows of the command deciding it.
func (s *Service) cmd(id string, actor assist.Actor) assist.Cmd {
	return assist.Cmd{ID: id, Actor: actor, At: s.now()}
}

// sealNew encrypts a new case's personal data under a fresh data key
// from the pool.
func (s *Service) sealNew(ctx context.Context, caseID string, b intakeapi.Beneficiary) (assist.Sealed, error) {
	k, err := s.pool.take(ctx)
	if err != nil {
		return assist.Sealed{}, err
	}
	return sealWith(k.id, k.key, caseID, b)
}

// sealAgain encrypts new personal data of a case under the case's key;
// after an erasure it refuses.
func (s *Service) sealAgain(ctx context.Context, c *assist.Case, b intakeapi.Beneficiary) (assist.Sealed, error) {
	if s.isErased(ctx, c.ID) {
		return assist.Sealed{}, errErased
	}
	if c.Beneficiary.KeyID == "" {
		return s.sealNew(ctx, c.ID, b)
	}
	wrapped, err := s.store.WrappedKey(ctx, c.Beneficiary.KeyID)
	if err != nil {
		return assist.Sealed{}, err
	}
	if wrapped == nil {
		return assist.Sealed{}, errErased
	}
	key, err := s.keys.Unwrap(c.Beneficiary.KeyID, wrapped)
	if err != nil {
		return assist.Sealed{}, err
	}
	return sealWith(c.Beneficiary.KeyID, key, c.ID, b)
}

// isErased reports an erasure; when the store cannot tell, it answers
// erased, revealing nothing.
func (s *Service) isErased(ctx context.Context, caseID string) bool {
	erased, err := s.store.Erased(ctx, caseID)
	return err != nil || erased
}

func sealWith(keyID string, key []byte, caseID string, b intakeapi.Beneficiary) (assist.Sealed, error) {
	plain, err := proto.Marshal(&evav1.PersonalData{Reference: b.Reference, Name: b.Name,
		DateOfBirth: b.DateOfBirth, Nationality: b.Nationality, Contact: b.Contact})
	if err != nil {
		return assist.Sealed{}, err
	}
	ct, err := seal.Seal(key, plain, []byte(caseID))
	if err != nil {
		return assist.Sealed{}, err
	}
	return assist.Sealed{KeyID: keyID, Ciphertext: ct}, nil
}

// checkPayee refuses a payee id that is not a payee: not a UUID, or, when
// intake can ask disbursement, unknown. An empty id names no payee yet.
func (s *Service) checkPayee(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	bad := func(msg string) error {
		var probs assist.Problems
		probs.Add("payee_id", "%s", msg)
		return probs.Err()
	}
	if !eventlog.ValidCaseID(id) {
		return bad("must be the id of a payee (a UUID)")
	}
	if s.payees == nil {
		return nil
	}
	if _, ok := s.known.Load(id); ok {
		return nil
	}
	_, err := s.payees.Payee(ctx, id)
	switch {
	case assist.IsCode(err, assist.CodeNotFound):
		return bad(fmt.Sprintf("no payee %s", id))
	case err != nil:
		return err
	}
	s.known.Store(id, true)
	return nil
}

var dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

func checkBeneficiary(probs *assist.Problems, prefix string, b intakeapi.Beneficiary) {
	text := func(field, v string, maxChars int) {
		assist.CheckLine(probs, prefix+"."+field, v, maxChars)
	}
	if strings.TrimSpace(b.Reference) == "" {
		probs.Add(prefix+".reference", "is required")
	}
	text("reference", b.Reference, 128)
	text("name", b.Name, 200)
	text("nationality", b.Nationality, 64)
	text("contact", b.Contact, 200)
	if b.DateOfBirth != "" {
		if _, err := time.Parse(time.DateOnly, b.DateOfBirth); err != nil || !dateRE.MatchString(b.DateOfBirth) {
			probs.Add(prefix+".date_of_birth", "must be a date YYYY-MM-DD")
		}
	}
}
