package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
)

// The access log: every read of a case's personal data, kept forever on
// its own stream so that reads never contend with a case's writers.
const (
	AccessStream = "EVA_ACCESS"
	AccessPrefix = "eva.access."
)

// Access is one read of a case's personal data.
type Access struct {
	CaseID   string    `json:"case_id"`
	Username string    `json:"username"`
	Role     string    `json:"role"`
	Post     string    `json:"post,omitempty"`
	At       time.Time `json:"at"`
	What     string    `json:"what"`
}

func ensureAccessStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AccessStream,
		Description: "EVA: who read which case's personal data, when",
		Subjects:    []string{AccessPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	})
	return err
}

// RecordAccess durably records a read of personal data. Callers reveal the
// data only after it returns nil.
//
// Errors: CodeUnavailable.
func (l *Log) RecordAccess(ctx context.Context, a Access) error {
	if !ValidCaseID(a.CaseID) {
		return assist.Errorf(assist.CodeInvalid, "case id %q is malformed", a.CaseID)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if _, err := l.js.Publish(ctx, AccessPrefix+a.CaseID, data); err != nil {
		return unavailable("record access", err)
	}
	return nil
}

// Accesses lists the recorded reads of a case's personal data, oldest
// first.
//
// Errors: CodeUnavailable.
func (l *Log) Accesses(ctx context.Context, caseID string) ([]Access, error) {
	if !ValidCaseID(caseID) {
		return nil, nil
	}
	out := []Access{}
	err := l.scan(ctx, AccessStream, AccessPrefix+caseID, func(raw *jetstream.RawStreamMsg) error {
		var a Access
		if err := json.Unmarshal(raw.Data, &a); err != nil {
			return fmt.Errorf("access record %d: %w", raw.Sequence, err)
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, unavailable("read access log", err)
	}
	return out, nil
}

// DeadLetter is an event a consumer gave up on.
type DeadLetter struct {
	Seq            uint64    `json:"seq"` // in the dead-letter stream
	Consumer       string    `json:"consumer"`
	Subject        string    `json:"subject"` // of the event
	EventSeq       uint64    `json:"event_seq"`
	EventID        string    `json:"event_id"`
	Reason         string    `json:"reason"`
	DeadLetteredAt time.Time `json:"dead_lettered_at"`
}

// DeadLetters lists dead letters after a sequence of the dead-letter
// stream, oldest first, at most limit.
//
// Errors: CodeUnavailable.
func (l *Log) DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	out := []DeadLetter{}
	err := l.directGet(ctx, DLQStream, directBatch{Batch: limit, Seq: after + 1, NextBySubj: DLQPrefix + ">"}, func(raw *jetstream.RawStreamMsg) error {
		seq, _ := strconv.ParseUint(raw.Header.Get("Eva-Original-Seq"), 10, 64)
		out = append(out, DeadLetter{Seq: raw.Sequence, Consumer: raw.Header.Get("Eva-Dlq-Consumer"),
			Subject: raw.Header.Get("Eva-Original-Subject"), EventSeq: seq, EventID: raw.Header.Get("Eva-Event-Id"),
			Reason: raw.Header.Get("Eva-Dlq-Reason"), DeadLetteredAt: raw.Time.UTC()})
		return nil
	})
	if err != nil && !errors.Is(err, errNoMessages) {
		return nil, unavailable("read dead letters", err)
	}
	return out, nil
}
