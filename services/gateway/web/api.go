package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/eva-org/eva/services/gateway"
)

// apiClient calls the gateway's JSON API in process: each call is an
// ordinary HTTP request served by the API's handler, with the user's
// token, so that roles, post scoping, strict decoding, idempotency and
// the error vocabulary are exactly the API's. The UI adds no second
// authorization.
type apiClient struct{ h http.Handler }

// call is one API request.
type call struct {
	method string
	path   string // with its query
	token  string // the user's token; "" sends none
	key    string // Idempotency-Key; "" sends none
	body   any    // marshalled as JSON; nil sends no body
	cookie string // a Cookie header; "" sends none
}

// result is the API's answer.
type result struct {
	Status int
	Header http.Header
	Body   []byte
	// Problem is the problem document of an answer >= 400.
	Problem *problem
}

// problem is an RFC 9457 problem as the API answers it.
type problem struct {
	Type              string       `json:"type"`
	Title             string       `json:"title"`
	Status            int          `json:"status"`
	Detail            string       `json:"detail"`
	Code              string       `json:"code"`
	Errors            []fieldError `json:"errors"`
	AvailableUSDCents *int64       `json:"available_usd_cents"`
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail) }

// do serves c with the API handler and returns its answer. An error is
// returned only when the request cannot be made; every answer of the API,
// problems included, is a result.
func (a apiClient) do(ctx context.Context, c call) (*result, error) {
	var body io.Reader = http.NoBody
	if c.body != nil {
		data, err := json.Marshal(c.body)
		if err != nil {
			return nil, fmt.Errorf("api %s %s: %w", c.method, c.path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, "http://eva.internal"+c.path, body)
	if err != nil {
		return nil, fmt.Errorf("api %s %s: %w", c.method, c.path, err)
	}
	req.RemoteAddr = "in-process"
	req.Header.Set("Accept", "application/json")
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.key != "" {
		req.Header.Set(gateway.IdempotencyHeader, c.key)
	}
	if c.cookie != "" {
		req.Header.Set("Cookie", c.cookie)
	}
	rec := &recorder{header: http.Header{}}
	a.h.ServeHTTP(rec, req)
	res := &result{Status: rec.status, Header: rec.header, Body: rec.buf.Bytes()}
	if res.Status == 0 {
		res.Status = http.StatusOK
	}
	if res.Status >= 400 {
		p := &problem{}
		if err := json.Unmarshal(res.Body, p); err != nil || p.Status == 0 {
			p = &problem{Status: res.Status, Code: "internal", Detail: http.StatusText(res.Status)}
		}
		res.Problem = p
	}
	return res, nil
}

// decode parses a successful answer into v.
func (r *result) decode(v any) error {
	if r.Problem != nil {
		return r.Problem
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode the API's answer: %w", err)
	}
	return nil
}

// recorder is the ResponseWriter an in-process call is served into.
type recorder struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.buf.Write(p)
}

// Flush is a no-op: the answer is read whole.
func (r *recorder) Flush() {}

// get reads path as the user into a T.
func get[T any](ctx context.Context, a apiClient, token, path string) (T, error) {
	var v T
	res, err := a.do(ctx, call{method: http.MethodGet, path: path, token: token})
	if err != nil {
		return v, err
	}
	err = res.decode(&v)
	return v, err
}

// getText reads path as the user, as text.
func getText(ctx context.Context, a apiClient, token, path string) (string, error) {
	res, err := a.do(ctx, call{method: http.MethodGet, path: path, token: token})
	if err != nil {
		return "", err
	}
	if res.Problem != nil {
		return "", res.Problem
	}
	return string(res.Body), nil
}

// query builds a query string from pairs of names and values, leaving out
// empty values.
func query(path string, pairs ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + q.Encode()
}

// API shapes (API.md), as far as the UI reads them.
type (
	me struct {
		Username string   `json:"username"`
		Roles    []string `json:"roles"`
		Posts    []string `json:"posts"`
	}
	tokenJSON struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	caseJSON struct {
		ID                  string     `json:"id"`
		Status              string     `json:"status"`
		Post                string     `json:"post"`
		Category            string     `json:"category"`
		Urgency             string     `json:"urgency"`
		AmountCents         int64      `json:"amount_usd_cents"`
		ApprovedCents       int64      `json:"approved_usd_cents"`
		Deadline            string     `json:"deadline"`
		Escalated           bool       `json:"escalated"`
		CreatedAt           string     `json:"created_at"`
		UpdatedAt           string     `json:"updated_at"`
		Version             uint64     `json:"version"`
		Requester           string     `json:"requester"`
		Justification       string     `json:"justification"`
		PayeeID             string     `json:"payee_id"`
		FundID              string     `json:"fund_id"`
		PayoutID            string     `json:"payout_id"`
		ClaimedBy           string     `json:"claimed_by"`
		ClaimExpiresAt      string     `json:"claim_expires_at"`
		Question            string     `json:"question"`
		PolicyVersion       string     `json:"policy_version"`
		Approvals           []approval `json:"approvals"`
		PossibleDuplicateOf []string   `json:"possible_duplicate_of"`
	}
	approval struct {
		Approver    string `json:"approver"`
		AmountCents int64  `json:"amount_usd_cents"`
		At          string `json:"at"`
	}
	queueItem struct {
		caseJSON
		Overdue            bool     `json:"overdue"`
		DueSoon            bool     `json:"due_soon"`
		PossibleDuplicates []string `json:"possible_duplicates"`
	}
	page[T any] struct {
		Items      []T    `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	eventJSON struct {
		Seq       uint64          `json:"seq"`
		ID        string          `json:"id"`
		RequestID string          `json:"request_id"`
		Type      string          `json:"type"`
		At        string          `json:"at"`
		Actor     actorJSON       `json:"actor"`
		Reason    string          `json:"reason"`
		Data      json.RawMessage `json:"data"`
		Hash      string          `json:"hash"`
		Chain     string          `json:"chain"`
	}
	eventsPage struct {
		Items     []eventJSON `json:"items"`
		NextAfter uint64      `json:"next_after"`
	}
	actorJSON struct {
		Username string `json:"username"`
		Role     string `json:"role"`
		Post     string `json:"post"`
	}
	beneficiaryJSON struct {
		Reference   string `json:"reference"`
		Name        string `json:"name"`
		DateOfBirth string `json:"date_of_birth"`
		Nationality string `json:"nationality"`
		Contact     string `json:"contact"`
	}
	fundJSON struct {
		ID             string `json:"id"`
		Name           string `json:"name"`
		AllocatedCents int64  `json:"allocated_usd_cents"`
		ReservedCents  int64  `json:"reserved_usd_cents"`
		PaidCents      int64  `json:"paid_usd_cents"`
		AvailableCents int64  `json:"available_usd_cents"`
		CreatedAt      string `json:"created_at"`
	}
	fundPoint struct {
		At             string `json:"at"`
		AllocatedCents int64  `json:"allocated_usd_cents"`
		ReservedCents  int64  `json:"reserved_usd_cents"`
		PaidCents      int64  `json:"paid_usd_cents"`
		AvailableCents int64  `json:"available_usd_cents"`
	}
	balancesJSON struct {
		AllocatedCents int64 `json:"allocated_usd_cents"`
		ReservedCents  int64 `json:"reserved_usd_cents"`
		PaidCents      int64 `json:"paid_usd_cents"`
		AvailableCents int64 `json:"available_usd_cents"`
	}
	ledgerEntryJSON struct {
		Seq         uint64       `json:"seq"`
		EventType   string       `json:"event_type"`
		Kind        string       `json:"kind"`
		RequestID   string       `json:"request_id"`
		PayoutID    string       `json:"payout_id"`
		Debit       string       `json:"debit"`
		Credit      string       `json:"credit"`
		AmountCents int64        `json:"amount_usd_cents"`
		At          string       `json:"at"`
		Actor       string       `json:"actor"`
		Balances    balancesJSON `json:"balances"`
	}
	ledgerJSON struct {
		Items                []ledgerEntryJSON `json:"items"`
		Balances             balancesJSON      `json:"balances"`
		UnrecordedHoldsCents int64             `json:"unrecorded_holds_usd_cents"`
		NextAfter            uint64            `json:"next_after"`
	}
	fundHistory struct {
		FundID string      `json:"fund_id"`
		Items  []fundPoint `json:"items"`
	}
	payeeJSON struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Country   string `json:"country"`
		Account   string `json:"account"`
		CreatedAt string `json:"created_at"`
	}
	payoutJSON struct {
		ID          string `json:"id"`
		RequestID   string `json:"request_id"`
		FundID      string `json:"fund_id"`
		PayeeID     string `json:"payee_id"`
		AmountCents int64  `json:"amount_usd_cents"`
		Status      string `json:"status"`
		Attempt     int    `json:"attempt"`
		ProviderRef string `json:"provider_ref"`
		LastError   string `json:"last_error"`
		CreatedAt   string `json:"created_at"`
		UpdatedAt   string `json:"updated_at"`
	}
	verifyJSON struct {
		OK       bool    `json:"ok"`
		Events   uint64  `json:"events"`
		FirstBad *uint64 `json:"first_bad"`
		Reason   string  `json:"reason"`
		Lag      uint64  `json:"lag"`
	}
	accessJSON struct {
		RequestID string `json:"request_id"`
		Username  string `json:"username"`
		Role      string `json:"role"`
		Post      string `json:"post"`
		At        string `json:"at"`
		What      string `json:"what"`
	}
	deadLetterJSON struct {
		Seq      uint64 `json:"seq"`
		Consumer string `json:"consumer"`
		Subject  string `json:"subject"`
		EventSeq uint64 `json:"event_seq"`
		EventID  string `json:"event_id"`
		Reason   string `json:"reason"`
		At       string `json:"dead_lettered_at"`
	}
	deadLettersPage struct {
		Items     []deadLetterJSON `json:"items"`
		NextAfter uint64           `json:"next_after"`
	}
)
