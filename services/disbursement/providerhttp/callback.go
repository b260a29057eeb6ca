package providerhttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// CallbackPath is where EVA takes the provider's callbacks.
const CallbackPath = "/provider/callbacks"

// Noticer is told that the provider has news about a payment key;
// disbursement.Service.ProviderNotice is one.
type Noticer func(ctx context.Context, key string) error

// CallbackHandler takes the provider's callbacks at CallbackPath: it
// decodes one, and tells notice its key, which only makes the payment's
// payout ask the provider now rather than at its next poll. It answers
// 204 once told (a duplicate too), 400 problem+json naming the field of
// a bad callback, 405 for another method, 503 when notice failed (the
// provider sends it again; the poll catches up anyway).
func CallbackHandler(notice Noticer, zl *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != CallbackPath {
			problem(w, http.StatusNotFound, Problem{Title: "no such path"})
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			problem(w, http.StatusMethodNotAllowed, Problem{Title: "POST a callback"})
			return
		}
		cb, err := DecodeCallback(r.Body)
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				problem(w, http.StatusBadRequest, Problem{Title: fe.Error(), Field: fe.Field})
				return
			}
			problem(w, http.StatusBadRequest, Problem{Title: err.Error(), Field: "body"})
			return
		}
		if err := notice(r.Context(), cb.Key); err != nil {
			zl.Warn("provider callback not applied; the poll will catch up", zap.String("key", cb.Key), zap.Error(err))
			problem(w, http.StatusServiceUnavailable, Problem{Title: "try again"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// problem writes an application/problem+json answer.
func problem(w http.ResponseWriter, status int, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteProblem writes an application/problem+json answer (for the
// provider simulator, which speaks the same format).
func WriteProblem(w http.ResponseWriter, status int, p Problem) { problem(w, status, p) }

// Notices returns a Noticer that hands each key to ch (disbursement's
// Deps.Notices), waiting at most a second for room: a notice that cannot
// be handed on answers 503, and the provider sends it again.
func Notices(ch chan<- string) Noticer {
	return func(ctx context.Context, key string) error {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case ch <- key:
			return nil
		case <-t.C:
			return errors.New("disbursement is not taking notices")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
