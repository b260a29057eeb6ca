package providerhttp_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/services/disbursement/providerhttp"
)

// Fetching the statement asks again after a 503 and reads the lines of
// the answer that comes; a 404 is not asked again, and a garbled line is
// an error naming its number and field, never a shorter statement.
func TestStatementIsAskedAgainAndReadStrictly(t *testing.T) {
	const line = `{"provider_ref":"R1","key":"p1-1","payee_id":"payee","amount_usd_cents":500,"currency":"USD","settled_at":"2026-12-02T10:00:00Z"}`
	for _, tc := range []struct {
		name   string
		answer func(call int64, w http.ResponseWriter)
		calls  int64
		lines  int
		err    string
	}{
		{"503 then the statement", func(call int64, w http.ResponseWriter) {
			if call == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte(line + "\n\n" + strings.Replace(line, "p1-1", "p2-1", 1) + "\n"))
		}, 2, 2, ""},
		{"404", func(_ int64, w http.ResponseWriter) {
			providerhttp.WriteProblem(w, http.StatusNotFound, providerhttp.Problem{Title: "no statement here"})
		}, 1, 0, "404 Not Found: no statement here"},
		{"a line without its amount", func(_ int64, w http.ResponseWriter) {
			_, _ = w.Write([]byte(line + "\n" + strings.Replace(line, `"amount_usd_cents":500,`, "", 1) + "\n"))
		}, 1, 0, "statement line 2: amount_usd_cents must be a positive number of cents"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != providerhttp.StatementPath {
					t.Errorf("%s %s", r.Method, r.URL.Path)
				}
				tc.answer(calls.Add(1), w)
			}))
			defer srv.Close()
			c, err := providerhttp.New(providerhttp.Config{URL: srv.URL, Attempts: 3, Backoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			lines, err := c.Statement(t.Context())
			if tc.err == "" && (err != nil || len(lines) != tc.lines || lines[1].PayoutID != "p2") {
				t.Fatalf("Statement = %+v, %v; want %d lines", lines, err, tc.lines)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || lines != nil) {
				t.Fatalf("Statement = %+v, %v; want an error with %q", lines, err, tc.err)
			}
			if calls.Load() != tc.calls {
				t.Errorf("%d calls, want %d", calls.Load(), tc.calls)
			}
		})
	}
}
