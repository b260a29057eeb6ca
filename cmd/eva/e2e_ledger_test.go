package main

import (
	"bytes"
	"database/sql"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// The money ledger's audit on the real binaries: cases disbursed by
// eva dev through `eva provsim` over HTTP, then, on the stopped dev's
// data directory, `eva audit reconcile` against the statement the
// provider serves (clean: exit 0), and against a copy of it with one
// payout's line missing, another's twice and a third's amount altered
// (each named, exit 1). Then `eva audit replay --service ledger` builds
// the ledger again from the log and finds it equal to the live one, until
// a posted entry's amount is edited in SQL: then it names the entry and
// exits 1.
func TestE2ELedgerReconcileAndReplay(t *testing.T) {
	t.Parallel()
	simDir, dataDir := t.TempDir(), filepath.Join(t.TempDir(), "data")
	callbacks := evatest.FreeAddr(t)
	sim := startProc(t, "eva provsim", childEnv(), "provsim", "--listen", "127.0.0.1:0", "--data", simDir,
		"--settle-after", "200ms", "--callback", "http://"+callbacks+"/provider/callbacks")
	sim.waitOutput("provsim: listening on ", 30*time.Second)
	simURL := regexp.MustCompile(`provsim: listening on (http://\S+)`).FindStringSubmatch(sim.out.String())[1]

	eva, c := startDev(t, "eva dev", dataDir, "--provider", simURL, "--provider-callbacks", callbacks)
	fund, payee := c.demoFund(), c.payee()
	var payouts []string
	for i, cents := range []int64{12_000, 20_000, 7_500} {
		cs := post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, "REF-RECONCILE-"+string(rune('A'+i)), cents), http.StatusCreated, nil)
		post[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/claim", nil, http.StatusOK, nil)
		post[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/approve",
			map[string]any{"amount_usd_cents": cents, "fund_id": fund.ID, "note": "approved"}, http.StatusOK, nil)
		c.waitStatus(cs.ID, "disbursed", 60*time.Second)
		payouts = append(payouts, c.settledPayouts(cs.ID)[0].ID)
	}
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}
	reconcile := func(args ...string) (int, string) {
		t.Helper()
		p := startProc(t, "eva audit reconcile", childEnv(), append([]string{"audit", "reconcile", "--data", dataDir}, args...)...)
		return p.wait(60 * time.Second), p.out.String()
	}

	for _, args := range [][]string{nil, {"--provider", simURL, "--statement", "-"}} {
		if code, out := reconcile(args...); code == 0 || !strings.Contains(out, "--statement FILE (- for standard input) or --provider URL, one of them") {
			t.Errorf("eva audit reconcile %q: exit %d, want a failure naming the two flags\n%s", args, code, out)
		}
	}
	code, out := reconcile("--provider", simURL)
	if code != 0 || !strings.Contains(out, `"ok": true`) || !strings.Contains(out, `"matched": 3`) {
		t.Fatalf("eva audit reconcile --provider: exit %d, want a clean reconciliation of 3 payouts\n%s", code, out)
	}

	// The provider's statement, as an auditor would download it, then
	// altered: the first payout's line dropped, the second's twice, the
	// third's amount raised by a cent.
	resp, err := http.Get(simURL + "/v1/statement")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/v1/statement: %s %v", simURL, resp.Status, err)
	}
	lineOf := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(body.String()), "\n") {
		for _, p := range payouts {
			if strings.Contains(l, `"payout_id":"`+p+`"`) {
				lineOf[p] = l
			}
		}
	}
	if len(lineOf) != 3 {
		t.Fatalf("the statement has lines for %d of the 3 payouts %v:\n%s", len(lineOf), payouts, body.String())
	}
	altered := strings.Replace(lineOf[payouts[2]], `"amount_usd_cents":7500`, `"amount_usd_cents":7501`, 1)
	if altered == lineOf[payouts[2]] {
		t.Fatalf("no amount to alter in %s", altered)
	}
	statement := filepath.Join(t.TempDir(), "statement.jsonl")
	if err := os.WriteFile(statement, []byte(strings.Join([]string{lineOf[payouts[1]], lineOf[payouts[1]], altered}, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = reconcile("--statement", statement)
	if code == 0 {
		t.Fatalf("eva audit reconcile of an altered statement: exit 0\n%s", out)
	}
	for kind, payout := range map[string]string{"missing_from_statement": payouts[0], "duplicate_line": payouts[1], "amount_differs": payouts[2]} {
		if !regexp.MustCompile(`"kind": "` + kind + `",\s+"payout_id": "` + payout + `"`).MatchString(out) {
			t.Errorf("the report does not name %s of payout %s:\n%s", kind, payout, out)
		}
	}
	if !strings.Contains(out, `"ledger": "75.00"`) || !strings.Contains(out, `"statement": "75.01"`) {
		t.Errorf("the altered amount is not shown both ways:\n%s", out)
	}
	t.Logf("altered statement: %s", lastLine(out))

	replay := func() (int, string) {
		t.Helper()
		p := startProc(t, "eva audit replay --service ledger", childEnv(), "audit", "replay", "--data", dataDir, "--service", "ledger")
		return p.wait(60 * time.Second), p.out.String()
	}
	code, out = replay()
	if code != 0 || !strings.Contains(out, "ledger: the live ledger equals the one the log makes") || !strings.Contains(out, fund.ID) {
		t.Fatalf("eva audit replay --service ledger: exit %d\n%s", code, out)
	}
	t.Logf("replay of the ledger:\n%s", out)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "disbursement.db"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE disb_ledger_entries SET amount = amount + 100 WHERE kind = 'post' AND payout_id = ?`, payouts[1])
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("edit the ledger's post of payout %s: %v (%d rows)", payouts[1], err, n)
	}
	db.Close()
	code, out = replay()
	if code == 0 || !regexp.MustCompile(`differs: live event \d+/0 PayoutSettled: post 201\.00 USD reserved → paid fund \S+ hold \S+ payout `+payouts[1]+
		`.*; the log makes event \d+/0 PayoutSettled: post 200\.00 USD`).MatchString(out) {
		t.Fatalf("eva audit replay --service ledger after an edit of payout %s's post: exit %d, want a failure naming it\n%s", payouts[1], code, out)
	}
	t.Logf("edited post: %s", lastLine(out))
}
