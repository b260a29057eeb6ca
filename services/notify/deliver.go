package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/seal"
)

// Payload is the JSON body of a webhook delivery: what happened to which
// case, never personal data.
type Payload struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	CaseID string    `json:"case_id"`
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	Status string    `json:"status"`
}

// The headers of a delivery.
const (
	HeaderEventID   = "EVA-Event-Id"
	HeaderSignature = "EVA-Signature"
)

// Sign is the EVA-Signature header of body sent at t under secret:
// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// workers is how many deliveries are attempted at once.
const workers = 8

// Deliver sends due webhook deliveries and mails until ctx ends: each is
// claimed (so that another replica does not send it at the same time),
// sent, and marked delivered on a 2xx (a mail: once the server accepted
// it), else tried again after a back-off that doubles from RetryFirst up
// to RetryMax. Every Config.SweepEvery it deletes what was delivered more
// than Config.Keep ago.
func (s *Service) Deliver(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	var swept time.Time
	for ctx.Err() == nil {
		if now := s.now(); now.Sub(swept) >= s.cfg.SweepEvery {
			swept = now
			if n, err := s.store.Sweep(ctx, now.Add(-s.cfg.Keep)); err != nil && ctx.Err() == nil {
				s.zl.Warn("outbox sweep", zap.Error(err))
			} else if n > 0 {
				s.zl.Info("outbox sweep", zap.Int64("deleted", n), zap.Duration("kept", s.cfg.Keep))
			}
		}
		n, err := s.DeliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.zl.Warn("webhook outbox", zap.Error(err))
		}
		k, merr := s.MailDue(ctx)
		if merr != nil && ctx.Err() == nil {
			s.zl.Warn("mail outbox", zap.Error(merr))
		}
		if (n > 0 && err == nil) || (k > 0 && merr == nil) {
			continue // there may be more
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-tick.C:
		}
	}
}

// DeliverDue makes one attempt at each delivery due now (up to a batch)
// and returns how many it attempted.
func (s *Service) DeliverDue(ctx context.Context) (int, error) {
	now := s.now()
	due, err := s.store.Due(ctx, now, 64)
	if err != nil {
		return 0, err
	}
	return attemptEach(ctx, due, func(d *Delivery) (bool, error) {
		ok, err := s.store.Claim(ctx, *d, now, now.Add(2*s.cfg.Timeout))
		if ok {
			d.Attempts++
		}
		return ok, err
	}, s.attempt)
}

// backoff is the wait after the attempt-th failed attempt.
func (s *Service) backoff(attempt int) time.Duration {
	d := s.cfg.RetryFirst
	for i := 1; i < attempt && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.RetryMax)
}

// attempt posts one delivery and records the outcome; an error is the
// store's only.
func (s *Service) attempt(ctx context.Context, d Delivery) error {
	w, err := s.store.Webhook(ctx, d.WebhookID)
	if err != nil {
		return err
	}
	if w.Removed {
		return nil // dropped with the webhook
	}
	reason := s.post(ctx, d, w.URL, w.SecretKey, w.Secret.KeyID, w.Secret.Ciphertext)
	if reason == "" {
		// The receiver has it: record so even when stopping, or the next
		// run sends it again.
		rctx, cancel := recordContext(ctx)
		defer cancel()
		return s.store.Delivered(rctx, d, s.now())
	}
	if ctx.Err() != nil {
		// Stopping: the claim runs out and the next run tries again.
		return nil
	}
	wait := s.backoff(d.Attempts)
	s.zl.Info("webhook delivery failed; will retry", zap.String("webhook", d.WebhookID), zap.String("event", d.EventID),
		zap.Int("attempt", d.Attempts), zap.Duration("in", wait), zap.String("reason", reason))
	return s.store.Failed(ctx, d, s.now().Add(wait), reason)
}

// post sends d to url, signed with the sealed secret; it returns why it
// did not get a 2xx, "" when it did.
func (s *Service) post(ctx context.Context, d Delivery, url string, wrapped []byte, keyID string, sealed []byte) string {
	key, err := s.keys.Unwrap(keyID, wrapped)
	if err != nil {
		return "the secret does not open: " + err.Error()
	}
	secret, err := seal.Open(key, sealed, []byte(keyID))
	if err != nil {
		return "the secret does not open: " + err.Error()
	}
	body, err := json.Marshal(Payload{ID: d.EventID, Type: d.Type, CaseID: d.CaseID, Seq: d.Seq, At: d.At.UTC(),
		Status: string(d.Status)})
	if err != nil {
		return err.Error()
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "EVA-Webhook/1")
	req.Header.Set(HeaderEventID, d.EventID)
	req.Header.Set(HeaderSignature, Sign(secret, s.now(), body))
	resp, err := s.http.Do(req)
	if err != nil {
		return err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Sprintf("answered %d", resp.StatusCode)
	}
	return ""
}

// MailDue makes one attempt at each mail due now (up to a batch) and
// returns how many it attempted. With e-mail off it sends nothing.
func (s *Service) MailDue(ctx context.Context) (int, error) {
	if !s.cfg.SMTP.On() {
		return 0, nil
	}
	now := s.now()
	due, err := s.store.DueMails(ctx, now, 64)
	if err != nil {
		return 0, err
	}
	return attemptEach(ctx, due, func(m *Mail) (bool, error) {
		ok, err := s.store.ClaimMail(ctx, *m, now, now.Add(2*s.cfg.Timeout))
		if ok {
			m.Attempts++
		}
		return ok, err
	}, s.attemptMail)
}

// attemptEach claims each due item in turn and attempts each one claimed
// on up to workers goroutines at once; it returns how many it attempted
// and the attempts' errors joined. A claim that fails stops it.
func attemptEach[T any](ctx context.Context, due []T, claim func(*T) (bool, error), attempt func(context.Context, T) error) (int, error) {
	var (
		wg        sync.WaitGroup
		sem       = make(chan struct{}, workers)
		mu        sync.Mutex
		attempted int
		errs      []error
	)
	for _, it := range due {
		ok, err := claim(&it)
		if err != nil {
			return attempted, err
		}
		if !ok {
			continue
		}
		attempted++
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := attempt(ctx, it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return attempted, errors.Join(errs...)
}

// recordTimeout bounds the recording of a delivery that happened.
const recordTimeout = 5 * time.Second

// recordContext is ctx without its cancellation, for a short while: a
// delivery the receiver accepted is recorded even when notify is
// stopping, so that the next run does not send it again.
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// attemptMail sends one mail and records the outcome; an error is the
// store's only. The log names the recipient's account, never its address.
func (s *Service) attemptMail(ctx context.Context, m Mail) error {
	msg := m.render(s.cfg.SMTP.From, s.cfg.SMTP.fromDomain(), s.cfg.PublicURL)
	err := s.mail.send(ctx, m.Address, msg)
	if err == nil {
		rctx, cancel := recordContext(ctx)
		defer cancel()
		return s.store.MailSent(rctx, m, s.now())
	}
	if ctx.Err() != nil {
		return nil // stopping: the claim runs out and the next run tries again
	}
	var se *sendError
	if errors.As(err, &se) && se.Permanent {
		s.zl.Warn("mail refused for good; dropped", zap.String("to", m.Username), zap.String("event", m.EventID),
			zap.Int("attempt", m.Attempts), zap.String("reason", err.Error()))
		return s.store.MailFailed(ctx, m, time.Time{}, err.Error())
	}
	wait := s.backoff(m.Attempts)
	s.zl.Info("mail not sent; will retry", zap.String("to", m.Username), zap.String("event", m.EventID),
		zap.Int("attempt", m.Attempts), zap.Duration("in", wait), zap.String("reason", err.Error()))
	return s.store.MailFailed(ctx, m, s.now().Add(wait), err.Error())
}
