package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/retry"
)

var errAgain = errors.New("again")

func TestDoStopsOnSuccess(t *testing.T) {
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{First: time.Millisecond, Attempts: 10}, retry.Always, func(context.Context) error {
		calls++
		if calls < 3 {
			return errAgain
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, calls)
	}
}

func TestDoBoundsAttemptsAndReturnsTheLastError(t *testing.T) {
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{First: time.Millisecond, Attempts: 4}, retry.Always, func(context.Context) error {
		calls++
		return errAgain
	})
	if !errors.Is(err, errAgain) || calls != 4 {
		t.Fatalf("err %v after %d calls, want %v after 4", err, calls, errAgain)
	}
}

func TestDoStopsAtAnErrorNotRetryable(t *testing.T) {
	final := errors.New("final")
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{First: time.Millisecond}, func(err error) bool { return err == errAgain },
		func(context.Context) error {
			calls++
			if calls == 2 {
				return final
			}
			return errAgain
		})
	if err != final || calls != 2 {
		t.Fatalf("err %v after %d calls, want %v after 2", err, calls, final)
	}
}

func TestDoBoundsTheBudget(t *testing.T) {
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{First: time.Millisecond, Budget: 30 * time.Millisecond}, retry.Always,
		func(context.Context) error { calls++; return errAgain })
	if !errors.Is(err, errAgain) || calls < 2 {
		t.Fatalf("err %v after %d calls, want the last error after a few", err, calls)
	}
}

func TestDoEndsWithTheContextAndKeepsTheLastError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := retry.Do(ctx, retry.Policy{First: time.Millisecond}, retry.Always, func(context.Context) error {
		calls++
		if calls == 3 {
			cancel()
		}
		return errAgain
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errAgain) {
		t.Fatalf("err %v, want both the cancellation and the last error", err)
	}
}

func TestDoValue(t *testing.T) {
	calls := 0
	v, err := retry.DoValue(context.Background(), retry.Policy{First: time.Millisecond, Attempts: 5}, retry.Always,
		func(context.Context) (int, error) {
			calls++
			if calls < 2 {
				return 0, errAgain
			}
			return 42, nil
		})
	if v != 42 || err != nil {
		t.Fatalf("%d %v", v, err)
	}
}
