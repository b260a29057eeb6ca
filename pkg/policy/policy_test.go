package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/policy"
)

// A book that holds the history it read sees a change made through
// another book on the same log (another replica of a service) at its next
// read, and every version in order.
func TestABookSeesAChangeMadeElsewhere(t *testing.T) {
	l := eventlogtest.Open(t).Log
	ctx := context.Background()
	reader, writer := policy.New(l, assist.DefaultPolicy()), policy.New(l, assist.DefaultPolicy())
	admin := assist.Actor{Username: "ada", Role: assist.RoleAdmin}
	want := []string{assist.DefaultPolicy().Version}
	for _, v := range []string{"2", "3"} {
		if p := mustCurrent(t, reader); p.Version != want[len(want)-1] {
			t.Fatalf("in force: %q, want %q", p.Version, want[len(want)-1])
		}
		in := assist.DefaultPolicy()
		in.ClaimTTL = time.Duration(len(want)) * time.Hour
		changed, err := writer.Change(ctx, uuid.Must(uuid.NewV7()).String(), admin, time.Now().UTC(), in)
		if err != nil {
			t.Fatal(err)
		}
		if changed.Policy.Version != v {
			t.Fatalf("changed to version %q, want %q", changed.Policy.Version, v)
		}
		want = append(want, v)
		if p := mustCurrent(t, reader); p.Version != v || p.ClaimTTL != in.ClaimTTL {
			t.Fatalf("after the change: version %q, claim %v; want %q, %v", p.Version, p.ClaimTTL, v, in.ClaimTTL)
		}
	}
	h, err := reader.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, pv := range h {
		if i >= len(want) || pv.Policy.Version != want[i] {
			t.Fatalf("history %d: %q, want %q", i, pv.Policy.Version, want)
		}
	}
}

func mustCurrent(tb testing.TB, b *policy.Book) assist.Policy {
	tb.Helper()
	p, err := b.Current(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
