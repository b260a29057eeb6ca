// Package eventlog is EVA's durable event log on NATS JetStream: one stream
// of every case's events on subjects eva.case.<caseID>.<EventType> — and of
// the things around cases (funds, payees, the policy, users, webhooks) on
// eva.<kind>.<id>.<EventType> — stored on file with an fsync on every
// write, never deleted or purged.
//
// Appends use optimistic concurrency per case, or per thing (the expected
// last sequence of eva.<kind>.<id>.>), and de-duplication by message id
// (= event id): two writers racing on one case get exactly one winner, and
// a retried append whose first ack was lost is recognised, never written
// twice.
package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/retry"
)

// Names of streams and subjects.
const (
	Stream        = "EVA_EVENTS"
	SubjectPrefix = "eva.case."
	// AllSubjects matches every case event; AllKinds every event.
	AllSubjects = "eva.case.>"
	DLQStream   = "EVA_DLQ"
	DLQPrefix   = "eva.dlq."

	// HeaderPrev carries the stream sequence the append expected: the
	// previous event of the same case, 0 for the first. An event appended
	// after another of the same atomic batch (Log.ExecuteFromThen) carries
	// PrevInBatch instead: the server stores a batch's messages at
	// consecutive sequences, and the sequence of the one before is not
	// known when the batch is sent.
	HeaderPrev = "Eva-Prev-Seq"
	// PrevInBatch is HeaderPrev of an event that follows the message just
	// before it in the stream, its batch's previous one.
	PrevInBatch = "-1"
)

// appendAttempt bounds one attempt to append: a durable append takes
// milliseconds, a few hundred under heavy load.
const appendAttempt = 2 * time.Second

// catchUpBudget bounds how long a read waits for the stream's replicas to
// serve it (LoadOf): a replica behind the leader, or replicas not yet
// answering direct gets.
const catchUpBudget = 5 * time.Second

// Config sets up the streams.
type Config struct {
	// Replicas of each stream: 1 standalone, 3 in production clusters.
	Replicas int
	// DuplicateWindow is how long message ids are remembered by the
	// server; beyond it, retries are recognised by reading the case.
	DuplicateWindow time.Duration
	// Healthy, when set, says whether the store can take appends right
	// now (the embedded server's disk); while it cannot, appends fail at
	// once as unavailable instead of waiting for an answer.
	Healthy func() error
	// Attach finds the streams instead of creating or updating them: a
	// service's NATS user may not change them (ADR 16); the tools
	// (migrate, the dev platform) make them.
	Attach bool
}

// Log appends to and reads from the event stream.
type Log struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	// api prefixes the JetStream API's subjects (apiPrefix); replies
	// carries the replies to the log's direct gets (directGet).
	api     string
	replies *replies
	// replicated: direct gets may be answered by a replica that lags the
	// leader, so case reads check the leader's last sequence (see LoadRaw).
	replicated bool
	healthy    func() error
	// store, when set, keeps the events instead of JetStream (OnStore).
	store Store
	// files, when set, is where Scan reads the stream's stored messages
	// (WithFiles).
	files *streamFiles
}

// Store is where a Log keeps events when it is not JetStream: the two
// operations the command path needs of the stream. A Store must behave as
// the JetStream stream does: an append whose filter's last sequence is not
// expected fails with a *jetstream.APIError of code 10071 (or 10164), a
// message id published before answers the first message's sequence with
// duplicate set, and sequences grow from 1 across the whole stream.
type Store interface {
	// Publish appends m, whose Nats-Msg-Id is msgID, expecting the last
	// message on filter to be at sequence expected (0: none).
	Publish(ctx context.Context, m *nats.Msg, msgID, filter string, expected uint64) (seq uint64, duplicate bool, err error)
	// Scan calls f with every message on filter, in stream order.
	Scan(ctx context.Context, filter string, f func(Msg) error) error
}

// BatchStore is a Store that also appends atomic batches, as a replicated
// JetStream stream does: a log on one batches as on such a stream
// (ExecuteFromThen).
type BatchStore interface {
	Store
	// PublishBatch appends msgs, the i-th with Nats-Msg-Id ids[i], all or
	// none, at consecutive sequences, the first expecting the last
	// message on filter to be at sequence expected (0: none); it returns
	// the last one's sequence. Any message id seen before fails the
	// batch.
	PublishBatch(ctx context.Context, msgs []*nats.Msg, ids []string, filter string, expected uint64) (uint64, error)
}

// OnStore returns a log on s instead of JetStream, for simulations. Such
// a log serves the command path — Execute, ExecuteOn, Start, Append,
// Answer, AsOf, Load, LoadOf, History — and nothing that needs JetStream
// itself (Consume, Project, Get, LastSeq, the access and dead-letter
// streams).
func OnStore(s Store) *Log { return &Log{store: s} }

// Open creates or updates the streams (or, with Attach, finds them) and
// returns the log.
//
// Errors: CodeUnavailable when JetStream cannot be reached.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Log, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = 10 * time.Minute
	}
	if cfg.Attach {
		st, err := js.Stream(ctx, Stream)
		if err != nil {
			return nil, unavailable("find stream "+Stream+" (has eva migrate run?)", err)
		}
		return newLog(js, st, cfg), nil
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "EVA: every event of every case, kept forever",
		Subjects:    AllKinds(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
		// The events of one step that land together (ExecuteFromThen).
		AllowAtomicPublish: true,
		MaxMsgSize:         512 << 10,
	})
	if err != nil {
		return nil, unavailable("create stream "+Stream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "EVA: events a consumer could not process, with the reason",
		Subjects:    []string{DLQPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		AllowDirect: true,
	}); err != nil {
		return nil, unavailable("create stream "+DLQStream, err)
	}
	if err := ensureAccessStream(ctx, js, cfg); err != nil {
		return nil, unavailable("create stream "+AccessStream, err)
	}
	return newLog(js, st, cfg), nil
}

func newLog(js jetstream.JetStream, st jetstream.Stream, cfg Config) *Log {
	return &Log{js: js, stream: st, api: apiPrefix(js), replies: newReplies(js.Conn()),
		replicated: cfg.Replicas > 1, healthy: cfg.Healthy}
}

// WithFiles returns the log reading the event stream, in Scan, straight
// from its message blocks in storeDir, the store directory of the
// embedded nats-server that holds it (JetStream's, as
// server.Server.StoreDir gives it), as far as they read cleanly, and the
// rest through the server. Everything else goes through the server. Use it
// only where that server runs in this process and is the stream's only
// server: the offline tools (`eva audit replay`, `eva audit verify`). The
// stream's files are <storeDir>/<account>/streams/EVA_EVENTS/msgs; when
// there is no such directory, the log is returned as it is.
func (l *Log) WithFiles(storeDir, account string) *Log {
	dir := filepath.Join(storeDir, account, "streams", Stream, "msgs")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return l
	}
	c := *l
	c.files = &streamFiles{dir: dir, stream: Stream}
	return &c
}

// ReadsFiles reports whether Scan reads the stream's files (WithFiles).
func (l *Log) ReadsFiles() bool { return l.files != nil }

// JetStream returns the underlying JetStream handle.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Subject is the subject of an event of a case.
func Subject(caseID, eventType string) string { return SubjectOf(assist.KindCase, caseID, eventType) }

// SubjectOf is the subject of an event of a thing of any kind.
func SubjectOf(kind assist.Kind, id, eventType string) string {
	return "eva." + string(kind) + "." + id + "." + eventType
}

// CaseFilter matches every event of a case. Every writer of a case uses
// exactly this filter for its concurrency check.
func CaseFilter(caseID string) string { return Filter(assist.KindCase, caseID) }

// Filter matches every event of one thing of a kind; every writer of it
// uses exactly this filter for its concurrency check.
func Filter(kind assist.Kind, id string) string { return "eva." + string(kind) + "." + id + ".>" }

// AllKinds are the subjects of the event stream: every event of every
// kind.
func AllKinds() []string {
	out := make([]string, len(assist.Kinds))
	for i, k := range assist.Kinds {
		out[i] = "eva." + string(k) + ".>"
	}
	return out
}

// ValidCaseID reports whether id is a UUID in canonical form, and so safe as
// a subject token.
func ValidCaseID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// Msg is one stored event in raw form.
type Msg struct {
	Seq     uint64
	Subject string
	// Kind and Of name what the event is about; CaseID is Of for the
	// events of a case, empty for the others.
	Kind   assist.Kind
	Of     string
	CaseID string
	Type   string
	ID     string // Nats-Msg-Id, the event id
	Prev   uint64 // HeaderPrev
	Time   time.Time
	Data   []byte
	// chained: the message carried HeaderPrev, so Prev can be checked.
	chained bool
}

// ParseSubject splits eva.case.<caseID>.<Type>; ok is false for any
// other subject.
func ParseSubject(subject string) (caseID, typ string, ok bool) {
	kind, id, typ, ok := ParseSubjectOf(subject)
	if !ok || kind != assist.KindCase {
		return "", "", false
	}
	return id, typ, true
}

// ParseSubjectOf splits eva.<kind>.<id>.<Type> for a kind of the log.
func ParseSubjectOf(subject string) (kind assist.Kind, id, typ string, ok bool) {
	// Cut, not Split: every event read goes through here.
	rest, ok := strings.CutPrefix(subject, "eva.")
	k, rest, ok2 := strings.Cut(rest, ".")
	id, typ, ok3 := strings.Cut(rest, ".")
	if !ok || !ok2 || !ok3 || id == "" || typ == "" || strings.Contains(typ, ".") ||
		!slices.Contains(assist.Kinds, assist.Kind(k)) {
		return "", "", "", false
	}
	return assist.Kind(k), id, typ, true
}

// FromRaw reads a stored message of the event stream.
func FromRaw(raw *jetstream.RawStreamMsg) Msg {
	return newMsg(raw.Sequence, raw.Subject, raw.Header, raw.Time, raw.Data)
}

func newMsg(seq uint64, subject string, h nats.Header, t time.Time, data []byte) Msg {
	prev, chained := prevSeq(seq, h.Get(HeaderPrev))
	return msgOf(seq, subject, h.Get(jetstream.MsgIDHeader), prev, chained, t, data)
}

// prevSeq reads v, the HeaderPrev of the message at seq: the sequence
// of the event it follows, and whether it names one (PrevInBatch names
// the message just before it).
func prevSeq(seq uint64, v string) (uint64, bool) {
	if v == PrevInBatch {
		return seq - 1, seq > 1
	}
	prev, err := strconv.ParseUint(v, 10, 64)
	return prev, err == nil
}

// msgOf is a stored message whose event id is id and whose HeaderPrev is
// prev, when chained (the message carried one that parsed).
func msgOf(seq uint64, subject, id string, prev uint64, chained bool, t time.Time, data []byte) Msg {
	kind, of, typ, _ := ParseSubjectOf(subject)
	caseID := ""
	if kind == assist.KindCase {
		caseID = of
	}
	return Msg{Seq: seq, Subject: subject, Kind: kind, Of: of, CaseID: caseID, Type: typ, ID: id,
		Prev: prev, Time: t, Data: data, chained: chained}
}

// Append writes one event of a case, expecting the case's last event to be
// at stream sequence expected (0: the case has no event yet). It returns
// the event's sequence. An append that already happened — a retry after a
// lost ack, or the same command again — returns the original sequence.
//
// Errors: CodeConflict when the case moved on (another writer won),
// CodeInvalid for a malformed event, CodeUnavailable when JetStream does
// not answer.
func (l *Log) Append(ctx context.Context, e assist.Event, expected uint64) (uint64, error) {
	seq, _, err := l.appendEvent(ctx, e, expected)
	return seq, unwrapRace(err)
}

// appendEvent is Append that also tells whether the event was there
// before.
func (l *Log) appendEvent(ctx context.Context, e assist.Event, expected uint64) (seq uint64, existed bool, err error) {
	m, err := eventMsg(e, strconv.FormatUint(expected, 10))
	if err != nil {
		return 0, false, err
	}
	opts := []jetstream.PublishOpt{
		jetstream.WithMsgID(e.ID),
		jetstream.WithExpectStream(Stream),
		jetstream.WithExpectLastSequenceForSubject(expected, Filter(e.Kind(), e.CaseID)),
	}
	if l.healthy != nil {
		if err := l.healthy(); err != nil {
			return 0, false, unavailable("append "+e.Type(), err)
		}
	}
	// A timeout may hide a write that happened: the retry carries the same
	// message id and expected sequence, so it cannot write twice. Each
	// attempt has its own short deadline: a stream that stopped answering
	// (its disk full) may be answering again a moment later.
	ack, err := retry.DoValue(ctx, retry.Policy{First: 5 * time.Millisecond, Attempts: 4}, isTimeout,
		func(ctx context.Context) (*jetstream.PubAck, error) {
			ctx, cancel := context.WithTimeout(ctx, appendAttempt)
			defer cancel()
			if l.store != nil {
				seq, dup, err := l.store.Publish(ctx, m, e.ID, Filter(e.Kind(), e.CaseID), expected)
				return &jetstream.PubAck{Stream: Stream, Sequence: seq, Duplicate: dup}, err
			}
			return l.js.PublishMsg(ctx, m, opts...)
		})
	if err == nil {
		return ack.Sequence, ack.Duplicate, nil
	}
	if natsx.IsWrongLastSequence(err) {
		// Either another writer won, or this very event landed and its ack
		// was lost: the case's history tells which.
		seq, found, ferr := l.find(ctx, e.Kind(), e.CaseID, e.ID)
		if ferr != nil {
			return 0, false, ferr
		}
		if found {
			return seq, true, nil
		}
		return 0, false, errLostRace{assist.Errorf(assist.CodeConflict, "case %s changed meanwhile; reload and try again", e.CaseID)}
	}
	return 0, false, unavailable("append "+e.Type(), err)
}

// eventMsg is the message of an event to append, naming the event it
// follows (prev, HeaderPrev's value).
//
// Errors: CodeInvalid for a malformed event; the codec's.
func eventMsg(e assist.Event, prev string) (*nats.Msg, error) {
	if !ValidCaseID(e.CaseID) || e.ID == "" || e.Body == nil {
		return nil, assist.Errorf(assist.CodeInvalid, "event %q of case %q is malformed", e.ID, e.CaseID)
	}
	data, err := eventcodec.Encode(e)
	if err != nil {
		return nil, fmt.Errorf("append %s: %w", e.ID, err)
	}
	m := nats.NewMsg(SubjectOf(e.Kind(), e.CaseID, e.Type()))
	m.Data = data
	m.Header.Set(HeaderPrev, prev)
	return m, nil
}

// appendBatch writes events of one case, in order, as one atomic batch:
// all of them land, at consecutive stream sequences, or none does. The
// first expects the case's last event at expected, as appendEvent's; each
// other names the one before it (PrevInBatch). It returns the sequence of
// the last; a batch of n events costs the round trip and the fsync of one
// append. It is tried once and never retried: on any error the caller
// appends the events one by one, which tells a batch that landed (its
// events are in the case's history) from one that did not. A log on a
// Store appends here only when it is a BatchStore.
func (l *Log) appendBatch(ctx context.Context, events []assist.Event, expected uint64) (uint64, error) {
	bs, onStore := l.store.(BatchStore)
	if !onStore && (l.store != nil || l.js == nil) {
		return 0, errors.New("append batch: neither JetStream nor a store of batches")
	}
	msgs := make([]*nats.Msg, len(events))
	ids := make([]string, len(events))
	filter := Filter(events[0].Kind(), events[0].CaseID)
	for i, e := range events {
		if e.CaseID != events[0].CaseID {
			return 0, assist.Errorf(assist.CodeInvalid, "a batch of case %q holds event %q of case %q", events[0].CaseID, e.ID, e.CaseID)
		}
		prev := PrevInBatch
		if i == 0 {
			prev = strconv.FormatUint(expected, 10)
		}
		m, err := eventMsg(e, prev)
		if err != nil {
			return 0, err
		}
		msgs[i], ids[i] = m, e.ID
	}
	if l.healthy != nil {
		if err := l.healthy(); err != nil {
			return 0, unavailable("append batch", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, appendAttempt)
	defer cancel()
	if onStore {
		last, err := bs.PublishBatch(ctx, msgs, ids, filter, expected)
		if err != nil {
			return 0, unavailable("append batch", err)
		}
		return last, nil
	}
	for i, m := range msgs {
		m.Header.Set(jetstream.MsgIDHeader, ids[i])
		m.Header.Set(jetstream.ExpectedStreamHeader, Stream)
	}
	msgs[0].Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, filter)
	msgs[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	// Only the commit is a request: the messages before it are sent
	// without waiting, and a batch refused at any of them fails its commit.
	ack, err := jetstreamext.PublishMsgBatch(ctx, l.js, msgs, jetstreamext.BatchFlowControl{})
	if err != nil {
		return 0, unavailable("append batch", err)
	}
	if ack.Stream != Stream || ack.Sequence < uint64(len(events)) {
		return 0, fmt.Errorf("append batch: acknowledged as %d on %q", ack.Sequence, ack.Stream)
	}
	return ack.Sequence, nil
}

// isTimeout reports an append that may or may not have happened.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// errLostRace is the conflict of an append whose expected sequence was
// no longer the case's last: another writer appended first.
type errLostRace struct{ err error }

func (e errLostRace) Error() string { return e.err.Error() }
func (e errLostRace) Unwrap() error { return e.err }

func isLostRace(err error) bool { return errors.As(err, new(errLostRace)) }

// unwrapRace returns the conflict a lost race stands for.
func unwrapRace(err error) error {
	if lr := (errLostRace{}); errors.As(err, &lr) {
		return lr.err
	}
	return err
}

// find looks for the event id among the events of a thing.
func (l *Log) find(ctx context.Context, kind assist.Kind, of, id string) (uint64, bool, error) {
	msgs, err := l.LoadOf(ctx, kind, of)
	if err != nil {
		return 0, false, err
	}
	for _, m := range msgs {
		if m.ID == id {
			return m.Seq, true, nil
		}
	}
	return 0, false, nil
}

// LoadRaw reads every event of a case in order (see LoadOf).
//
// Errors: CodeUnavailable when JetStream does not answer, or no replica
// catches up.
func (l *Log) LoadRaw(ctx context.Context, caseID string) ([]Msg, error) {
	return l.LoadOf(ctx, assist.KindCase, caseID)
}

// LoadOf reads every event of one thing of a kind in order. Reads are
// batched direct gets, which any replica of a replicated stream may
// answer; there a read asks the stream leader first for the thing's last
// sequence, and reads again until a replica has caught up to it, so that
// nothing is read older than a write that was acknowledged before the read
// began.
//
// Errors: CodeUnavailable when JetStream does not answer, or no replica
// serves the read within catchUpBudget (5 s).
func (l *Log) LoadOf(ctx context.Context, kind assist.Kind, id string) ([]Msg, error) {
	if !ValidCaseID(id) {
		return nil, nil
	}
	filter := Filter(kind, id)
	var want uint64
	if l.replicated {
		var err error
		if want, err = l.leaderLastSeq(ctx, filter); err != nil {
			return nil, unavailable("load "+string(kind)+" "+id, err)
		}
		if want == 0 {
			return nil, nil
		}
	}
	// A replica that lags is read again until it has caught up; so is a
	// stream whose replicas are still subscribing to direct gets (no
	// responders), which on a loaded cluster can last seconds after the
	// stream was made. Both are bounded by time, catchUpBudget, not by a
	// count of reads: how many reads fit in a second depends on the load.
	lagging := errors.New("replicas lag the leader")
	out, err := retry.DoValue(ctx, retry.Policy{First: time.Millisecond, Max: 20 * time.Millisecond, Budget: catchUpBudget},
		func(err error) bool { return errors.Is(err, lagging) || errors.Is(err, nats.ErrNoResponders) },
		func(ctx context.Context) ([]Msg, error) {
			var out []Msg
			var err error
			if l.store != nil {
				err = l.store.Scan(ctx, filter, func(m Msg) error {
					out = append(out, m)
					return nil
				})
			} else if chain, ok, cerr := l.loadByChain(ctx, filter); ok || cerr != nil {
				out, err = chain, cerr
			} else {
				err = l.scan(ctx, Stream, filter, func(raw *jetstream.RawStreamMsg) error {
					out = append(out, FromRaw(raw))
					return nil
				})
			}
			switch {
			case err != nil:
				return nil, err
			case want > 0 && (len(out) == 0 || out[len(out)-1].Seq < want):
				return nil, fmt.Errorf("%w at %d", lagging, want)
			}
			return out, nil
		})
	if err != nil {
		return nil, unavailable("load "+string(kind)+" "+id, err)
	}
	if err := whole(kind, id, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ErrBroken marks a history with a hole: an event names as its
// predecessor one the log no longer holds (lost to a corrupt block).
var ErrBroken = errors.New("the event log lost events")

// whole checks that msgs, the history of one thing in log order, has no
// hole: every event names the event before it as its predecessor
// (HeaderPrev, the sequence its append expected), the first names none. A
// state folded from a history with a hole would be wrong, so it is never
// served: the read is unavailable, naming what is missing.
func whole(kind assist.Kind, id string, msgs []Msg) error {
	var prev uint64
	for _, m := range msgs {
		if m.chained && m.Prev != prev {
			return &assist.Error{Code: assist.CodeUnavailable, Message: fmt.Sprintf(
				"%s: the history of %s %s is not whole: event %d follows event %d, which the log does not hold",
				ErrBroken, kind, id, m.Seq, m.Prev)}
		}
		prev = m.Seq
	}
	return nil
}

// Intact reports whether the event stream still holds every event from
// sequence 1 to its last: the stream denies deletes and purges, so a
// sequence it no longer holds was lost (a corrupt or missing block, found
// when the server loaded it). The error names the missing sequences.
//
// Errors: ErrBroken naming them; CodeUnavailable when JetStream does not
// answer.
func (l *Log) Intact(ctx context.Context) error {
	info, err := l.stream.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return unavailable("stream info", err)
	}
	st := info.State
	missing := slices.Clone(st.Deleted)
	if st.Lost != nil {
		missing = append(missing, st.Lost.Msgs...)
	}
	// Only sequences the stream has given out can be missing: an empty
	// clustered stream reports sequence 0 deleted.
	missing = slices.DeleteFunc(missing, func(seq uint64) bool { return seq < 1 || seq > st.LastSeq })
	slices.Sort(missing)
	missing = slices.Compact(missing)
	var gone []string
	if st.FirstSeq > 1 {
		gone = append(gone, seqRange(1, st.FirstSeq-1))
	}
	for i := 0; i < len(missing); {
		j := i
		for j+1 < len(missing) && missing[j+1] == missing[j]+1 {
			j++
		}
		if len(gone) == 8 {
			gone = append(gone, "...")
			break
		}
		gone = append(gone, seqRange(missing[i], missing[j]))
		i = j + 1
	}
	counted := len(st.Deleted) == 0 && st.NumDeleted > 0 && st.LastSeq > 0 // deletions counted but not listed
	if len(gone) == 0 && !counted {
		return nil
	}
	if len(gone) == 0 {
		gone = append(gone, fmt.Sprintf("%d events between them", st.NumDeleted))
	}
	return fmt.Errorf("%w: stream %s (sequences %d to %d) no longer holds %s", ErrBroken, Stream, st.FirstSeq, st.LastSeq,
		strings.Join(gone, ", "))
}

func seqRange(lo, hi uint64) string {
	if lo == hi {
		return fmt.Sprintf("event %d", lo)
	}
	return fmt.Sprintf("events %d-%d", lo, hi)
}

// LastSeqOf is the log position of the last event of one thing of a kind
// (0 when it has none), as the stream's leader has it when asked. It reads
// no event: the answer comes through JetStream's message get API, which
// answers from the stream's subject index, and its reply does not queue, as
// a direct get's does, behind the appends the stream is writing (the
// stream's one goroutine stores and fsyncs every queued append before it
// sends the replies waiting beside them). A caller that keeps a thing's
// state folded at a known position reads the history again only when this
// says it moved. A log on a Store (OnStore) has no subject index: there ok
// is false, and the caller reads the history.
//
// Errors: CodeUnavailable.
func (l *Log) LastSeqOf(ctx context.Context, kind assist.Kind, id string) (seq uint64, ok bool, err error) {
	switch {
	case l.store != nil:
		return 0, false, nil
	case !ValidCaseID(id):
		return 0, true, nil
	}
	if seq, err = l.leaderLastSeq(ctx, Filter(kind, id)); err != nil {
		return 0, false, unavailable("last event of "+string(kind)+" "+id, err)
	}
	return seq, true, nil
}

// leaderLastSeq asks the stream leader (the message get API, not a direct
// get) for the sequence of the last message on subject; 0 when none.
func (l *Log) leaderLastSeq(ctx context.Context, subject string) (uint64, error) {
	seq, _, err := l.leaderGet(ctx, Stream, map[string]any{"last_by_subj": subject})
	return seq, err
}

// Holds says whether the event log's leader holds the event at seq. It
// asks the leader (the message get API), not a replica: an ordered
// consumer or a direct get may be served by a replica still catching up
// after its server restarted, which does not hold the newest events yet.
//
// Errors: CodeUnavailable when JetStream does not answer.
func (l *Log) Holds(ctx context.Context, seq uint64) (bool, error) {
	return l.HoldsIn(ctx, Stream, seq)
}

// HoldsIn is Holds for any of the log's streams (AccessStream, DLQStream).
//
// Errors: CodeUnavailable when JetStream does not answer.
func (l *Log) HoldsIn(ctx context.Context, stream string, seq uint64) (bool, error) {
	_, found, err := l.leaderGet(ctx, stream, map[string]any{"seq": seq})
	if err != nil {
		return false, unavailable(fmt.Sprintf("message %d of %s from the leader", seq, stream), err)
	}
	return found, nil
}

// leaderGet asks the leader of stream for one message (req is the message
// get API's request): its sequence, or found false when there is none.
func (l *Log) leaderGet(ctx context.Context, stream string, req map[string]any) (seq uint64, found bool, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, false, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	// While the cluster elects the stream's leader (or after a lost
	// connection) a request is never answered: each attempt has its own
	// short deadline, so that a read goes through as soon as there is a
	// leader rather than when the caller's time is spent.
	msg, err := retry.DoValue(ctx, retry.Policy{First: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		func(err error) bool { return isTimeout(err) || errors.Is(err, nats.ErrNoResponders) },
		func(ctx context.Context) (*nats.Msg, error) {
			ctx, cancel := context.WithTimeout(ctx, appendAttempt)
			defer cancel()
			return l.js.Conn().RequestWithContext(ctx, l.api+"STREAM.MSG.GET."+stream, body)
		})
	if err != nil {
		return 0, false, err
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, false, err
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, false, nil
	case resp.Error != nil:
		return 0, false, resp.Error
	case resp.Message == nil:
		return 0, false, errors.New("message get answered without a message")
	}
	return resp.Message.Seq, true, nil
}

// scan reads every message of a stream on subject, in order, with batched
// direct gets. A batch can end early (the request's time ran out) without
// an error; the Nats-Num-Pending header of the last message received tells
// whether more remain, so a short batch is never mistaken for the end.
func (l *Log) scan(ctx context.Context, stream, subject string, f func(*jetstream.RawStreamMsg) error) error {
	const batch = 256
	next := uint64(1)
	for {
		got, pending := 0, int64(-1)
		err := l.directGet(ctx, stream, directBatch{Batch: batch, Seq: next, NextBySubj: subject}, func(raw *jetstream.RawStreamMsg) error {
			if err := f(raw); err != nil {
				return err
			}
			next = raw.Sequence + 1
			got++
			var err error
			pending, err = numPending(raw)
			return err
		})
		switch {
		case errors.Is(err, errNoMessages):
			return nil // nothing at or after next
		case err != nil:
			return err
		case pending == 0:
			return nil
		case got == 0:
			return fmt.Errorf("reading %s from %s: no answer before the deadline", subject, stream)
		}
	}
}

// Load reads and decodes every event of a case in order.
//
// Errors: CodeUnavailable when JetStream does not answer, CodeInternal
// when a stored event does not decode.
func (l *Log) Load(ctx context.Context, caseID string) ([]assist.Recorded, error) {
	return l.History(ctx, assist.KindCase, caseID)
}

// History reads and decodes every event of one thing of a kind in order.
//
// Errors: CodeUnavailable when JetStream does not answer, CodeInternal
// when a stored event does not decode.
func (l *Log) History(ctx context.Context, kind assist.Kind, id string) ([]assist.Recorded, error) {
	msgs, err := l.LoadOf(ctx, kind, id)
	if err != nil {
		return nil, err
	}
	return Decode(msgs)
}

// Decode decodes raw events.
func Decode(msgs []Msg) ([]assist.Recorded, error) {
	out := make([]assist.Recorded, 0, len(msgs))
	for _, m := range msgs {
		e, err := eventcodec.Decode(m.Type, m.Data)
		if err != nil {
			return nil, fmt.Errorf("event at %d: %w", m.Seq, err)
		}
		out = append(out, assist.Recorded{Seq: m.Seq, Event: e})
	}
	return out, nil
}

// Get reads the event at a stream sequence.
//
// Errors: CodeNotFound past the end of the log, CodeUnavailable when
// JetStream does not answer.
func (l *Log) Get(ctx context.Context, seq uint64) (Msg, error) {
	raw, err := l.stream.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return Msg{}, assist.Errorf(assist.CodeNotFound, "no event at %d", seq)
		}
		return Msg{}, unavailable(fmt.Sprintf("get event %d", seq), err)
	}
	return FromRaw(raw), nil
}

// LastSeq is the sequence of the newest event in the log.
//
// Errors: CodeUnavailable when JetStream does not answer.
func (l *Log) LastSeq(ctx context.Context) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, unavailable("stream info", err)
	}
	return info.State.LastSeq, nil
}

func unavailable(what string, err error) error {
	return &assist.Error{Code: assist.CodeUnavailable, Message: fmt.Sprintf("event log: %s: %v", what, err)}
}
