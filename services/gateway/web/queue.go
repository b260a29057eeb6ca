package web

import (
	"net/http"
	"time"
)

// queueLimit is how much of the queue the page shows and charts.
const queueLimit = 200

type queueData struct {
	Items []queueItem
	More  bool
	Chart ageChart
	// At is when the queue was read.
	At string
}

// queuePage is /queue: the open cases, missed deadlines first, then by
// deadline (the API's order), with the age of the queue by urgency. With
// ?partial=1 it answers the live part alone, for the script that
// refreshes it: on each change GET /v1/changes (data-changes) streams,
// and every QueueRefresh (data-refresh, in whole seconds).
func (s *site) queuePage(v *view) error {
	p, err := get[page[queueItem]](v.ctx(), v.s.api, v.token, query("/v1/queue", "limit", "200"))
	if err != nil {
		return err
	}
	now := v.s.now()
	d := queueData{Items: p.Items, More: p.NextCursor != "", Chart: queueAgeChart(v.L, p.Items, now),
		At: now.UTC().Format(time.RFC3339)}
	v.renderData(http.StatusOK, "queue", &pageData{Title: v.L.T("queue.title"), D: d,
		Refresh: max(1, int(v.s.cfg.QueueRefresh/time.Second))})
	return nil
}
