package sim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// The invariants of DESIGN.md §5 that concern money, as the simulator
// checks them: read from the stores (disbursement's database, the log) and
// from the bank's books, never from what the services say.

type fundRow struct {
	id                        string
	allocated, reserved, paid int64
}

type payoutRow struct {
	caseID, fundID, holdID, stage, holdStatus string
	amount                                    int64
	attempt                                   int
}

// check verifies what must hold after every step: no fund overspent, the
// ledger's sums equal its holds, no approval paid twice by the bank, the
// bank never paid a fund's payees more than its allocation, and every
// approval acknowledged to a client is in the log.
func (w *world) check() {
	if w.failed != nil {
		return
	}
	w.checkAcked()
	if !w.dirty || w.failed != nil {
		return // the stores did not change: what held still holds
	}
	w.dirty = false
	funds, err := w.readFunds()
	if err != nil {
		w.fail("read funds: %v", err)
		return
	}
	sums, err := w.holdSums()
	if err != nil {
		w.fail("read holds: %v", err)
		return
	}
	for _, f := range funds {
		if f.reserved < 0 || f.paid < 0 || f.reserved+f.paid > f.allocated {
			w.fail("fund %s overspent: allocated %d, reserved %d, paid %d", f.id, f.allocated, f.reserved, f.paid)
			return
		}
		s := sums[f.id]
		if f.reserved != s[disbursementapi.HoldHeld]+s[disbursementapi.HoldReserved] || f.paid != s[disbursementapi.HoldPaid] {
			w.fail("fund %s's sums are not its holds': reserved %d, paid %d; holds held %d, reserved %d, paid %d",
				f.id, f.reserved, f.paid, s[disbursementapi.HoldHeld], s[disbursementapi.HoldReserved], s[disbursementapi.HoldPaid])
			return
		}
	}
	if paid := w.bank.paid(); len(paid) > 0 {
		payouts, err := w.readPayouts()
		if err != nil {
			w.fail("read payouts: %v", err)
			return
		}
		byCase := map[string][]string{}
		byFund := map[string]int64{}
		for _, pm := range paid {
			p, ok := payouts[payoutOf(pm.Key)]
			if !ok {
				w.fail("the bank paid %s, which is no payout of the ledger", pm.Key)
				return
			}
			if pm.AmountCents != p.amount {
				w.fail("the bank paid %d for %s, whose payout is of %d", pm.AmountCents, pm.Key, p.amount)
				return
			}
			if p.holdStatus == disbursementapi.HoldReleased {
				w.fail("the bank paid %d for %s, whose hold the ledger gave back to its fund", pm.AmountCents, w.caseName(p.caseID))
				return
			}
			byCase[p.caseID] = append(byCase[p.caseID], "attempt "+pm.Key[len(payoutOf(pm.Key))+1:])
			byFund[p.fundID] += pm.AmountCents
		}
		for _, id := range sortedKeys(byCase) {
			if keys := byCase[id]; len(keys) > 1 {
				w.fail("request %s was paid %d times by the bank, under the keys of its payout's %s", w.caseName(id), len(keys),
					strings.Join(keys, " and "))
				return
			}
		}
		for _, f := range funds {
			if byFund[f.id] > f.allocated {
				w.fail("the bank paid %d from fund %s, allocated %d", byFund[f.id], f.id, f.allocated)
				return
			}
		}
	}
}

// checkAcked verifies that every approval acknowledged to a client is in
// the log, and none refused is.
func (w *world) checkAcked() {
	for _, c := range w.cases {
		for _, cl := range c.clients {
			for _, id := range cl.acked {
				if _, ok := w.stream.ids[id]; !ok {
					w.fail("the approval %s acknowledged to %s is not in the log", id, cl.name)
					return
				}
			}
			for _, id := range cl.refused {
				if _, ok := w.stream.ids[id]; ok {
					w.fail("the approval %s refused to %s is in the log", id, cl.name)
					return
				}
			}
		}
	}
}

// checkFinal verifies, once the system settled, that the ledger and the
// bank agree with the log: every hold was paid or released, as the log
// says; nothing is reserved any more; each fund's paid amount is what the
// bank settled for it; every acknowledged approval was paid or its payout
// cancelled.
func (w *world) checkFinal() {
	w.dirty = true
	w.check()
	if w.failed != nil {
		return
	}
	w.checkChains()
	if w.failed != nil {
		return
	}
	type caseLog struct {
		holds    map[string]string // hold → event that settled its fate
		approved string            // the approval's hold
		settled  bool
	}
	logs := map[string]*caseLog{}
	for _, r := range w.events() {
		cl := logs[r.Event.CaseID]
		if cl == nil {
			cl = &caseLog{holds: map[string]string{}}
			logs[r.Event.CaseID] = cl
		}
		switch b := r.Event.Body.(type) {
		case assist.RequestApproved:
			cl.approved = b.HoldID
		case assist.PayoutSettled:
			cl.settled = true
			cl.holds[cl.approved] = disbursementapi.HoldPaid
		case assist.FundsReleased:
			cl.holds[b.HoldID] = disbursementapi.HoldReleased
		}
	}
	rows, err := w.db.Query(w.ctx, `SELECT id, case_id, status FROM disb_holds ORDER BY id`)
	if err != nil {
		w.fail("read holds: %v", err)
		return
	}
	type hold struct{ id, caseID, status string }
	var holds []hold
	for rows.Next() {
		var h hold
		if err := rows.Scan(&h.id, &h.caseID, &h.status); err != nil {
			rows.Close()
			w.fail("read holds: %v", err)
			return
		}
		holds = append(holds, h)
	}
	rows.Close()
	ledger := map[string]bool{}
	for _, h := range holds {
		ledger[h.id] = true
		want := disbursementapi.HoldReleased // never recorded: swept
		if cl := logs[h.caseID]; cl != nil && cl.holds[h.id] != "" {
			want = cl.holds[h.id]
		}
		if h.status != want {
			w.fail("hold %s of %s is %s in the ledger; the log says %s", h.id, w.caseName(h.caseID), h.status, want)
			return
		}
	}
	for _, id := range sortedKeys(logs) {
		cl := logs[id]
		if cl.approved == "" {
			continue
		}
		if !ledger[cl.approved] {
			w.fail("the approval of %s holds %s, which the ledger does not know", w.caseName(id), cl.approved)
			return
		}
		if cl.holds[cl.approved] == "" {
			w.fail("the approval of %s was neither paid nor cancelled", w.caseName(id))
			return
		}
	}
	funds, err := w.readFunds()
	if err != nil {
		w.fail("read funds: %v", err)
		return
	}
	payouts, err := w.readPayouts()
	if err != nil {
		w.fail("read payouts: %v", err)
		return
	}
	settled := map[string]int64{}
	for _, pm := range w.bank.paid() {
		p := payouts[payoutOf(pm.Key)]
		if pm.status != disbursement.ReceiptSettled || p.stage != "settled" || pm.Key != fmt.Sprintf("%s-%d", payoutOf(pm.Key), p.attempt) {
			w.fail("the bank's payment %s is %s; its payout is %s at attempt %d", pm.Key, pm.status, p.stage, p.attempt)
			return
		}
		settled[p.fundID] += pm.AmountCents
	}
	for _, f := range funds {
		if f.reserved != 0 || f.paid != settled[f.id] {
			w.fail("fund %s ends with %d reserved and %d paid; the bank settled %d for it", f.id, f.reserved, f.paid, settled[f.id])
			return
		}
	}
}

func (w *world) readFunds() ([]fundRow, error) {
	rows, err := w.db.Query(w.ctx, `SELECT id, allocated, reserved, paid FROM disb_funds ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []fundRow
	for rows.Next() {
		var f fundRow
		if err := rows.Scan(&f.id, &f.allocated, &f.reserved, &f.paid); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// holdSums is the amount of the holds of each fund in each status.
func (w *world) holdSums() (map[string]map[string]int64, error) {
	rows, err := w.db.Query(w.ctx, `SELECT fund_id, status, sum(amount) FROM disb_holds GROUP BY fund_id, status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]int64{}
	for rows.Next() {
		var fund, status string
		var sum int64
		if err := rows.Scan(&fund, &status, &sum); err != nil {
			return nil, err
		}
		if out[fund] == nil {
			out[fund] = map[string]int64{}
		}
		out[fund][status] = sum
	}
	return out, rows.Err()
}

func (w *world) readPayouts() (map[string]payoutRow, error) {
	rows, err := w.db.Query(w.ctx, `SELECT p.id, p.case_id, p.fund_id, p.hold_id, p.stage, p.amount, p.attempt, h.status
		FROM disb_payouts p JOIN disb_holds h ON h.id = p.hold_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]payoutRow{}
	for rows.Next() {
		var id string
		var p payoutRow
		if err := rows.Scan(&id, &p.caseID, &p.fundID, &p.holdID, &p.stage, &p.amount, &p.attempt, &p.holdStatus); err != nil {
			return nil, err
		}
		out[id] = p
	}
	return out, rows.Err()
}

// caseName is a case as the trace names it.
func (w *world) caseName(id string) string {
	for _, c := range w.cases {
		if c.id == id {
			return fmt.Sprintf("case%d", c.i)
		}
	}
	return id
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkChains checks that every event of the log names the one before it
// of its case (Eva-Prev-Seq, as the event that follows another in an
// atomic batch does too): no append, batched or not, broke a case's
// history.
func (w *world) checkChains() {
	last := map[string]uint64{}
	for _, m := range w.stream.all() {
		if m.Prev != last[m.Of] {
			w.fail("event %d (%s) of %s %s follows %d; the one before it is %d", m.Seq, m.Type, m.Kind, m.Of, m.Prev, last[m.Of])
			return
		}
		last[m.Of] = m.Seq
	}
}
