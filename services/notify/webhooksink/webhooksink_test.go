package webhooksink_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/services/notify"
	"github.com/eva-org/eva/services/notify/webhooksink"
)

// The sink accepts what notify signs, and refuses a wrong secret, a
// changed body, a malformed header and a stale signature, saying why.
func TestSinkChecksNotifySignatures(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	sink := &webhooksink.Sink{Secret: []byte("a-long-shared-secret"), Out: &out, Now: func() time.Time { return now }}
	body := []byte(`{"id":"e1","type":"DeadlineMissed","case_id":"c1","seq":7,"at":"2026-12-02T09:59:59Z","status":"submitted"}`)
	send := func(sig string, body []byte) int {
		r := httptest.NewRequest(http.MethodPost, "/eva", bytes.NewReader(body))
		r.Header.Set(webhooksink.HeaderEventID, "e1")
		r.Header.Set(webhooksink.HeaderSignature, sig)
		w := httptest.NewRecorder()
		sink.ServeHTTP(w, r)
		return w.Code
	}
	if code := send(notify.Sign([]byte("a-long-shared-secret"), now.Add(-time.Second), body), body); code != http.StatusNoContent {
		t.Fatalf("a good delivery: %d (%s)", code, out.String())
	}
	if !strings.HasPrefix(out.String(), "e1 signature ok "+string(body)+"\n") {
		t.Fatalf("printed %q", out.String())
	}
	for name, c := range map[string]struct {
		sig  string
		body []byte
		why  string
	}{
		"wrong secret": {notify.Sign([]byte("another-secret"), now, body), body, "does not verify"},
		"changed body": {notify.Sign([]byte("a-long-shared-secret"), now, body), bytes.Replace(body, []byte("submitted"), []byte("approved"), 1), "does not verify"},
		"malformed":    {"v1=abc", body, "malformed"},
		"stale":        {notify.Sign([]byte("a-long-shared-secret"), now.Add(-10*time.Minute), body), body, "outside 5m0s"},
	} {
		out.Reset()
		if code := send(c.sig, c.body); code != http.StatusUnauthorized || !strings.Contains(out.String(), "e1 REFUSED: ") || !strings.Contains(out.String(), c.why) {
			t.Errorf("%s: %d %q", name, code, out.String())
		}
	}
	if code := send(notify.Sign([]byte("a-long-shared-secret"), now, body), body); code != http.StatusNoContent {
		t.Fatalf("after refusals, a good delivery: %d", code)
	}
	r := httptest.NewRequest(http.MethodGet, "/eva", nil)
	w := httptest.NewRecorder()
	sink.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
}
