package eventlogtest

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
)

// Synthesize appends cases × perCase events to the log on js as fast as
// JetStream takes them, for benchmarks and large data directories: each
// case is filed (RequestSubmitted) and then claimed and released in turn,
// each event with its predecessor's sequence in HeaderPrev, exactly as
// eventlog appends them. The cases are interleaved, a wave of 1,000 at a
// time, as real traffic interleaves them. It must be the log's only
// writer meanwhile: sequences are predicted from the publishing order (and
// checked against the acks). It returns the log's last sequence.
func Synthesize(ctx context.Context, js jetstream.JetStream, cases, perCase int) (uint64, error) {
	info, err := js.Stream(ctx, eventlog.Stream)
	if err != nil {
		return 0, err
	}
	seq := info.CachedInfo().State.LastSeq
	actor := assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
	officer := assist.Actor{Username: "olu", Role: assist.RoleApprover}
	at := time.Now().UTC()
	var pending []jetstream.PubAckFuture
	var want []uint64
	flush := func() error {
		for i, f := range pending {
			select {
			case ack := <-f.Ok():
				if ack.Sequence != want[i] {
					return fmt.Errorf("synthesize: event acked at %d, predicted %d: another writer?", ack.Sequence, want[i])
				}
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending, want = pending[:0], want[:0]
		return nil
	}
	const wave = 1000
	for first := 0; first < cases; first += wave {
		n := min(wave, cases-first)
		states := make([]*assist.Case, n)
		for step := range perCase {
			for i := range n {
				cmd := assist.Cmd{ID: uuid.Must(uuid.NewV7()).String(), At: at}
				var ev assist.Event
				if step == 0 {
					cmd.Actor = actor
					ev, err = assist.Submit(cmd, assist.SubmitInput{Post: "BGD-DHAKA", Category: assist.Shelter,
						Urgency: assist.Urgencies[i%len(assist.Urgencies)], AmountCents: int64(10_000 + i),
						Justification: "synthetic", BeneficiaryRefHash: []byte("ref-" + strconv.Itoa(first+i))}, assist.DefaultPolicy())
				} else {
					cmd.Actor = officer
					if states[i].State == assist.StateUnderReview {
						ev, err = states[i].Release(cmd)
					} else {
						ev, err = states[i].Claim(cmd, time.Hour)
					}
				}
				if err != nil {
					return 0, fmt.Errorf("synthesize: %w", err)
				}
				data, err := eventcodec.Encode(ev)
				if err != nil {
					return 0, err
				}
				prev := uint64(0)
				if states[i] == nil {
					states[i] = &assist.Case{}
				} else {
					prev = states[i].Version
				}
				m := nats.NewMsg(eventlog.SubjectOf(ev.Kind(), ev.CaseID, ev.Type()))
				m.Data = data
				m.Header.Set(eventlog.HeaderPrev, strconv.FormatUint(prev, 10))
				f, err := js.PublishMsgAsync(m, jetstream.WithMsgID(ev.ID))
				if err != nil {
					return 0, err
				}
				seq++
				states[i].Apply(ev, seq)
				pending, want = append(pending, f), append(want, seq)
				if len(pending) == 1024 {
					if err := flush(); err != nil {
						return 0, err
					}
				}
			}
		}
	}
	return seq, flush()
}
