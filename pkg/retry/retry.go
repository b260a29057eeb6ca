// Package retry is EVA's one way of trying again: exponential back-off
// with jitter, bounded by a number of attempts, by a time budget or by the
// context, on github.com/sethvargo/go-retry.
package retry

import (
	"context"
	"errors"
	"time"

	goretry "github.com/sethvargo/go-retry"
)

// Policy says how to try again.
type Policy struct {
	// First is the first wait; each wait doubles, up to Max.
	First time.Duration
	// Max caps one wait; 0 is 16 × First.
	Max time.Duration
	// Attempts bounds the calls; 0 leaves them unbounded.
	Attempts int
	// Budget bounds the time spent trying; 0 leaves it to the context.
	Budget time.Duration
}

// Always retries every error.
func Always(error) bool { return true }

// Do calls f until it returns nil, or an error that retryable refuses, or
// the policy's attempts or budget run out, or ctx ends. It returns nil or
// f's last error; when ctx ended, joined with ctx's error.
func Do(ctx context.Context, p Policy, retryable func(error) bool, f func(ctx context.Context) error) error {
	_, err := DoValue(ctx, p, retryable, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

// DoValue is Do for a function that returns a value.
func DoValue[T any](ctx context.Context, p Policy, retryable func(error) bool, f func(ctx context.Context) (T, error)) (T, error) {
	var last error
	v, err := goretry.DoValue(ctx, p.backoff(), func(ctx context.Context) (T, error) {
		v, err := f(ctx)
		if err != nil && retryable(err) {
			last = err
			return v, goretry.RetryableError(err)
		}
		return v, err
	})
	if err != nil && ctx.Err() != nil && last != nil && errors.Is(err, ctx.Err()) {
		err = errors.Join(last, err)
	}
	return v, err
}

func (p Policy) backoff() goretry.Backoff {
	first := max(p.First, time.Millisecond)
	b := goretry.NewExponential(first)
	b = goretry.WithJitterPercent(20, b)
	ceiling := p.Max
	if ceiling <= 0 {
		ceiling = 16 * first
	}
	b = goretry.WithCappedDuration(ceiling, b)
	if p.Attempts > 0 {
		b = goretry.WithMaxRetries(uint64(p.Attempts-1), b)
	}
	if p.Budget > 0 {
		b = goretry.WithMaxDuration(p.Budget, b)
	}
	return b
}
