package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/reconcile"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// calls records the calls made to the fake services.
type calls struct {
	mu    sync.Mutex
	names []string
}

func (c *calls) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, name)
}

func (c *calls) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, x := range c.names {
		if x == name {
			n++
		}
	}
	return n
}

func (c *calls) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.names)
}

func (c *calls) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = nil
}

func notFaked(name string) error { return fmt.Errorf("fake: %s is not set up", name) }

// fakeIntake is a fake of the intake service: each method calls its
// function field, and fails when the field is nil.
type fakeIntake struct {
	calls    *calls
	file     func(context.Context, intakeapi.FileRequest) (caseview.Case, error)
	amend    func(context.Context, intakeapi.AmendRequest) (caseview.Case, error)
	withdraw func(context.Context, intakeapi.WithdrawRequest) (caseview.Case, error)
	answer   func(context.Context, intakeapi.AnswerRequest) (caseview.Case, error)
	get      func(context.Context, string) (caseview.Case, error)
	list     func(context.Context, intakeapi.ListFilter) (intakeapi.ListPage, error)
	cases    func(context.Context, []string) (intakeapi.CasesPage, error)
	personal func(context.Context, intakeapi.PersonalRequest) (intakeapi.Beneficiary, error)
	erase    func(context.Context, intakeapi.EraseRequest) (caseview.Case, error)
}

func call[Req, Resp any](c *calls, name string, f func(context.Context, Req) (Resp, error), ctx context.Context, r Req) (Resp, error) {
	c.add(name)
	if f == nil {
		var zero Resp
		return zero, notFaked(name)
	}
	return f(ctx, r)
}

func (f *fakeIntake) File(ctx context.Context, r intakeapi.FileRequest) (caseview.Case, error) {
	return call(f.calls, "intake.File", f.file, ctx, r)
}
func (f *fakeIntake) Amend(ctx context.Context, r intakeapi.AmendRequest) (caseview.Case, error) {
	return call(f.calls, "intake.Amend", f.amend, ctx, r)
}
func (f *fakeIntake) Withdraw(ctx context.Context, r intakeapi.WithdrawRequest) (caseview.Case, error) {
	return call(f.calls, "intake.Withdraw", f.withdraw, ctx, r)
}
func (f *fakeIntake) Answer(ctx context.Context, r intakeapi.AnswerRequest) (caseview.Case, error) {
	return call(f.calls, "intake.Answer", f.answer, ctx, r)
}
func (f *fakeIntake) Get(ctx context.Context, id string) (caseview.Case, error) {
	return call(f.calls, "intake.Get", f.get, ctx, id)
}
func (f *fakeIntake) List(ctx context.Context, r intakeapi.ListFilter) (intakeapi.ListPage, error) {
	return call(f.calls, "intake.List", f.list, ctx, r)
}
func (f *fakeIntake) Cases(ctx context.Context, ids []string) (intakeapi.CasesPage, error) {
	return call(f.calls, "intake.Cases", f.cases, ctx, ids)
}
func (f *fakeIntake) Personal(ctx context.Context, r intakeapi.PersonalRequest) (intakeapi.Beneficiary, error) {
	return call(f.calls, "intake.Personal", f.personal, ctx, r)
}
func (f *fakeIntake) Erase(ctx context.Context, r intakeapi.EraseRequest) (caseview.Case, error) {
	return call(f.calls, "intake.Erase", f.erase, ctx, r)
}

// fakeApproval is a fake of the approval service.
type fakeApproval struct {
	calls         *calls
	queue         func(context.Context, approvalapi.QueueRequest) (approvalapi.QueuePage, error)
	claim         func(context.Context, approvalapi.CaseCommand) (caseview.Case, error)
	release       func(context.Context, approvalapi.CaseCommand) (caseview.Case, error)
	approve       func(context.Context, approvalapi.ApproveRequest) (caseview.Case, error)
	reject        func(context.Context, approvalapi.RejectRequest) (caseview.Case, error)
	requestInfo   func(context.Context, approvalapi.RequestInfoRequest) (caseview.Case, error)
	policy        func(context.Context, approvalapi.PolicyRequest) (approvalapi.PolicyVersion, error)
	changePolicy  func(context.Context, approvalapi.ChangePolicyRequest) (approvalapi.PolicyVersion, error)
	policyHistory func(context.Context, approvalapi.PolicyRequest) (approvalapi.PolicyHistoryPage, error)
}

func (f *fakeApproval) Queue(ctx context.Context, r approvalapi.QueueRequest) (approvalapi.QueuePage, error) {
	return call(f.calls, "approval.Queue", f.queue, ctx, r)
}
func (f *fakeApproval) Claim(ctx context.Context, r approvalapi.CaseCommand) (caseview.Case, error) {
	return call(f.calls, "approval.Claim", f.claim, ctx, r)
}
func (f *fakeApproval) Release(ctx context.Context, r approvalapi.CaseCommand) (caseview.Case, error) {
	return call(f.calls, "approval.Release", f.release, ctx, r)
}
func (f *fakeApproval) Approve(ctx context.Context, r approvalapi.ApproveRequest) (caseview.Case, error) {
	return call(f.calls, "approval.Approve", f.approve, ctx, r)
}
func (f *fakeApproval) Reject(ctx context.Context, r approvalapi.RejectRequest) (caseview.Case, error) {
	return call(f.calls, "approval.Reject", f.reject, ctx, r)
}
func (f *fakeApproval) RequestInfo(ctx context.Context, r approvalapi.RequestInfoRequest) (caseview.Case, error) {
	return call(f.calls, "approval.RequestInfo", f.requestInfo, ctx, r)
}
func (f *fakeApproval) Policy(ctx context.Context, r approvalapi.PolicyRequest) (approvalapi.PolicyVersion, error) {
	return call(f.calls, "approval.Policy", f.policy, ctx, r)
}
func (f *fakeApproval) ChangePolicy(ctx context.Context, r approvalapi.ChangePolicyRequest) (approvalapi.PolicyVersion, error) {
	return call(f.calls, "approval.ChangePolicy", f.changePolicy, ctx, r)
}
func (f *fakeApproval) PolicyHistory(ctx context.Context, r approvalapi.PolicyRequest) (approvalapi.PolicyHistoryPage, error) {
	return call(f.calls, "approval.PolicyHistory", f.policyHistory, ctx, r)
}

// fakeDisbursement is a fake of the disbursement service.
type fakeDisbursement struct {
	calls        *calls
	funds        func(context.Context, disbursementapi.ListRequest) (disbursementapi.FundsPage, error)
	fund         func(context.Context, string) (disbursementapi.Fund, error)
	fundHistory  func(context.Context, string) (disbursementapi.FundHistory, error)
	ledger       func(context.Context, disbursementapi.LedgerRequest) (disbursementapi.Ledger, error)
	allocation   func(context.Context, disbursementapi.ChangeAllocationRequest) (disbursementapi.Fund, error)
	reconcile    func(context.Context, disbursementapi.ReconcileRequest) (reconcile.Report, error)
	createFund   func(context.Context, disbursementapi.CreateFundRequest) (disbursementapi.Fund, error)
	payees       func(context.Context, disbursementapi.ListRequest) (disbursementapi.PayeesPage, error)
	payee        func(context.Context, string) (disbursementapi.Payee, error)
	createPayee  func(context.Context, disbursementapi.CreatePayeeRequest) (disbursementapi.Payee, error)
	payeeAccount func(context.Context, disbursementapi.ChangeAccountRequest) (disbursementapi.Payee, error)
	payouts      func(context.Context, disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error)
	retryPayout  func(context.Context, disbursementapi.PayoutCommand) (disbursementapi.Payout, error)
	cancelPayout func(context.Context, disbursementapi.PayoutCommand) (disbursementapi.Payout, error)
}

func (f *fakeDisbursement) Funds(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.FundsPage, error) {
	return call(f.calls, "disbursement.Funds", f.funds, ctx, r)
}
func (f *fakeDisbursement) Fund(ctx context.Context, id string) (disbursementapi.Fund, error) {
	return call(f.calls, "Fund", f.fund, ctx, id)
}
func (f *fakeDisbursement) FundHistory(ctx context.Context, id string) (disbursementapi.FundHistory, error) {
	return call(f.calls, "disbursement.FundHistory", f.fundHistory, ctx, id)
}
func (f *fakeDisbursement) Ledger(ctx context.Context, r disbursementapi.LedgerRequest) (disbursementapi.Ledger, error) {
	return call(f.calls, "disbursement.Ledger", f.ledger, ctx, r)
}
func (f *fakeDisbursement) ChangeAllocation(ctx context.Context, r disbursementapi.ChangeAllocationRequest) (disbursementapi.Fund, error) {
	return call(f.calls, "disbursement.ChangeAllocation", f.allocation, ctx, r)
}
func (f *fakeDisbursement) Reconcile(ctx context.Context, r disbursementapi.ReconcileRequest) (reconcile.Report, error) {
	return call(f.calls, "disbursement.Reconcile", f.reconcile, ctx, r)
}
func (f *fakeDisbursement) CreateFund(ctx context.Context, r disbursementapi.CreateFundRequest) (disbursementapi.Fund, error) {
	return call(f.calls, "disbursement.CreateFund", f.createFund, ctx, r)
}
func (f *fakeDisbursement) Payees(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayeesPage, error) {
	return call(f.calls, "disbursement.Payees", f.payees, ctx, r)
}
func (f *fakeDisbursement) Payee(ctx context.Context, id string) (disbursementapi.Payee, error) {
	return call(f.calls, "Payee", f.payee, ctx, id)
}
func (f *fakeDisbursement) CreatePayee(ctx context.Context, r disbursementapi.CreatePayeeRequest) (disbursementapi.Payee, error) {
	return call(f.calls, "disbursement.CreatePayee", f.createPayee, ctx, r)
}
func (f *fakeDisbursement) ChangePayeeAccount(ctx context.Context, r disbursementapi.ChangeAccountRequest) (disbursementapi.Payee, error) {
	return call(f.calls, "disbursement.ChangePayeeAccount", f.payeeAccount, ctx, r)
}
func (f *fakeDisbursement) Payouts(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error) {
	return call(f.calls, "disbursement.Payouts", f.payouts, ctx, r)
}
func (f *fakeDisbursement) RetryPayout(ctx context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error) {
	return call(f.calls, "disbursement.RetryPayout", f.retryPayout, ctx, r)
}
func (f *fakeDisbursement) CancelPayout(ctx context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error) {
	return call(f.calls, "disbursement.CancelPayout", f.cancelPayout, ctx, r)
}

// fakeAudit is a fake of the audit service.
type fakeAudit struct {
	calls      *calls
	events     func(context.Context, auditapi.EventsRequest) (auditapi.EventsPage, error)
	verify     func(context.Context, auditapi.VerifyRequest) (auditapi.VerifyResult, error)
	history    func(context.Context, string) ([]auditapi.ArchivedEvent, error)
	asOf       func(context.Context, auditapi.AsOfRequest) (caseview.Case, error)
	checkpoint func(context.Context, struct{}) (auditapi.SignedCheckpoint, error)
	key        func(context.Context, struct{}) (auditapi.VerifierKey, error)
	leaf       func(context.Context, uint64) (auditapi.Leaf, error)
	inclusion  func(context.Context, auditapi.InclusionRequest) (auditapi.Proof, error)
	consistent func(context.Context, auditapi.ConsistencyRequest) (auditapi.Proof, error)
	access     func(context.Context, string) ([]eventlog.Access, error)
	dead       func(context.Context, auditapi.DeadLettersRequest) (auditapi.DeadLettersPage, error)
}

func (f *fakeAudit) Events(ctx context.Context, r auditapi.EventsRequest) (auditapi.EventsPage, error) {
	return call(f.calls, "audit.Events", f.events, ctx, r)
}
func (f *fakeAudit) Verify(ctx context.Context, r auditapi.VerifyRequest) (auditapi.VerifyResult, error) {
	return call(f.calls, "audit.Verify", f.verify, ctx, r)
}
func (f *fakeAudit) History(ctx context.Context, id string) ([]auditapi.ArchivedEvent, error) {
	return call(f.calls, "audit.History", f.history, ctx, id)
}
func (f *fakeAudit) AsOf(ctx context.Context, id string, at time.Time) (caseview.Case, error) {
	return call(f.calls, "audit.AsOf", f.asOf, ctx, auditapi.AsOfRequest{CaseID: id, At: at})
}
func (f *fakeAudit) Checkpoint(ctx context.Context) (auditapi.SignedCheckpoint, error) {
	return call(f.calls, "audit.Checkpoint", f.checkpoint, ctx, struct{}{})
}
func (f *fakeAudit) AccessCheckpoint(ctx context.Context) (auditapi.SignedCheckpoint, error) {
	return call(f.calls, "audit.AccessCheckpoint", f.checkpoint, ctx, struct{}{})
}
func (f *fakeAudit) Key(ctx context.Context) (auditapi.VerifierKey, error) {
	return call(f.calls, "audit.Key", f.key, ctx, struct{}{})
}
func (f *fakeAudit) Leaf(ctx context.Context, seq uint64) (auditapi.Leaf, error) {
	return call(f.calls, "audit.Leaf", f.leaf, ctx, seq)
}
func (f *fakeAudit) Inclusion(ctx context.Context, r auditapi.InclusionRequest) (auditapi.Proof, error) {
	return call(f.calls, "audit.Inclusion", f.inclusion, ctx, r)
}
func (f *fakeAudit) Consistency(ctx context.Context, r auditapi.ConsistencyRequest) (auditapi.Proof, error) {
	return call(f.calls, "audit.Consistency", f.consistent, ctx, r)
}
func (f *fakeAudit) Access(ctx context.Context, id string) ([]eventlog.Access, error) {
	return call(f.calls, "audit.Access", f.access, ctx, id)
}
func (f *fakeAudit) DeadLetters(ctx context.Context, r auditapi.DeadLettersRequest) (auditapi.DeadLettersPage, error) {
	return call(f.calls, "audit.DeadLetters", f.dead, ctx, r)
}

// The fake audit's checkpoint and key: a fake's, not a real signature.
const (
	fakeCheckpoint  = "fake.eva.example/audit\n3\nAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n\n— fake.eva.example/audit AAAAAGZha2U=\n"
	fakeVerifierKey = "fake.eva.example/audit+00000000+AWZha2U="
)

// Cases the fakes know: one at each demo post.
const (
	dhakaCase  = "0194e1c2-7a3b-7c4d-8e5f-000000000001"
	mumbaiCase = "0194e1c2-7a3b-7c4d-8e5f-000000000002"
	noCase     = "0194e1c2-7a3b-7c4d-8e5f-0000000000ff"
	fundID     = "0194e1c2-7a3b-7c4d-8e5f-00000000f001"
	payeeID    = "0194e1c2-7a3b-7c4d-8e5f-00000000b001"
	payoutID   = "0194e1c2-7a3b-7c4d-8e5f-00000000c001"
)

func sampleCase(id, post string) caseview.Case {
	return caseview.Case{ID: id, Requester: "ana", Post: post, Category: string(assist.Shelter), Urgency: string(assist.Critical),
		AmountCents: 25000, Justification: "three nights of shelter", PayeeID: payeeID, Status: string(assist.StateSubmitted),
		Deadline: t0.Add(4 * time.Hour), CreatedAt: t0, UpdatedAt: t0.Add(time.Minute), Version: 7}
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.Set(t)
	return c
}

// harness is a gateway on a real store with fake services.
type harness struct {
	t        testing.TB
	srv      *server
	h        http.Handler
	db       sqldb.DB
	store    *SQLStore
	clock    *clock
	calls    *calls
	intake   *fakeIntake
	approval *fakeApproval
	disb     *fakeDisbursement
	audit    *fakeAudit
	notify   *fakeNotify
	logs     *observer.ObservedLogs
	registry *prometheus.Registry
	tokens   map[string]string
	ready    atomic.Pointer[error]
	// offContract are statuses a test makes routes answer although the
	// OpenAPI document does not list them for those routes (a fake
	// service answering a code the real one never does): their answers
	// are checked as problems only. Every other answer is checked against
	// the document (checkResponse).
	offContract []int
}

// testUsers are the demo accounts plus two with several roles.
var testUsers = []Account{
	{Username: "ana", Roles: []string{requester}, Posts: []string{"BGD-DHAKA"}},
	{Username: "raj", Roles: []string{requester}, Posts: []string{"IND-MUMBAI"}},
	{Username: "olu", Roles: []string{approver}},
	{Username: "mei", Roles: []string{approver}},
	{Username: "fin", Roles: []string{finance}},
	{Username: "aud", Roles: []string{auditor}},
	{Username: "adm", Roles: []string{admin}},
	{Username: "nopost", Roles: []string{requester}},
	{Username: "ana-aud", Roles: []string{requester, auditor}, Posts: []string{"BGD-DHAKA"}},
}

var (
	testHashOnce sync.Once
	testHash     []byte
)

// testPasswordParams make argon2id cheap, so that tests sign in quickly.
var testPasswordParams = PasswordParams{Memory: 64, Time: 1, Threads: 1}

// lowCostHash is the hash of every test user's password, "pw", made once
// with testPasswordParams.
func lowCostHash() []byte {
	testHashOnce.Do(func() { testHash = testPasswordParams.hash("pw") })
	return testHash
}

// newHarness builds the gateway on db (migrated here) with fakes that
// answer sensibly for the known cases.
func newHarness(tb testing.TB, db sqldb.DB, cfgs ...func(*Config)) *harness {
	tb.Helper()
	migrated(tb, db)
	h := &harness{t: tb, db: db, store: NewSQLStore(db), clock: newClock(t0), calls: &calls{}, tokens: map[string]string{},
		registry: prometheus.NewRegistry()}
	core, logs := observer.New(zapcore.DebugLevel)
	h.logs = logs
	h.intake = &fakeIntake{calls: h.calls}
	h.approval = &fakeApproval{calls: h.calls}
	h.disb = &fakeDisbursement{calls: h.calls}
	h.audit = &fakeAudit{calls: h.calls}
	h.notify = newFakeNotify(h.calls)
	h.setDefaults()
	cfg := Config{Password: testPasswordParams}
	for _, f := range cfgs {
		f(&cfg)
	}
	srv, err := newServer(Deps{Config: cfg, Intake: h.intake, Approval: h.approval, Disbursement: h.disb, Audit: h.audit,
		Notify: h.notify, Changes: fakeEndedLog{}, DB: db, Logger: zap.New(core), Registry: h.registry, Now: h.clock.Now,
		Ready: func(context.Context) error {
			if p := h.ready.Load(); p != nil {
				return *p
			}
			return nil
		}})
	if err != nil {
		tb.Fatal(err)
	}
	h.srv, h.h = srv, srv.router()
	ctx := context.Background()
	for _, u := range testUsers {
		u.PasswordHash, u.CreatedAt = lowCostHash(), t0
		if err := h.store.PutAccount(ctx, u); err != nil {
			tb.Fatal(err)
		}
		tok, _, err := srv.startSession(ctx, u)
		if err != nil {
			tb.Fatal(err)
		}
		h.tokens[u.Username] = tok
	}
	return h
}

// fakeEndedLog is a fake of the followed log whose every stream ends at
// once, empty: GET /v1/changes then answers 200 and ends, which a
// recorder can hold (changes_test.go follows a real log).
type fakeEndedLog struct{}

func (fakeEndedLog) LastSeq(context.Context) (uint64, error) { return 0, nil }
func (fakeEndedLog) Follow(context.Context, uint64, func(eventlog.Msg) error) error {
	return nil
}

// setDefaults makes every fake answer with plausible data.
func (h *harness) setDefaults() {
	cases := map[string]caseview.Case{dhakaCase: sampleCase(dhakaCase, "BGD-DHAKA"), mumbaiCase: sampleCase(mumbaiCase, "IND-MUMBAI")}
	get := func(_ context.Context, id string) (caseview.Case, error) {
		if c, ok := cases[id]; ok {
			return c, nil
		}
		return caseview.Case{}, assist.Errorf(assist.CodeNotFound, "no request %s", id)
	}
	after := func(id string, state assist.State) (caseview.Case, error) {
		c, err := get(nil, id)
		if err != nil {
			return caseview.Case{}, err
		}
		c.Status, c.Version = string(state), c.Version+1
		return c, nil
	}
	h.intake.get = get
	h.intake.file = func(_ context.Context, r intakeapi.FileRequest) (caseview.Case, error) {
		c := sampleCase(r.CommandID, r.Post)
		c.Requester, c.AmountCents = r.Actor.Username, r.AmountCents
		return c, nil
	}
	h.intake.amend = func(_ context.Context, r intakeapi.AmendRequest) (caseview.Case, error) {
		return after(r.CaseID, assist.StateSubmitted)
	}
	h.intake.withdraw = func(_ context.Context, r intakeapi.WithdrawRequest) (caseview.Case, error) {
		return after(r.CaseID, assist.StateWithdrawn)
	}
	h.intake.answer = func(_ context.Context, r intakeapi.AnswerRequest) (caseview.Case, error) {
		return after(r.CaseID, assist.StateSubmitted)
	}
	h.intake.erase = func(_ context.Context, r intakeapi.EraseRequest) (caseview.Case, error) {
		c, err := get(nil, r.CaseID)
		c.PersonalDataErased, c.Version = true, c.Version+1
		return c, err
	}
	h.intake.list = func(_ context.Context, f intakeapi.ListFilter) (intakeapi.ListPage, error) {
		var p intakeapi.ListPage
		for _, id := range []string{dhakaCase, mumbaiCase} {
			c, _ := get(nil, id)
			if len(f.Posts) == 0 || slices.Contains(f.Posts, c.Post) {
				p.Items = append(p.Items, c)
			}
		}
		return p, nil
	}
	h.intake.personal = func(_ context.Context, r intakeapi.PersonalRequest) (intakeapi.Beneficiary, error) {
		if _, err := get(nil, r.CaseID); err != nil {
			return intakeapi.Beneficiary{}, err
		}
		return intakeapi.Beneficiary{Reference: "REF-1", Name: "Person Name", Nationality: "BD"}, nil
	}
	h.intake.cases = func(_ context.Context, ids []string) (intakeapi.CasesPage, error) {
		var p intakeapi.CasesPage
		for _, id := range ids {
			if c, err := get(nil, id); err == nil {
				p.Items = append(p.Items, c)
			}
		}
		return p, nil
	}
	h.approval.queue = func(context.Context, approvalapi.QueueRequest) (approvalapi.QueuePage, error) {
		c, _ := get(nil, dhakaCase)
		return approvalapi.QueuePage{Items: []approvalapi.QueueItem{{CaseID: c.ID, Status: c.Status, Urgency: c.Urgency,
			Deadline: c.Deadline, Overdue: true}}}, nil
	}
	h.approval.claim = func(_ context.Context, r approvalapi.CaseCommand) (caseview.Case, error) {
		c, err := after(r.CaseID, assist.StateUnderReview)
		if err == nil {
			c.ClaimedBy, c.ClaimExpiresAt = r.Actor.Username, t0.Add(30*time.Minute)
		}
		return c, err
	}
	h.approval.release = func(_ context.Context, r approvalapi.CaseCommand) (caseview.Case, error) {
		return after(r.CaseID, assist.StateSubmitted)
	}
	h.approval.approve = func(_ context.Context, r approvalapi.ApproveRequest) (caseview.Case, error) {
		c, err := after(r.CaseID, assist.StateApproved)
		if err == nil {
			c.ApprovedCents, c.FundID = r.AmountCents, r.FundID
		}
		return c, err
	}
	h.approval.reject = func(_ context.Context, r approvalapi.RejectRequest) (caseview.Case, error) {
		return after(r.CaseID, assist.StateRejected)
	}
	h.approval.requestInfo = func(_ context.Context, r approvalapi.RequestInfoRequest) (caseview.Case, error) {
		c, err := after(r.CaseID, assist.StateInfoRequested)
		if err == nil {
			c.Question = r.Question
		}
		return c, err
	}
	// The policy: a fake version per change, the changes kept in order.
	var policies []approvalapi.PolicyVersion
	h.approval.policy = func(context.Context, approvalapi.PolicyRequest) (approvalapi.PolicyVersion, error) {
		if len(policies) == 0 {
			return approvalapi.PolicyVersion{Policy: approvalapi.PolicyDoc{Version: "default-1", CapsUSDCents: map[string]int64{"shelter": 500_000},
				CaseCapUSDCents: 2_000_000, Deadlines: map[string]string{"critical": "4h", "urgent": "24h", "routine": "72h"}, ClaimTTL: "30m"}}, nil
		}
		return policies[len(policies)-1], nil
	}
	h.approval.changePolicy = func(_ context.Context, r approvalapi.ChangePolicyRequest) (approvalapi.PolicyVersion, error) {
		r.Policy.Version = strconv.Itoa(len(policies) + 2)
		policies = append(policies, approvalapi.PolicyVersion{Policy: r.Policy, ChangedBy: r.Actor.Username, ChangedAt: t0})
		return policies[len(policies)-1], nil
	}
	h.approval.policyHistory = func(context.Context, approvalapi.PolicyRequest) (approvalapi.PolicyHistoryPage, error) {
		return approvalapi.PolicyHistoryPage{Items: policies}, nil
	}
	fund := disbursementapi.Fund{ID: fundID, Name: "EVA-DEMO", AllocatedCents: 100_000_000, AvailableCents: 100_000_000, CreatedAt: t0}
	payee := disbursementapi.Payee{ID: payeeID, Name: "Safe House Dhaka", Country: "BD", Account: "ACC-1", CreatedAt: t0}
	payout := disbursementapi.Payout{ID: payoutID, CaseID: dhakaCase, FundID: fundID, PayeeID: payeeID, AmountCents: 25000,
		Status: disbursementapi.PayoutFailed, Attempt: 1, CreatedAt: t0, UpdatedAt: t0}
	h.disb.funds = func(context.Context, disbursementapi.ListRequest) (disbursementapi.FundsPage, error) {
		return disbursementapi.FundsPage{Items: []disbursementapi.Fund{fund}}, nil
	}
	h.disb.fund = func(_ context.Context, id string) (disbursementapi.Fund, error) {
		if id != fundID {
			return disbursementapi.Fund{}, assist.Errorf(assist.CodeNotFound, "no fund %q", id)
		}
		return fund, nil
	}
	h.disb.fundHistory = func(_ context.Context, id string) (disbursementapi.FundHistory, error) {
		if id != fundID {
			return disbursementapi.FundHistory{}, assist.Errorf(assist.CodeNotFound, "no fund %q", id)
		}
		return disbursementapi.FundHistory{FundID: id, Points: []disbursementapi.FundPoint{
			{At: t0, AllocatedCents: 100_000_000, AvailableCents: 100_000_000},
			{At: t0.Add(time.Hour), AllocatedCents: 100_000_000, ReservedCents: 25000, AvailableCents: 100_000_000 - 25000},
		}}, nil
	}
	h.disb.ledger = func(_ context.Context, r disbursementapi.LedgerRequest) (disbursementapi.Ledger, error) {
		if r.ID != fundID {
			return disbursementapi.Ledger{}, assist.Errorf(assist.CodeNotFound, "no fund %q", r.ID)
		}
		e := disbursementapi.LedgerEntry{Seq: 1, EventID: fundID, EventType: "FundCreated", Kind: disbursementapi.EntryAllocate,
			FundID: fundID, Debit: disbursementapi.AccountAvailable(fundID), Credit: disbursementapi.AccountAllocation(fundID),
			AmountCents: fund.AllocatedCents, At: t0, Actor: "fin"}
		e.Balances = disbursementapi.Balances{}.Apply(e)
		return disbursementapi.Ledger{FundID: fundID, Entries: []disbursementapi.LedgerEntry{e}, Balances: e.Balances, Fund: fund}, nil
	}
	h.disb.allocation = func(_ context.Context, r disbursementapi.ChangeAllocationRequest) (disbursementapi.Fund, error) {
		if r.ID != fundID {
			return disbursementapi.Fund{}, assist.Errorf(assist.CodeNotFound, "no fund %q", r.ID)
		}
		f := fund
		f.AllocatedCents, f.AvailableCents = r.AllocatedCents, r.AllocatedCents
		return f, nil
	}
	h.disb.reconcile = func(_ context.Context, r disbursementapi.ReconcileRequest) (reconcile.Report, error) {
		return reconcile.Reconcile([]reconcile.Posted{{PayoutID: payoutID, FundID: fundID, PayeeID: payeeID, ProviderRef: "SIM-1",
			AmountCents: 25000, Settled: true, At: t0}}, r.Lines), nil
	}
	h.disb.createFund = func(_ context.Context, r disbursementapi.CreateFundRequest) (disbursementapi.Fund, error) {
		return disbursementapi.Fund{ID: r.CommandID, Name: r.Name, AllocatedCents: r.AllocatedCents, AvailableCents: r.AllocatedCents, CreatedAt: t0}, nil
	}
	h.disb.payees = func(context.Context, disbursementapi.ListRequest) (disbursementapi.PayeesPage, error) {
		return disbursementapi.PayeesPage{Items: []disbursementapi.Payee{payee}}, nil
	}
	h.disb.payee = func(_ context.Context, id string) (disbursementapi.Payee, error) {
		if id != payeeID {
			return disbursementapi.Payee{}, assist.Errorf(assist.CodeNotFound, "no payee %q", id)
		}
		return payee, nil
	}
	h.disb.createPayee = func(_ context.Context, r disbursementapi.CreatePayeeRequest) (disbursementapi.Payee, error) {
		return disbursementapi.Payee{ID: r.CommandID, Name: r.Name, Country: r.Country, Account: r.Account, CreatedAt: t0}, nil
	}
	h.disb.payeeAccount = func(_ context.Context, r disbursementapi.ChangeAccountRequest) (disbursementapi.Payee, error) {
		if r.ID != payeeID {
			return disbursementapi.Payee{}, assist.Errorf(assist.CodeNotFound, "no payee %q", r.ID)
		}
		p := payee
		p.Account = r.Account
		return p, nil
	}
	h.disb.payouts = func(context.Context, disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error) {
		return disbursementapi.PayoutsPage{Items: []disbursementapi.Payout{payout}}, nil
	}
	h.disb.retryPayout = func(_ context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error) {
		p := payout
		p.Status, p.Attempt = disbursementapi.PayoutPending, 2
		return p, nil
	}
	h.disb.cancelPayout = func(_ context.Context, r disbursementapi.PayoutCommand) (disbursementapi.Payout, error) {
		p := payout
		p.Status = disbursementapi.PayoutCancelled
		return p, nil
	}
	ev := func(seq uint64, caseID, typ string) auditapi.ArchivedEvent {
		return auditapi.ArchivedEvent{Seq: seq, ID: fmt.Sprintf("0194e1c2-7a3b-7c4d-8e5f-%012d", seq), CaseID: caseID, Type: typ,
			At: t0.Add(time.Duration(seq) * time.Second), Actor: assist.Actor{Username: "ana", Role: requester, Post: "BGD-DHAKA"},
			Data: json.RawMessage(`{"amountUsdCents":"25000"}`), Hash: fmt.Sprintf("%064x", seq), Chain: fmt.Sprintf("%064x", seq+1000)}
	}
	h.audit.events = func(_ context.Context, r auditapi.EventsRequest) (auditapi.EventsPage, error) {
		// Three events, two a page.
		all := []auditapi.ArchivedEvent{ev(1, dhakaCase, "RequestSubmitted"), ev(2, dhakaCase, "ReviewClaimed"), ev(3, mumbaiCase, "RequestSubmitted")}
		var p auditapi.EventsPage
		for _, e := range all {
			if e.Seq > r.After && len(p.Items) < 2 {
				p.Items = append(p.Items, e)
			}
		}
		if n := len(p.Items); n == 2 && p.Items[n-1].Seq < 3 {
			p.Next = p.Items[n-1].Seq
		}
		return p, nil
	}
	h.audit.history = func(_ context.Context, id string) ([]auditapi.ArchivedEvent, error) {
		if _, err := get(nil, id); err != nil {
			return nil, err
		}
		return []auditapi.ArchivedEvent{ev(1, id, "RequestSubmitted")}, nil
	}
	h.audit.asOf = func(_ context.Context, r auditapi.AsOfRequest) (caseview.Case, error) { return get(nil, r.CaseID) }
	h.audit.verify = func(context.Context, auditapi.VerifyRequest) (auditapi.VerifyResult, error) {
		return auditapi.VerifyResult{OK: true, Events: 3}, nil
	}
	h.audit.checkpoint = func(context.Context, struct{}) (auditapi.SignedCheckpoint, error) {
		return auditapi.SignedCheckpoint{Size: 3, Note: fakeCheckpoint, At: t0}, nil
	}
	h.audit.key = func(context.Context, struct{}) (auditapi.VerifierKey, error) {
		return auditapi.VerifierKey{Key: fakeVerifierKey}, nil
	}
	h.audit.leaf = func(_ context.Context, seq uint64) (auditapi.Leaf, error) {
		if seq > 3 {
			return auditapi.Leaf{}, assist.Errorf(assist.CodeNotFound, "event %d is not archived", seq)
		}
		return auditapi.Leaf{Seq: seq, Bytes: []byte("eva-audit-leaf/v1\nseq " + strconv.FormatUint(seq, 10) + "\n")}, nil
	}
	h.audit.inclusion = func(_ context.Context, r auditapi.InclusionRequest) (auditapi.Proof, error) {
		if r.Size > 3 {
			return auditapi.Proof{}, &assist.Error{Code: assist.CodeInvalid, Message: "invalid size",
				Fields: []assist.FieldError{{Field: "size", Message: "the tree has 3 leaves"}}}
		}
		return auditapi.Proof{Hashes: []tlog.Hash{{1}, {2}}}, nil
	}
	h.audit.consistent = func(_ context.Context, r auditapi.ConsistencyRequest) (auditapi.Proof, error) {
		return auditapi.Proof{Hashes: []tlog.Hash{{3}}}, nil
	}
	h.audit.access = func(_ context.Context, id string) ([]eventlog.Access, error) {
		return []eventlog.Access{{CaseID: id, Username: "olu", Role: approver, At: t0, What: "beneficiary"}}, nil
	}
	h.audit.dead = func(_ context.Context, r auditapi.DeadLettersRequest) (auditapi.DeadLettersPage, error) {
		return auditapi.DeadLettersPage{Items: []eventlog.DeadLetter{{Seq: r.After + 1, Consumer: "approval",
			Subject: "eva.case." + dhakaCase + ".RequestAmended", EventSeq: 7, EventID: dhakaCase, Reason: "cannot apply",
			DeadLetteredAt: t0}}}, nil
	}
}

// req is one request to the harness.
type req struct {
	user   string // "" sends no credentials
	method string
	path   string
	body   string
	header map[string]string // "" deletes a header
}

// do serves r. A body is sent as application/json unless header says
// otherwise.
func (h *harness) do(r req) *httptest.ResponseRecorder {
	h.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.user != "" {
		tok, ok := h.tokens[r.user]
		if !ok {
			h.t.Fatalf("no test user %q", r.user)
		}
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, hr)
	h.checkResponse(hr, w)
	return w
}

// get is a GET as user.
func (h *harness) get(user, path string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do(req{user: user, method: http.MethodGet, path: path})
}

// post is a POST of body as user.
func (h *harness) post(user, path, body string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do(req{user: user, method: http.MethodPost, path: path, body: body})
}

// decodeProblem checks w is a problem with status and returns it.
func decodeProblem(tb testing.TB, w *httptest.ResponseRecorder, status int) problem {
	tb.Helper()
	if w.Code != status {
		tb.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, w.Body)
	}
	var p problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		tb.Fatalf("problem %s: %v", w.Body, err)
	}
	if p.Status != status || p.Title == "" || p.Type == "" || p.Errors == nil {
		tb.Fatalf("problem %+v", p)
	}
	return p
}

// fieldsOf lists the fields a problem names.
func fieldsOf(p problem) []string {
	var fs []string
	for _, f := range p.Errors {
		fs = append(fs, f.Field)
	}
	return fs
}

// decodeJSONBody checks w is a JSON answer with status and decodes it.
func decodeJSONBody[T any](tb testing.TB, w *httptest.ResponseRecorder, status int) T {
	tb.Helper()
	var v T
	if w.Code != status {
		tb.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("Content-Type %q; body %s", ct, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		tb.Fatalf("decode %s: %v", w.Body, err)
	}
	return v
}

// idemRows counts the stored idempotency keys.
func (h *harness) idemRows() int {
	h.t.Helper()
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM gateway_idempotency`).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

var errBoom = errors.New("boom: database exploded at 10.0.0.7")
