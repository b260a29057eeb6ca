package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// verifyPage is how many archived events Verify holds at once; memory is
// bounded by it whatever the size of the archive.
const verifyPage = 1000

// logBatch is the most events one batched direct get asks the stream for.
const logBatch = 500

// Verify walks the whole archive from sequence 1 and checks, event by
// event, that
//
//   - the archive has no hole: its sequences are 1, 2, 3, ...;
//   - each stored hash is HashEvent of the stored sequence, subject, id
//     and bytes;
//   - each stored chain is ChainNext of the chain recomputed up to the
//     previous event and the hash;
//   - the event log holds the same event at that sequence: subject, id,
//     bytes and stream time, and the case id and type derived from the
//     subject; an archived event beyond the end of the log is bad too.
//
// It stops at the first event that fails and names it in FirstBad with the
// check that failed in Reason. Events counts the events verified good. Lag
// counts the events of the log the archive has not reached yet, which is
// not a failure. The archive is read in pages and the log in batches, both
// in order, so memory stays bounded and each event costs no round trip of
// its own. Verify needs no running service: `eva audit verify` calls it
// with a store and a log of its own.
//
// Errors: those of the store; CodeUnavailable when the log does not
// answer. A mismatch is not an error: it is the result.
func Verify(ctx context.Context, store Store, log *eventlog.Log) (auditapi.VerifyResult, error) {
	var res auditapi.VerifyResult
	bad := func(seq uint64, format string, args ...any) (auditapi.VerifyResult, error) {
		res.FirstBad = &seq
		res.Reason = fmt.Sprintf(format, args...)
		return res, nil
	}
	// last is the end of the log as far as Verify knows; it is read again
	// when the archive gets past it, since the log grows meanwhile.
	last, err := log.LastSeq(ctx)
	if err != nil {
		return auditapi.VerifyResult{}, err
	}
	chain := GenesisChain()
	next := uint64(1) // the sequence the archive must hold next
	for {
		page, err := store.Range(ctx, next-1, verifyPage)
		if err != nil {
			return auditapi.VerifyResult{}, fmt.Errorf("verify: %w", err)
		}
		if len(page) == 0 {
			break
		}
		// If the page is contiguous, it holds next .. next+len-1.
		end := next + uint64(len(page)) - 1
		if end > last {
			if last, err = log.LastSeq(ctx); err != nil {
				return auditapi.VerifyResult{}, err
			}
		}
		var msgs []eventlog.Msg
		if upto := min(end, last); upto >= next {
			// On a hole, msgs holds the events before it.
			msgs, err = readLog(ctx, log.JetStream(), next, upto)
			if err != nil && !errors.As(err, new(logHole)) {
				return auditapi.VerifyResult{}, err
			}
		}
		for i, r := range page {
			if r.Seq != next {
				return bad(next, "event %d is missing from the archive (the next archived event is %d)", next, r.Seq)
			}
			if !bytes.Equal(r.Hash, HashEvent(r.Seq, r.Subject, r.ID, r.Data)) {
				return bad(r.Seq, "archived event %d does not match its hash", r.Seq)
			}
			want := ChainNext(chain, r.Hash)
			if !bytes.Equal(r.Chain, want) {
				return bad(r.Seq, "chain of archived event %d does not follow from the events before it", r.Seq)
			}
			chain = want
			if r.Seq > last {
				return bad(r.Seq, "archived event %d is not in the log, which ends at %d", r.Seq, last)
			}
			if i >= len(msgs) {
				return bad(r.Seq, "archived event %d is not in the log, which has a hole there", r.Seq)
			}
			if what := differs(r, msgs[i]); what != "" {
				return bad(r.Seq, "archived event %d differs from the log: %s", r.Seq, what)
			}
			res.Events++
			next++
		}
	}
	if last, err = log.LastSeq(ctx); err != nil {
		return auditapi.VerifyResult{}, err
	}
	if archived := next - 1; last > archived {
		res.Lag = last - archived
	}
	res.OK = true
	return res, nil
}

// differs names the first field in which an archived record and the log's
// event at the same position disagree; "" when they agree.
func differs(r Record, m eventlog.Msg) string {
	want := fromMsg(m)
	switch {
	case m.Seq != r.Seq:
		return "the log has no event " + strconv.FormatUint(r.Seq, 10)
	case r.Subject != want.Subject:
		return "subject"
	case r.ID != want.ID:
		return "event id"
	case !bytes.Equal(r.Data, want.Data):
		return "bytes"
	case sqldb.Micros(r.At) != sqldb.Micros(want.At):
		return "stream time"
	case r.CaseID != want.CaseID:
		return "case id"
	case r.Type != want.Type:
		return "type"
	}
	return ""
}

// logReadTimeout bounds one batched read of the log. It is explicit
// because a batched direct get that runs out of time ends its messages
// early without an error; readLog checks that it got every event it asked
// for, and this keeps a slow server from failing it after the connection's
// short default timeout.
const logReadTimeout = 30 * time.Second

// logHole reports that the log has no event at a sequence below its end.
// The stream never deletes, so this is a finding, not an outage.
type logHole uint64

func (h logHole) Error() string { return fmt.Sprintf("the log has no event %d", uint64(h)) }

// readLog returns the events of the log from sequence from to sequence to
// (both included, and to at most the end of the log), in order, with
// batched direct gets.
//
// Errors: logHole, with the events before the hole; CodeUnavailable when
// the log does not answer or answers with fewer events than exist.
func readLog(ctx context.Context, js jetstream.JetStream, from, to uint64) ([]eventlog.Msg, error) {
	out := make([]eventlog.Msg, 0, to-from+1)
	for next := from; next <= to; {
		got, err := readBatch(ctx, js, next, to, func(raw *jetstream.RawStreamMsg) error {
			if raw.Sequence != next {
				return logHole(next)
			}
			out = append(out, eventlog.FromRaw(raw))
			next++
			return nil
		})
		if errors.As(err, new(logHole)) {
			return out, err
		}
		if err != nil {
			return nil, err
		}
		if got == 0 {
			return nil, unavailable(fmt.Sprintf("read the log at %d", next), errors.New("no events returned"))
		}
	}
	return out, nil
}

// readBatch reads one batch of the log from sequence from on, at most to,
// and returns how many events f took.
func readBatch(ctx context.Context, js jetstream.JetStream, from, to uint64, f func(*jetstream.RawStreamMsg) error) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, logReadTimeout)
	defer cancel()
	it, err := jetstreamext.GetBatch(ctx, js, eventlog.Stream, int(min(to-from+1, logBatch)), jetstreamext.GetBatchSeq(from))
	if err != nil {
		return 0, unavailable(fmt.Sprintf("read the log at %d", from), err)
	}
	got := 0
	for raw, err := range it {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return got, unavailable(fmt.Sprintf("read the log at %d", from), err)
		}
		if raw.Sequence > to {
			break
		}
		if err := f(raw); err != nil {
			return got, err
		}
		got++
	}
	return got, nil
}

func unavailable(what string, err error) error {
	return &assist.Error{Code: assist.CodeUnavailable, Message: fmt.Sprintf("audit: %s: %v", what, err)}
}
