package intake_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/rpc/rpctest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// run starts intake.Run as the platform does and waits until it answers.
func (h *harness) run() *intakeapi.Client {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- intake.Run(ctx, h.deps(nil)) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("intake.Run: %v", err)
		}
	})
	cl := intakeapi.NewClient(h.nc)
	evatest.Eventually(h.t, "intake to answer", func() bool {
		_, err := cl.Get(h.ctx, newID())
		return assist.IsCode(err, assist.CodeNotFound)
	})
	return cl
}

// intake.Run serves every command over NATS, maps errors with their codes
// and fields across the wire, and projects the log; replies carry no
// personal data but through Personal.
func TestRunServesCommandsOverNATS(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	cl := h.run()
	ctx := h.ctx

	r := fileRequest(ana)
	c, err := cl.File(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cl.Get(ctx, c.ID); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("Get over NATS = %+v, %v\nwant %+v", got, err, c)
	}
	// The raw reply of a filing holds ciphertext only.
	raw := nats.NewMsg(intakeapi.File.Subject)
	raw.Data, _ = json.Marshal(r)
	h.signer.Sign(raw, rpc.Principal{Username: ana.Username, Roles: []string{ana.Role}, Posts: []string{ana.Post}},
		r.CommandID, time.Minute)
	msg, err := h.nc.RequestMsgWithContext(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	b := beneficiary()
	if s := containsAny(msg.Data, b.Reference, b.Name, b.Contact, b.Nationality); s != "" {
		t.Fatalf("the reply to File carries %q in the clear", s)
	}

	p, err := cl.Personal(ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
	if err != nil || p != beneficiary() {
		t.Fatalf("Personal over NATS = %+v, %v", p, err)
	}
	if acc, err := h.log.Accesses(ctx, c.ID); err != nil || len(acc) != 1 {
		t.Fatalf("accesses = %v, %v; want the read over NATS recorded", acc, err)
	}

	bad := fileRequest(ana)
	bad.Beneficiary.DateOfBirth = "12/31/1999"
	_, err = cl.File(ctx, bad)
	requireField(t, err, "beneficiary.date_of_birth")
	other := fileRequest(ana)
	other.Post = "NPL-KTM"
	_, err = cl.File(ctx, other)
	requireCode(t, err, assist.CodeForbidden)

	if _, err := cl.Amend(ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, AmountCents: ptr(int64(500))}); err != nil {
		t.Fatal(err)
	}
	_, err = cl.Withdraw(ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: bo, CaseID: c.ID, Reason: "r"})
	requireCode(t, err, assist.CodeForbidden)
	_, err = cl.Answer(ctx, intakeapi.AnswerRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Answer: "a"})
	requireCode(t, err, assist.CodeConflict)
	if got, err := cl.Withdraw(ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Reason: "r"}); err != nil || got.Status != string(assist.StateWithdrawn) {
		t.Fatalf("Withdraw over NATS = %+v, %v", got, err)
	}
	// A malformed body is a 4xx, not a 5xx.
	msg, err = h.nc.RequestWithContext(ctx, intakeapi.File.Subject, []byte("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != string(assist.CodeInvalid) {
		t.Fatalf("malformed request answered with code %q, want %q", code, assist.CodeInvalid)
	}

	// The projection Run keeps lists the case as withdrawn.
	evatest.Eventually(t, "the withdrawal in the list", func() bool {
		page, err := cl.List(ctx, intakeapi.ListFilter{Status: "withdrawn", Posts: []string{"BGD-DHAKA"}})
		if err != nil {
			t.Fatal(err)
		}
		return len(page.Items) == 1 && page.Items[0].ID == c.ID
	})
	_, err = cl.List(ctx, intakeapi.ListFilter{Cursor: "nope"})
	requireField(t, err, "cursor")
}

// A command whose actor the gateway did not sign for it — none, forged by
// another key, expired, signed for another command, or naming another
// actor than the signed one — is refused with forbidden over NATS, and
// nothing is appended to the event log (issue 7: "anyone can send
// eva.intake.* with any actor").
func TestUnvouchedActorsAppendNothing(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	cl := h.run()
	c, err := cl.File(h.ctx, fileRequest(ana)) // signed: accepted
	if err != nil {
		t.Fatal(err)
	}
	stream, err := h.js.Stream(h.ctx, eventlog.Stream)
	if err != nil {
		t.Fatal(err)
	}
	count := func() uint64 {
		t.Helper()
		info, err := stream.Info(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	before := count()

	bare := context.Background()
	intruder, _ := rpctest.Keys(t)
	stale := h.signer.WithClock(func() time.Time { return time.Now().Add(-time.Hour) })
	anaUser := rpc.Principal{Username: ana.Username, Roles: []string{ana.Role}, Posts: []string{ana.Post}}
	ghost := assist.Actor{Username: "ghost", Role: assist.RoleRequester, Post: ana.Post}
	// replayed sends r with the signature of another, signed command.
	replayed := func(r intakeapi.WithdrawRequest) error {
		signed := nats.NewMsg(intakeapi.Withdraw.Subject)
		signed.Data, _ = json.Marshal(intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: newID(), Reason: "r"})
		h.signer.Sign(signed, anaUser, "other", time.Minute)
		m := nats.NewMsg(intakeapi.Withdraw.Subject)
		m.Data, _ = json.Marshal(r)
		m.Header = signed.Header
		reply, err := h.nc.RequestMsgWithContext(h.ctx, m)
		if err != nil {
			return err
		}
		return &assist.Error{Code: assist.Code(reply.Header.Get(micro.ErrorCodeHeader))}
	}
	withdraw := intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Reason: "r"}
	for name, send := range map[string]func() error{
		"missing": func() error { _, err := cl.File(bare, fileRequest(ana)); return err },
		"forged": func() error {
			_, err := cl.File(rpc.ActingAsRequested(bare, intruder), fileRequest(ana))
			return err
		},
		"expired": func() error { _, err := cl.Withdraw(rpc.ActingAsRequested(bare, stale), withdraw); return err },
		"another actor": func() error {
			_, err := cl.File(rpc.ActingFor(bare, h.signer, anaUser), fileRequest(ghost))
			return err
		},
		"replayed for another command": func() error { return replayed(withdraw) },
		"personal data without a signature": func() error {
			_, err := cl.Personal(bare, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
			return err
		},
	} {
		if err := send(); !assist.IsCode(err, assist.CodeForbidden) {
			t.Errorf("%s: %v, want forbidden", name, err)
		}
	}
	if after := count(); after != before {
		t.Errorf("refused commands appended %d events", after-before)
	}
	if acc, err := h.log.Accesses(h.ctx, c.ID); err != nil || len(acc) != 0 {
		t.Errorf("accesses = %v, %v; want no read of personal data", acc, err)
	}
}
