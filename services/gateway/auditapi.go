package gateway

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// auditEventsQuery is the query of GET /v1/audit/events.
type auditEventsQuery struct {
	After  *uint64 `query:"after" doc:"the sequence to start after (0: from the start)"`
	Cursor *uint64 `query:"cursor" doc:"next_cursor of the page before: the same as after"`
	Limit  limit   `query:"limit" doc:"how many events a page holds at most"`
}

// auditEvents is GET /v1/audit/events?after=&limit= (cursor= is accepted
// for after, as a list's cursor).
func (s *server) auditEvents(r *http.Request, q auditEventsQuery) (eventsPageJSON, error) {
	var after uint64
	switch {
	case q.After != nil && q.Cursor != nil && *q.After != *q.Cursor:
		return eventsPageJSON{}, invalid("cursor", "must not disagree with after")
	case q.Cursor != nil:
		after = *q.Cursor
	case q.After != nil:
		after = *q.After
	}
	p, err := s.audit.Events(r.Context(), auditapi.EventsRequest{After: after, Limit: int(q.Limit)})
	if err != nil {
		return eventsPageJSON{}, err
	}
	out := eventsPageJSON{Items: mapSlice(p.Items, toEventJSON)}
	if p.Next > 0 {
		out.NextAfter, out.NextCursor = p.Next, strconv.FormatUint(p.Next, 10)
	}
	return out, nil
}

// deadLettersQuery is the query of GET /v1/admin/dead-letters.
type deadLettersQuery struct {
	After uint64 `query:"after" doc:"the dead-letter sequence to start after (0: from the start)"`
	Limit limit  `query:"limit" doc:"how many dead letters a page holds at most"`
}

// deadLetters is GET /v1/admin/dead-letters?after=&limit=: the events a
// consumer gave up on, with the reason, for admins to act on.
func (s *server) deadLetters(r *http.Request, q deadLettersQuery) (deadLettersJSON, error) {
	p, err := s.audit.DeadLetters(r.Context(), auditapi.DeadLettersRequest{After: q.After, Limit: int(q.Limit)})
	if err != nil {
		return deadLettersJSON{}, err
	}
	out := deadLettersJSON{Items: mapSlice(p.Items, toDeadLetterJSON)}
	if p.Next > 0 {
		out.NextAfter = p.Next
	}
	return out, nil
}

// checkpoint is GET /v1/audit/checkpoint.
func (s *server) checkpoint(r *http.Request) (checkpointJSON, error) {
	c, err := s.audit.Checkpoint(r.Context())
	if err != nil {
		return checkpointJSON{}, err
	}
	return checkpointJSON{Size: c.Size, Chain: c.Chain, At: formatTime(c.At)}, nil
}

type verifyJSON struct {
	OK       bool    `json:"ok"`
	Events   uint64  `json:"events"`
	FirstBad *uint64 `json:"first_bad" jsonschema_description:"sequence of the first event that does not match; null when ok"`
	Reason   string  `json:"reason,omitempty"`
	Lag      uint64  `json:"lag" jsonschema_description:"events of the log not archived yet (not counted as bad)"`
}

// verify is GET /v1/audit/verify.
func (s *server) verify(r *http.Request) (verifyJSON, error) {
	v, err := s.audit.Verify(r.Context())
	if err != nil {
		return verifyJSON{}, err
	}
	return verifyJSON{OK: v.OK, Events: v.Events, FirstBad: v.FirstBad, Reason: v.Reason, Lag: v.Lag}, nil
}

// accessQuery is the query of GET /v1/audit/access.
type accessQuery struct {
	Case requestID `query:"case,required" doc:"the request whose reads to list"`
}

// access is GET /v1/audit/access?case=.
func (s *server) access(r *http.Request, q accessQuery) (page[accessJSON], error) {
	as, err := s.audit.Access(r.Context(), string(q.Case))
	if err != nil {
		return page[accessJSON]{}, err
	}
	return page[accessJSON]{Items: mapSlice(as, toAccessJSON)}, nil
}

// exportFormat is what GET /v1/audit/export writes.
type exportFormat string

var exportFormats = []exportFormat{"jsonl", "csv"}

// exportQuery is the query of GET /v1/audit/export.
type exportQuery struct {
	Format exportFormat `query:"format" default:"jsonl"`
}

var csvHeader = []string{"seq", "id", "request_id", "type", "at", "actor_username", "actor_role", "actor_post",
	"reason", "hash", "chain", "data", "decode_error"}

// export is GET /v1/audit/export?format=jsonl|csv: the whole archive in
// log order, streamed page by page. An error before the first byte is a
// problem; an error later aborts the response, so that a client never
// takes a truncated export for a whole one.
func (s *server) export(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery[exportQuery](r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	p, err := s.audit.Events(r.Context(), auditapi.EventsRequest{Limit: listing.MaxLimit})
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	var (
		enc  = json.NewEncoder(w)
		cw   = csv.NewWriter(w)
		emit func(auditapi.ArchivedEvent) error
	)
	if q.Format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="eva-audit.csv"`)
		_ = cw.Write(csvHeader)
		emit = func(e auditapi.ArchivedEvent) error {
			j := toEventJSON(e)
			return cw.Write([]string{strconv.FormatUint(j.Seq, 10), j.ID, j.RequestID, j.Type, string(j.At), j.Actor.Username,
				j.Actor.Role, j.Actor.Post, j.Reason, j.Hash, j.Chain, string(j.Data), j.DecodeError})
		}
	} else {
		w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="eva-audit.jsonl"`)
		emit = func(e auditapi.ArchivedEvent) error { return enc.Encode(toEventJSON(e)) }
	}
	w.WriteHeader(http.StatusOK)
	var after uint64
	for {
		for _, e := range p.Items {
			if err := emit(e); err != nil {
				return // the client went away
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return
		}
		_ = rc.Flush()
		if p.Next <= after || len(p.Items) == 0 {
			return // the end (or a service that would loop)
		}
		after = p.Next
		if p, err = s.audit.Events(r.Context(), auditapi.EventsRequest{After: after, Limit: listing.MaxLimit}); err != nil {
			noteError(r, fmt.Errorf("audit export after %d: %w", after, err))
			panic(http.ErrAbortHandler)
		}
	}
}
