package providerhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
)

// fakeBank is a fake provider: it books a key once, and its answer
// decides what the adapter hears.
type fakeBank struct {
	mu     sync.Mutex
	booked map[string]int
	calls  atomic.Int64
	answer func(call int64, w http.ResponseWriter, key string) bool // true: answered
}

func (b *fakeBank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := b.calls.Add(1)
	var key string
	if r.Method == http.MethodPost {
		p, err := providerhttp.DecodePaymentRequest(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		key = p.Key
		b.mu.Lock()
		b.booked[key]++
		b.mu.Unlock()
	} else {
		key = strings.TrimPrefix(r.URL.Path, "/v1/payments/")
	}
	if b.answer != nil && b.answer(call, w, key) {
		return
	}
	_ = json.NewEncoder(w).Encode(providerhttp.Receipt{Key: key, Ref: "R-" + key, Status: disbursement.ReceiptSent})
}

func newFakeBank(t *testing.T, answer func(int64, http.ResponseWriter, string) bool) (*fakeBank, *providerhttp.Client) {
	b := &fakeBank{booked: map[string]int{}, answer: answer}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	c, err := providerhttp.New(providerhttp.Config{URL: srv.URL, Timeout: 100 * time.Millisecond, Attempts: 3, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

var pay = disbursement.Payment{Key: "p1-1", PayeeID: "payee", Account: "ACC", AmountCents: 500}

// A call that times out after the bank booked it is asked again with the
// same key: the adapter returns the bank's receipt, and the bank booked
// the payment once.
func TestTimeoutIsAskedAgainWithTheSameKey(t *testing.T) {
	b, c := newFakeBank(t, func(call int64, w http.ResponseWriter, key string) bool {
		if call == 1 {
			time.Sleep(300 * time.Millisecond) // beyond the adapter's timeout
		}
		return false
	})
	r, err := c.Pay(context.Background(), pay)
	if err != nil || r.Status != disbursement.ReceiptSent || r.Ref != "R-p1-1" {
		t.Fatalf("Pay = %+v, %v", r, err)
	}
	if b.calls.Load() != 2 || b.booked["p1-1"] != 2 {
		t.Fatalf("calls %d, booked %v: want the same key sent twice", b.calls.Load(), b.booked)
	}
}

// When no answer comes at all, the outcome is unknown: the adapter says
// unavailable (the worker asks again soon), never "failed".
func TestNoAnswerIsUnavailableNeverFailed(t *testing.T) {
	for name, answer := range map[string]func(int64, http.ResponseWriter, string) bool{
		"timeout": func(int64, http.ResponseWriter, string) bool { time.Sleep(200 * time.Millisecond); return false },
		"500": func(_ int64, w http.ResponseWriter, _ string) bool {
			w.WriteHeader(http.StatusInternalServerError)
			return true
		},
		"garbled": func(_ int64, w http.ResponseWriter, _ string) bool { _, _ = w.Write([]byte(`{"key":`)); return true },
		"another key": func(_ int64, w http.ResponseWriter, _ string) bool {
			_ = json.NewEncoder(w).Encode(providerhttp.Receipt{Key: "other", Status: disbursement.ReceiptFailed})
			return true
		},
		"unknown status": func(_ int64, w http.ResponseWriter, key string) bool {
			_ = json.NewEncoder(w).Encode(providerhttp.Receipt{Key: key, Status: "maybe"})
			return true
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, c := newFakeBank(t, answer)
			r, err := c.Pay(context.Background(), pay)
			if !assist.IsCode(err, assist.CodeUnavailable) || r.Status != "" {
				t.Fatalf("Pay = %+v, %v; want unavailable and no receipt", r, err)
			}
			if b.calls.Load() != 3 {
				t.Fatalf("%d calls, want 3 (the attempts)", b.calls.Load())
			}
		})
	}
}

// Status: only the provider's own 404 with code unknown_payment means
// "never paid"; a bare 404 (a proxy, a wrong path) is no answer.
func TestStatusUnknownOnlyWhenTheProviderSaysSo(t *testing.T) {
	_, c := newFakeBank(t, func(_ int64, w http.ResponseWriter, key string) bool {
		if key == "gone" {
			providerhttp.WriteProblem(w, http.StatusNotFound, providerhttp.Problem{Title: "no", Code: providerhttp.CodeUnknownPayment})
		} else {
			http.NotFound(w, nil)
		}
		return true
	})
	if _, err := c.Status(context.Background(), "gone"); !errors.Is(err, disbursement.ErrUnknownPayment) {
		t.Fatalf("Status(gone) = %v, want ErrUnknownPayment", err)
	}
	if _, err := c.Status(context.Background(), "proxy"); errors.Is(err, disbursement.ErrUnknownPayment) || !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("Status behind a bare 404 = %v, want unavailable", err)
	}
}

// The provider's "failed" is the only failure.
func TestDeclineIsAFailure(t *testing.T) {
	_, c := newFakeBank(t, func(_ int64, w http.ResponseWriter, key string) bool {
		_ = json.NewEncoder(w).Encode(providerhttp.Receipt{Key: key, Ref: "R", Status: disbursement.ReceiptFailed, Error: "no such account"})
		return true
	})
	r, err := c.Pay(context.Background(), pay)
	if err != nil || r.Status != disbursement.ReceiptFailed || r.Error != "no such account" {
		t.Fatalf("Pay = %+v, %v", r, err)
	}
}

func TestNewRefusesABadURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "://"} {
		if _, err := providerhttp.New(providerhttp.Config{URL: u}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// The callback endpoint: a good callback is handed on (a duplicate too,
// harmlessly); bad ones answer 400 problem+json naming the field, and
// nothing is handed on.
func TestCallbackHandler(t *testing.T) {
	var got []string
	h := providerhttp.CallbackHandler(func(_ context.Context, key string) error { got = append(got, key); return nil }, zaptest.NewLogger(t))
	post := func(body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, providerhttp.CallbackPath, strings.NewReader(body)))
		return w
	}
	for range 2 {
		if w := post(`{"key":"p1-1","ref":"R","status":"settled"}`); w.Code != http.StatusNoContent {
			t.Fatalf("good callback: %d %s", w.Code, w.Body)
		}
	}
	if len(got) != 2 || got[0] != "p1-1" {
		t.Fatalf("handed on %v", got)
	}
	for body, field := range map[string]string{
		``:                                     "body",
		`[]`:                                   "body",
		`{"key":"","status":"settled"}`:        "key",
		`{"key":"a/b","status":"settled"}`:     "key",
		`{"key":"k","status":"paid"}`:          "status",
		`{"key":"k","status":"settled","x":1}`: "x",
		`{"key":1,"status":"settled"}`:         "key",
		`{"key":"k","ref":"\u0007","status":"settled"}`:                            "ref",
		`{"key":"k","status":"settled"} {}`:                                        "body",
		`{"key":"` + strings.Repeat("k", 129) + `","status":"settled"}`:            "key",
		`{"key":"k","status":"settled","ref":"` + strings.Repeat("r", 5000) + `"}`: "body",
	} {
		w := post(body)
		var p providerhttp.Problem
		_ = json.NewDecoder(w.Body).Decode(&p)
		if w.Code != http.StatusBadRequest || p.Field != field || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%.60q: %d field %q, want 400 naming %q", body, w.Code, p.Field, field)
		}
	}
	if len(got) != 2 {
		t.Fatalf("bad callbacks were handed on: %v", got)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, providerhttp.CallbackPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", w.Code)
	}
	failing := providerhttp.CallbackHandler(func(context.Context, string) error { return errors.New("down") }, zaptest.NewLogger(t))
	w = httptest.NewRecorder()
	failing.ServeHTTP(w, httptest.NewRequest(http.MethodPost, providerhttp.CallbackPath, bytes.NewBufferString(`{"key":"k","status":"settled"}`)))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("notice failing: %d", w.Code)
	}
}

// FuzzDecodeCallback: the decoder never panics, and whatever it accepts
// is a valid callback that encodes and decodes to itself.
func FuzzDecodeCallback(f *testing.F) {
	f.Add([]byte(`{"key":"0193-1","ref":"SIM-1","status":"settled"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cb, err := providerhttp.DecodeCallback(bytes.NewReader(data))
		if err != nil {
			var fe *providerhttp.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		again, err := json.Marshal(cb)
		if err != nil {
			t.Fatal(err)
		}
		back, err := providerhttp.DecodeCallback(bytes.NewReader(again))
		if err != nil || back != cb {
			t.Fatalf("%+v encodes to %s, which decodes to %+v, %v", cb, again, back, err)
		}
	})
}
