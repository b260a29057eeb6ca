package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// Changes follows the case events of the log as they are appended
// (*eventlog.Log).
type Changes interface {
	// LastSeq is the sequence of the newest event of the log.
	LastSeq(ctx context.Context) (uint64, error)
	Follow(ctx context.Context, after uint64, f func(eventlog.Msg) error) error
}

var _ Changes = (*eventlog.Log)(nil)

const (
	// maxFollowers bounds the change streams one gateway serves at once:
	// each holds a consumer of the log and a connection.
	maxFollowers = 256
	// changesHeartbeat is how often an idle change stream sends a comment,
	// so that proxies keep it open and a revoked session ends it.
	changesHeartbeat = 15 * time.Second
	// changesRetry is the reconnection delay the stream asks of clients.
	changesRetry = 2 * time.Second
)

// changesQuery is GET /v1/changes's query.
type changesQuery struct {
	After *uint64 `query:"after" doc:"the sequence to start after (0: from the start of the log); absent: from now. The header Last-Event-ID, which a reconnecting EventSource sends, takes precedence"`
}

// changeJSON is one case event of the change stream: what a webhook
// receives, without the status (GET /v1/requests/{id} has it).
type changeJSON struct {
	ID     string `json:"id" doc:"the event id (Nats-Msg-Id)"`
	Type   string `json:"type" doc:"the event type, e.g. RequestApproved"`
	CaseID string `json:"case_id"`
	Seq    uint64 `json:"seq" doc:"the event's sequence in the log; also the stream's event id"`
	At     string `json:"at" doc:"when the log stored it, RFC 3339 UTC"`
}

// changes is GET /v1/changes: the case events of the log as a stream of
// server-sent events (text/event-stream), each "id: <seq>" and "data:"
// a changeJSON, never personal data. A client resumes where it stopped
// with Last-Event-ID (or ?after=). The stream ends when the client goes,
// when the user's session ends (checked at every heartbeat) and when the
// log cannot be read (the client reconnects with Last-Event-ID).
func (s *server) changes(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery[changesQuery](r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	after, fromNow := uint64(0), q.After == nil
	if q.After != nil {
		after = *q.After
	}
	if h := strings.TrimSpace(r.Header.Get("Last-Event-ID")); h != "" {
		n, err := strconv.ParseUint(h, 10, 63)
		if err != nil {
			writeProblem(w, r, &assist.Error{Code: assist.CodeInvalid, Message: "invalid header",
				Fields: []assist.FieldError{{Field: "Last-Event-ID", Message: "must be the sequence of an event of this stream (a non-negative integer)"}}})
			return
		}
		after, fromNow = n, false
	}
	if s.follow == nil {
		writeProblem(w, r, assist.Errorf(assist.CodeUnavailable, "this gateway does not follow the log"))
		return
	}
	if fromNow {
		// Now is the log's end as the stream starts: an event stored
		// after the answer's first byte is never missed.
		if after, err = s.follow.LastSeq(r.Context()); err != nil {
			writeProblem(w, r, err)
			return
		}
	}
	select {
	case s.followers <- struct{}{}:
		defer func() { <-s.followers }()
	default:
		writeProblem(w, r, &retryAfter{seconds: int(changesRetry / time.Second),
			err: assist.Errorf(assist.CodeRateLimited, "%d change streams are open at this gateway; try again later", cap(s.followers))})
		return
	}
	token, _ := requestToken(r)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// The header and the reconnection delay go out at once, so that the
	// client knows it follows before the first event.
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", changesRetry.Milliseconds()); err != nil {
		return
	}
	_ = rc.Flush()

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	events := make(chan eventlog.Msg, 64)
	done := make(chan error, 1)
	go func() {
		done <- s.follow.Follow(ctx, after, func(m eventlog.Msg) error {
			select {
			case events <- m:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
	}()
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	var buf []byte
	for {
		select {
		case m := <-events:
			buf = appendChange(buf[:0], m)
			// Send what else is waiting in the same write.
			for more := true; more && len(buf) < 32<<10; {
				select {
				case m := <-events:
					buf = appendChange(buf, m)
				default:
					more = false
				}
			}
			if _, err := w.Write(buf); err != nil {
				return // the client went away
			}
			_ = rc.Flush()
		case <-beat.C:
			if _, err := s.tokenAccount(ctx, token); err != nil {
				return // signed out, expired or disabled: the stream ends
			}
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
			_ = rc.Flush()
		case <-s.stopping.Done():
			return // the gateway shuts down
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) && r.Context().Err() == nil {
				noteOutage(r, err)
			}
			return
		}
	}
}

// appendChange appends m as one server-sent event to b.
func appendChange(b []byte, m eventlog.Msg) []byte {
	data, _ := json.Marshal(changeJSON{ID: m.ID, Type: m.Type, CaseID: m.CaseID, Seq: m.Seq,
		At: m.Time.UTC().Format(time.RFC3339Nano)})
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, m.Seq, 10)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
