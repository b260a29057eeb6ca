package providerhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/services/disbursement"
)

// Config is the adapter's configuration.
type Config struct {
	// URL is the provider's base URL, e.g. http://provsim:8090.
	URL string
	// Timeout bounds one HTTP call; default 5s.
	Timeout time.Duration
	// Attempts bounds the calls of one Pay or Status; default 4.
	Attempts int
	// Backoff is the wait before the second call, doubled (with jitter)
	// before each next one, up to 16 times; default 100ms.
	Backoff time.Duration
	// HTTP is the client; default a new one.
	HTTP *http.Client
}

// Client is disbursement's provider over HTTP. It never turns a missing
// answer into a failure: a payment whose outcome is unknown (timeout,
// connection lost, 5xx) is asked again with the same idempotency key, and
// when the attempts run out the call returns an unavailable error, so
// the payout worker asks again soon — it never records a failure and pays
// anew. Only the provider's own "failed" is a failure.
type Client struct {
	base *url.URL
	cfg  Config
}

// New returns the adapter for the provider at cfg.URL.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("provider URL %q: want http(s)://host[:port]", cfg.URL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 100 * time.Millisecond
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	return &Client{base: u, cfg: cfg}, nil
}

// transient marks an answer that may change if asked again.
type transient struct{ error }

func (t transient) Unwrap() error { return t.error }

func isTransient(err error) bool { var t transient; return errors.As(err, &t) }

// Pay implements disbursement.Provider: POST /v1/payments with the
// payment's key as idempotency key.
func (c *Client) Pay(ctx context.Context, p disbursement.Payment) (disbursement.Receipt, error) {
	body, err := json.Marshal(PaymentRequest{Key: p.Key, PayeeID: p.PayeeID, Account: p.Account, AmountCents: p.AmountCents})
	if err != nil {
		return disbursement.Receipt{}, err
	}
	return c.call(ctx, http.MethodPost, "/v1/payments", body, p.Key)
}

// Status implements disbursement.Provider: GET /v1/payments/{key}.
func (c *Client) Status(ctx context.Context, key string) (disbursement.Receipt, error) {
	return c.call(ctx, http.MethodGet, "/v1/payments/"+url.PathEscape(key), nil, key)
}

func (c *Client) call(ctx context.Context, method, path string, body []byte, key string) (disbursement.Receipt, error) {
	r, err := retry.DoValue(ctx, retry.Policy{First: c.cfg.Backoff, Max: 16 * c.cfg.Backoff, Attempts: c.cfg.Attempts}, isTransient,
		func(ctx context.Context) (disbursement.Receipt, error) { return c.once(ctx, method, path, body, key) })
	if isTransient(err) {
		// Unknown outcome: the worker asks again soon, with the same key.
		return disbursement.Receipt{}, assist.Errorf(assist.CodeUnavailable, "provider %s %s: outcome unknown after %d calls: %v",
			method, path, c.cfg.Attempts, err)
	}
	return r, err
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, key string) (disbursement.Receipt, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return disbursement.Receipt{}, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return disbursement.Receipt{}, err // the caller gave up
		}
		return disbursement.Receipt{}, transient{err}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBody))
		resp.Body.Close()
	}()
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		rc, err := decodeReceipt(resp.Body, key)
		if err != nil {
			// A garbled answer says nothing about the payment: ask again.
			return disbursement.Receipt{}, transient{err}
		}
		return rc, nil
	case resp.StatusCode == http.StatusNotFound && method == http.MethodGet:
		var pr Problem
		if json.NewDecoder(io.LimitReader(resp.Body, MaxBody)).Decode(&pr) == nil && pr.Code == CodeUnknownPayment {
			return disbursement.Receipt{}, disbursement.ErrUnknownPayment
		}
		// A 404 that is not the provider's (a proxy, a wrong path) must
		// not read as "never paid".
		return disbursement.Receipt{}, transient{fmt.Errorf("provider %s %s: 404 without code %s", method, path, CodeUnknownPayment)}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return disbursement.Receipt{}, transient{fmt.Errorf("provider %s %s: %s", method, path, resp.Status)}
	default:
		var pr Problem
		_ = json.NewDecoder(io.LimitReader(resp.Body, MaxBody)).Decode(&pr)
		return disbursement.Receipt{}, fmt.Errorf("provider %s %s: %s: %s (field %q)", method, path, resp.Status, pr.Title, pr.Field)
	}
}
