package provsim

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// Statement lists the payments the simulator's books show settled by now
// (accepted, not declined, their settlement time past), in the order they
// settled, as the lines of a provider's statement (package reconcile).
// Every key the books hold is there at most once: the books pay a key
// once.
func (s *Sim) Statement(ctx context.Context) ([]reconcile.Line, error) {
	rows, err := s.db.Query(ctx, `SELECT key, ref, payee_id, account, amount, settle_at FROM provsim_payments
		WHERE status = $1 AND settle_at <= $2 ORDER BY settle_at, key`, disbursement.ReceiptSent, sqldb.Micros(s.now()))
	if err != nil {
		return nil, fmt.Errorf("simulated provider: statement: %w", err)
	}
	defer rows.Close()
	out := []reconcile.Line{}
	for rows.Next() {
		l := reconcile.Line{Currency: reconcile.Currency}
		var settled int64
		if err := rows.Scan(&l.Key, &l.ProviderRef, &l.PayeeID, &l.Account, &l.AmountCents, &settled); err != nil {
			return nil, fmt.Errorf("simulated provider: statement: %w", err)
		}
		l.SettledAt = sqldb.Time(settled).UTC()
		if i := strings.LastIndexByte(l.Key, '-'); i > 0 {
			l.PayoutID = l.Key[:i]
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// serveStatement answers the statement as JSON lines. It has the
// simulation's latency but none of its failures: a statement is read
// by an auditor, not by the payment path whose faults the simulator
// plays.
func (s *Sim) serveStatement(w http.ResponseWriter, r *http.Request) {
	if err := sleep(r.Context(), s.cfg.Latency); err != nil {
		return
	}
	lines, err := s.Statement(r.Context())
	if err != nil {
		providerhttp.WriteProblem(w, http.StatusInternalServerError, providerhttp.Problem{Title: err.Error()})
		return
	}
	w.Header().Set("Content-Type", providerhttp.StatementType)
	_ = reconcile.Write(w, lines)
}
