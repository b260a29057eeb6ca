// Package webhooksink receives EVA's webhooks as an outside receiver
// would (API.md, "Policy, users, notifications"): it checks each
// delivery's EVA-Signature against the shared secret, prints one line per
// delivery and answers 204, or 401 to a delivery whose signature does not
// verify (EVA then tries again later). `eva webhook-sink` serves it, for
// the README's demo and for anyone wiring a receiver; it is written from
// the contract alone, not from notify's sender, so that it checks it.
package webhooksink

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The headers of a delivery.
const (
	HeaderEventID   = "EVA-Event-Id"
	HeaderSignature = "EVA-Signature"
)

// DefaultTolerance is how far a signature's time may be from the
// receiver's clock: an older one may be a replayed delivery.
const DefaultTolerance = 5 * time.Minute

// maxBody bounds a delivery's body (they are a few hundred bytes).
const maxBody = 64 << 10

// Verify checks an EVA-Signature header of body under secret:
// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>, with t
// within tolerance of now (0: not checked). It returns t.
//
// Errors: a malformed header, a signature that does not match, a time
// outside the tolerance.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) (time.Time, error) {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return time.Time{}, fmt.Errorf("malformed %s %q", HeaderSignature, header)
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return time.Time{}, fmt.Errorf("malformed %s %q", HeaderSignature, header)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return time.Time{}, errors.New("the signature does not verify")
	}
	t := time.Unix(sec, 0)
	if d := now.Sub(t); tolerance > 0 && (d > tolerance || d < -tolerance) {
		return t, fmt.Errorf("signed at %s, %s from now: outside %s", t.UTC().Format(time.RFC3339), d.Round(time.Second), tolerance)
	}
	return t, nil
}

// Sink is the receiver's handler.
type Sink struct {
	Secret []byte
	// Tolerance: see Verify; 0 is DefaultTolerance, negative does not
	// check the time.
	Tolerance time.Duration
	// Out gets one line per delivery: "<event id> signature ok <body>",
	// or "<event id> REFUSED: <reason>".
	Out io.Writer
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	mu sync.Mutex
}

// ServeHTTP receives one delivery.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a delivery here", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	now, tol := time.Now, s.Tolerance
	if s.Now != nil {
		now = s.Now
	}
	if tol == 0 {
		tol = DefaultTolerance
	}
	if tol < 0 {
		tol = 0
	}
	id := r.Header.Get(HeaderEventID)
	_, err = Verify(s.Secret, r.Header.Get(HeaderSignature), body, now(), tol)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		fmt.Fprintf(s.Out, "%s REFUSED: %v\n", id, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var line bytes.Buffer
	if json.Compact(&line, body) != nil {
		line.Reset()
		line.WriteString(strconv.Quote(string(body)))
	}
	fmt.Fprintf(s.Out, "%s signature ok %s\n", id, line.Bytes())
	w.WriteHeader(http.StatusNoContent)
}
