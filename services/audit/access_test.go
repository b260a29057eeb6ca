package audit_test

import (
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// The access log (reads of personal data) is archived with its own Merkle
// tree and signed checkpoints, and verified like the event log: a changed
// or removed record fails the check, naming it.
func TestAccessLogIsVerified(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		ctx := e.ctx
		caseID := newID()
		for i := range 5 {
			if err := e.log.RecordAccess(ctx, eventlog.Access{CaseID: caseID, Username: "olu", Role: assist.RoleApprover,
				At: time.Date(2026, 3, 1, 12, i, 0, 0, time.UTC), What: "beneficiary"}); err != nil {
				t.Fatal(err)
			}
		}
		e.start()
		var cp auditapi.SignedCheckpoint
		evatest.Eventually(t, "a checkpoint of the five reads", func() bool {
			var err error
			cp, err = e.client.AccessCheckpoint(ctx)
			return err == nil && cp.Size == 5
		})
		e.stop()
		if _, err := auditapi.OpenCheckpoint([]byte(cp.Note), e.key.Verifier); err == nil {
			t.Fatal("the access log's checkpoint opened as the event log's")
		}
		head, err := auditapi.OpenCheckpointOfAny([]byte(cp.Note), e.key.Verifier)
		if err != nil || head.Origin != audit.AccessOrigin(e.key.Signer.Name()) {
			t.Fatalf("access checkpoint %q: %+v %v", cp.Note, head, err)
		}
		opt := audit.VerifyOptions{VerifierKey: e.key.Verifier, Checkpoints: [][]byte{[]byte(cp.Note)}}
		verify := func() auditapi.VerifyResult {
			t.Helper()
			res, err := audit.VerifyAll(ctx, e.store, e.log, opt)
			if err != nil || res.Access == nil {
				t.Fatalf("VerifyAll = %+v %v", res, err)
			}
			return res
		}
		if res := verify(); !res.OK || res.Access.Records != 5 || res.Access.Checkpoints < 1 || res.Access.Root != head.Root.String() {
			t.Fatalf("verify = %s, want ok with 5 access records", show(res))
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := db.Exec(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
		}
		exec(`UPDATE audit_access SET data = $1 WHERE seq = 3`, []byte(`{"username":"nobody"}`))
		res := verify()
		if res.OK || res.Access.OK || res.Access.FirstBad == nil || *res.Access.FirstBad != 3 || !strings.HasPrefix(res.Reason, "access log: ") {
			t.Fatalf("verify with a changed read = %s, want access record 3 named", show(res))
		}
		t.Log(res.Reason)
		// The last read cut off the archive (the stream still has it).
		exec(`DELETE FROM audit_access WHERE seq >= 3`)
		res = verify()
		if res.OK || res.Access.OK {
			t.Fatalf("verify with reads removed = %s, want a failure", show(res))
		}
		t.Log(res.Reason)
	})
}

// Verify while the archive grows under it: a record and its leaf commit
// together, so every walk is ok (found by the fault suite: "archived event
// N+1 is not in the Merkle tree, which covers N events" when the tree's
// size was read once, before the walk).
func TestVerifyWhileArchiving(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		e.start()
		done := make(chan struct{})
		go func() {
			defer close(done)
			now := time.Now().UTC()
			for range 150 {
				ev, err := assist.Submit(assist.Cmd{ID: newID(), Actor: ana, At: now}, assist.SubmitInput{
					Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: assist.Critical, AmountCents: 10_000,
					Justification: "shelter tonight", BeneficiaryRefHash: []byte("ref"),
				}, assist.DefaultPolicy())
				if err == nil {
					_, err = e.log.Start(e.ctx, ev)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		walks := 0
		for running := true; running; walks++ {
			select {
			case <-done:
				running = false
			default:
			}
			res, err := audit.VerifyAll(e.ctx, e.store, e.log, audit.VerifyOptions{VerifierKey: e.key.Verifier})
			if err != nil || !res.OK {
				t.Fatalf("verify during archiving (walk %d) = %s %v", walks, show(res), err)
			}
		}
		t.Logf("%d walks verified while 150 events were archived", walks)
	})
}
