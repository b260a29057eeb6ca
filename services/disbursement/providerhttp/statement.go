package providerhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// StatementPath is where the provider serves its statement: every payment
// it settled, one JSON line each, in the format of package reconcile.
const StatementPath = "/v1/statement"

// StatementType is the statement's media type: JSON lines.
const StatementType = "application/x-ndjson"

// Statement fetches the provider's statement, for reconciliation against
// the ledger. A 5xx or 429, or no answer, is asked again as the payments
// are (Config's attempts and back-off); the statement may be long, so
// only ctx bounds the whole read.
//
// Errors: the provider's answer when it is not 200; a *reconcile.LineError
// naming the first line that does not parse.
func (c *Client) Statement(ctx context.Context) ([]reconcile.Line, error) {
	lines, err := retry.DoValue(ctx, retry.Policy{First: c.cfg.Backoff, Max: 16 * c.cfg.Backoff, Attempts: c.cfg.Attempts}, isTransient,
		func(ctx context.Context) ([]reconcile.Line, error) { return c.statementOnce(ctx) })
	if err != nil {
		return nil, fmt.Errorf("provider statement %s: %w", c.base.String()+StatementPath, err)
	}
	return lines, nil
}

func (c *Client) statementOnce(ctx context.Context) ([]reconcile.Line, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+StatementPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", StatementType)
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, transient{err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return reconcile.Parse(resp.Body)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, transient{fmt.Errorf("%s", resp.Status)}
	default:
		var pr Problem
		_ = json.NewDecoder(io.LimitReader(resp.Body, MaxBody)).Decode(&pr)
		return nil, fmt.Errorf("%s: %s", resp.Status, pr.Title)
	}
}
