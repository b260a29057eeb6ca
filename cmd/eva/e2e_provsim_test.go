package main

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// eva dev pays through `eva provsim` over HTTP (--provider), with latency,
// 30 % of calls failing, and every settlement called back three times to
// --provider-callbacks: the approved case is disbursed, and the
// simulator's books show it paid once, of the approved amount, to the
// payee's account.
func TestE2EPayoutThroughProvsimOverHTTP(t *testing.T) {
	t.Parallel()
	simDir, dataDir := t.TempDir(), t.TempDir()
	callbacks := evatest.FreeAddr(t)
	sim := startProc(t, "eva provsim", childEnv(), "provsim", "--listen", "127.0.0.1:0", "--data", simDir,
		"--latency", "20ms", "--failure-rate", "0.3", "--settle-after", "300ms", "--seed", "3",
		"--callback", "http://"+callbacks+"/provider/callbacks", "--duplicates", "2", "--callback-jitter", "200ms")
	sim.waitOutput("provsim: listening on ", 30*time.Second)
	simURL := regexp.MustCompile(`provsim: listening on (http://\S+)`).FindStringSubmatch(sim.out.String())[1]

	_, c := startDev(t, "eva dev", dataDir, "--provider", simURL, "--provider-callbacks", callbacks)
	fund, payee := c.demoFund(), c.payee()
	cs := post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, "REF-PROVSIM-1", 40_000), http.StatusCreated, nil)
	post[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/claim", nil, http.StatusOK, nil)
	post[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/approve",
		map[string]any{"amount_usd_cents": 30_000, "fund_id": fund.ID, "note": "approved"}, http.StatusOK, nil)
	c.waitStatus(cs.ID, "disbursed", 60*time.Second)
	pays := c.settledPayouts(cs.ID)
	if len(pays) != 1 {
		t.Fatalf("payouts %+v", pays)
	}

	// The simulator's books (it keeps running; SQLite reads beside it).
	db, err := sql.Open("sqlite", "file:"+filepath.Join(simDir, "provsim.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT key, amount, payee_id, account, status FROM provsim_payments`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	paid := 0
	for rows.Next() {
		var key, payeeID, acct, status string
		var amount int64
		if err := rows.Scan(&key, &amount, &payeeID, &acct, &status); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, pays[0].ID+"-") || amount != 30_000 || payeeID != payee.ID || acct == "" {
			t.Errorf("booked %s %d to %s (%s), status %s; the payout is %+v", key, amount, payeeID, acct, status, pays[0])
		}
		if status != "failed" {
			paid++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if paid != 1 {
		t.Fatalf("the provider booked %d payments for the payout, want 1", paid)
	}
}
