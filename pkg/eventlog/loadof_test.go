package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// fakeStoreWithoutResponders is a store whose reads fail with no
// responders until a moment, as a new replicated stream's reads do until
// its replicas subscribe to direct gets, and then hold one event.
type fakeStoreWithoutResponders struct {
	until time.Time
	reads int
}

func (s *fakeStoreWithoutResponders) Publish(context.Context, *nats.Msg, string, string, uint64) (uint64, bool, error) {
	return 0, false, errors.New("fake store: no appends")
}

func (s *fakeStoreWithoutResponders) Scan(_ context.Context, filter string, f func(eventlog.Msg) error) error {
	s.reads++
	if time.Now().Before(s.until) {
		return fmt.Errorf("fake store: %w", nats.ErrNoResponders)
	}
	return f(eventlog.Msg{Seq: 1, Subject: filter[:len(filter)-1] + "RequestSubmitted", Type: "RequestSubmitted"})
}

// A read waits for a stream's replicas to serve it for a time, not for a
// number of reads: after 1.5 s without responders (longer than 50 reads
// take) it still gets the case.
func TestLoadOfWaitsOutAStreamWithoutRespondersForSeconds(t *testing.T) {
	store := &fakeStoreWithoutResponders{until: time.Now().Add(1500 * time.Millisecond)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := eventlog.OnStore(store).LoadRaw(ctx, newID())
	if err != nil {
		t.Fatalf("load after %d reads: %v", store.reads, err)
	}
	if len(msgs) != 1 || msgs[0].Seq != 1 {
		t.Fatalf("load: %+v, want the one event", msgs)
	}
	if store.reads < 2 {
		t.Fatalf("%d reads: the first should have found no responders", store.reads)
	}
}

// A read that nobody serves within its caller's time fails as
// unavailable, and says why.
func TestLoadOfWithoutRespondersIsUnavailable(t *testing.T) {
	store := &fakeStoreWithoutResponders{until: time.Now().Add(time.Hour)}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := eventlog.OnStore(store).LoadRaw(ctx, newID())
	if assist.ErrorCode(err) != assist.CodeUnavailable || !strings.Contains(err.Error(), nats.ErrNoResponders.Error()) {
		t.Fatalf("load: %v (code %s), want unavailable for no responders", err, assist.ErrorCode(err))
	}
}
