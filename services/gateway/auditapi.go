package gateway

import (
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"golang.org/x/mod/sumdb/tlog"

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

// checkpoint is GET /v1/audit/checkpoint: the latest signed checkpoint,
// as text.
func (s *server) checkpoint(w http.ResponseWriter, r *http.Request) {
	c, err := s.audit.Checkpoint(r.Context())
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeText(w, c.Note)
}

// accessCheckpoint is GET /v1/audit/access/checkpoint: the access log's
// latest signed checkpoint, as text.
func (s *server) accessCheckpoint(w http.ResponseWriter, r *http.Request) {
	c, err := s.audit.AccessCheckpoint(r.Context())
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeText(w, c.Note)
}

// auditKey is GET /v1/audit/key: the checkpoints' verifier key, one line.
func (s *server) auditKey(w http.ResponseWriter, r *http.Request) {
	k, err := s.audit.Key(r.Context())
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	writeText(w, k.Key+"\n")
}

func writeText(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, text)
}

// leaf is GET /v1/audit/leaves/{seq}: the exact bytes of leaf seq-1.
func (s *server) leaf(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(chi.URLParam(r, "seq"), 10, 64)
	if err != nil || seq == 0 {
		writeProblem(w, r, invalid("seq", "must be an event's sequence, an integer from 1"))
		return
	}
	l, err := s.audit.Leaf(r.Context(), seq)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(l.Bytes)
}

// inclusionQuery is the query of GET /v1/audit/proof/inclusion.
type inclusionQuery struct {
	Seq  uint64 `query:"seq,required" doc:"the event's sequence (its leaf is seq-1)"`
	Size uint64 `query:"size,required" doc:"the size of the tree, as a checkpoint gives it"`
}

// inclusionProof is GET /v1/audit/proof/inclusion?seq=&size=.
func (s *server) inclusionProof(r *http.Request, q inclusionQuery) (proofJSON, error) {
	p, err := s.audit.Inclusion(r.Context(), auditapi.InclusionRequest{Seq: q.Seq, Size: q.Size})
	if err != nil {
		return proofJSON{}, err
	}
	return proofJSON{Seq: &q.Seq, Size: &q.Size, Hashes: mapSlice(p.Hashes, hashBase64)}, nil
}

// consistencyQuery is the query of GET /v1/audit/proof/consistency.
type consistencyQuery struct {
	From uint64 `query:"from,required" doc:"the smaller tree's size"`
	To   uint64 `query:"to,required" doc:"the larger tree's size"`
}

// consistencyProof is GET /v1/audit/proof/consistency?from=&to=.
func (s *server) consistencyProof(r *http.Request, q consistencyQuery) (proofJSON, error) {
	p, err := s.audit.Consistency(r.Context(), auditapi.ConsistencyRequest{From: q.From, To: q.To})
	if err != nil {
		return proofJSON{}, err
	}
	return proofJSON{From: &q.From, To: &q.To, Hashes: mapSlice(p.Hashes, hashBase64)}, nil
}

func hashBase64(h tlog.Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

type verifyJSON struct {
	OK          bool           `json:"ok"`
	Events      uint64         `json:"events"`
	FirstBad    *uint64        `json:"first_bad" jsonschema_description:"sequence of the first event that does not match; null when ok or when no one event is to blame"`
	Reason      string         `json:"reason,omitempty"`
	Lag         uint64         `json:"lag" jsonschema_description:"events of the log not archived yet (not counted as bad)"`
	Checkpoints int            `json:"checkpoints" jsonschema_description:"signed checkpoints the log matched"`
	TreeSize    int64          `json:"tree_size" jsonschema_description:"leaves of the Merkle tree recomputed from the archive"`
	Root        string         `json:"root,omitempty" jsonschema_description:"its root hash, base64, when ok"`
	Access      *treeCheckJSON `json:"access,omitempty" jsonschema_description:"the access log's check (reads of personal data): its archive, Merkle tree and checkpoints"`
}

type treeCheckJSON struct {
	OK          bool    `json:"ok"`
	Records     uint64  `json:"records"`
	FirstBad    *uint64 `json:"first_bad"`
	Reason      string  `json:"reason,omitempty"`
	Lag         uint64  `json:"lag"`
	Checkpoints int     `json:"checkpoints"`
	TreeSize    int64   `json:"tree_size"`
	Root        string  `json:"root,omitempty"`
}

// verify is GET /v1/audit/verify.
func (s *server) verify(r *http.Request) (verifyJSON, error) {
	v, err := s.audit.Verify(r.Context(), auditapi.VerifyRequest{})
	if err != nil {
		return verifyJSON{}, err
	}
	out := verifyJSON{OK: v.OK, Events: v.Events, FirstBad: v.FirstBad, Reason: v.Reason, Lag: v.Lag,
		Checkpoints: v.Checkpoints, TreeSize: v.TreeSize, Root: v.Root}
	if a := v.Access; a != nil {
		out.Access = &treeCheckJSON{OK: a.OK, Records: a.Records, FirstBad: a.FirstBad, Reason: a.Reason, Lag: a.Lag,
			Checkpoints: a.Checkpoints, TreeSize: a.TreeSize, Root: a.Root}
	}
	return out, nil
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
			return cw.Write(csvRow(strconv.FormatUint(j.Seq, 10), j.ID, j.RequestID, j.Type, string(j.At), j.Actor.Username,
				j.Actor.Role, j.Actor.Post, j.Reason, j.Hash, j.Chain, string(j.Data), j.DecodeError))
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
