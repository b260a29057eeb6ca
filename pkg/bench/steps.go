package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// lifecycleSteps are the events of a case's way from filing to settled, in
// order; Steps measures the time from each to the next.
var lifecycleSteps = []string{"RequestSubmitted", "ReviewClaimed", "RequestApproved", "FundsReserved", "PayoutSent", "PayoutSettled"}

// Step is the time between two consecutive events of the lifecycle, by
// the events' own times (the time each step's command was decided), over
// the cases sampled.
type Step struct {
	From  string  `json:"from"`
	To    string  `json:"to"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	Cases int     `json:"cases"`
}

// steps reads the history of up to sample of the cases and measures the
// time between each step of the lifecycle and the next, and how many
// events a case settled appended to the log, on average.
func (c *client) steps(ctx context.Context, token string, ids []string, sample, conc int) (_ []Step, eventsPerCase float64) {
	if len(ids) > sample {
		stride := len(ids) / sample
		picked := make([]string, 0, sample)
		for i := 0; i < len(ids) && len(picked) < sample; i += stride {
			picked = append(picked, ids[i])
		}
		ids = picked
	}
	gaps := make([][]time.Duration, len(lifecycleSteps)-1)
	var mu sync.Mutex
	var settled, events int
	parallel(len(ids), conc, func(i int) {
		var h struct {
			Items []struct {
				Type string    `json:"type"`
				At   time.Time `json:"at"`
			} `json:"items"`
		}
		if err := c.do(ctx, http.MethodGet, token, "/v1/requests/"+ids[i]+"/history", nil, &h); err != nil {
			return
		}
		at := map[string]time.Time{}
		for _, e := range h.Items {
			if _, seen := at[e.Type]; !seen {
				at[e.Type] = e.At
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := at[lifecycleSteps[len(lifecycleSteps)-1]]; ok {
			settled, events = settled+1, events+len(h.Items)
		}
		for j := range gaps {
			from, ok1 := at[lifecycleSteps[j]]
			to, ok2 := at[lifecycleSteps[j+1]]
			if ok1 && ok2 {
				gaps[j] = append(gaps[j], to.Sub(from))
			}
		}
	})
	out := make([]Step, len(gaps))
	for j, g := range gaps {
		out[j] = Step{From: lifecycleSteps[j], To: lifecycleSteps[j+1], P50Ms: ms(Percentile(g, 50)), P99Ms: ms(Percentile(g, 99)), Cases: len(g)}
	}
	if settled > 0 {
		eventsPerCase = float64(events) / float64(settled)
	}
	return out, eventsPerCase
}

// printSteps writes the steps as lines of the report.
func printSteps(w io.Writer, steps []Step) {
	for _, s := range steps {
		fmt.Fprintf(w, "    %-16s → %-16s p50 %8.1f ms  p99 %8.1f ms  (%d cases)\n", s.From, s.To, s.P50Ms, s.P99Ms, s.Cases)
	}
}
