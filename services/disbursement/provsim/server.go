package provsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
)

// Handler serves the provider's API (package providerhttp) with the
// simulation's latency, failures and declines.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payments", s.servePay)
	mux.HandleFunc("GET /v1/payments/{key}", s.serveStatus)
	mux.HandleFunc("GET "+providerhttp.StatementPath, s.serveStatement)
	return mux
}

func (s *Sim) servePay(w http.ResponseWriter, r *http.Request) {
	p, err := providerhttp.DecodePaymentRequest(r.Body)
	if err != nil {
		badRequest(w, err)
		return
	}
	if k := r.Header.Get("Idempotency-Key"); k != "" && k != p.Key {
		providerhttp.WriteProblem(w, http.StatusBadRequest, providerhttp.Problem{Title: "Idempotency-Key differs from key", Field: "Idempotency-Key"})
		return
	}
	if err := sleep(r.Context(), s.cfg.Latency/2); err != nil {
		return
	}
	fail := s.chance(s.cfg.FailureRate)
	lostAnswer := fail && s.chance(0.5)
	if fail {
		s.faults.Add(1)
	}
	if fail && !lostAnswer {
		providerhttp.WriteProblem(w, http.StatusServiceUnavailable, providerhttp.Problem{Title: "simulated outage"})
		return
	}
	// Once asked, the bank books the payment whether or not the caller
	// is still there to hear the answer.
	rc, err := s.book(context.WithoutCancel(r.Context()), disbursement.Payment{Key: p.Key, PayeeID: p.PayeeID, Account: p.Account, AmountCents: p.AmountCents})
	if err != nil {
		providerhttp.WriteProblem(w, http.StatusInternalServerError, providerhttp.Problem{Title: err.Error()})
		return
	}
	if err := sleep(r.Context(), s.cfg.Latency-s.cfg.Latency/2); err != nil {
		return
	}
	if lostAnswer {
		providerhttp.WriteProblem(w, http.StatusInternalServerError, providerhttp.Problem{Title: "simulated failure after booking"})
		return
	}
	writeReceipt(w, p.Key, rc)
}

func (s *Sim) serveStatus(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if err := providerhttp.CheckKey("key", key); err != nil {
		badRequest(w, err)
		return
	}
	if err := sleep(r.Context(), s.cfg.Latency); err != nil {
		return
	}
	if s.chance(s.cfg.FailureRate) {
		s.faults.Add(1)
		providerhttp.WriteProblem(w, http.StatusServiceUnavailable, providerhttp.Problem{Title: "simulated outage"})
		return
	}
	rc, err := s.Status(r.Context(), key)
	if errors.Is(err, disbursement.ErrUnknownPayment) {
		providerhttp.WriteProblem(w, http.StatusNotFound, providerhttp.Problem{Title: "no payment has this key", Code: providerhttp.CodeUnknownPayment})
		return
	}
	if err != nil {
		providerhttp.WriteProblem(w, http.StatusInternalServerError, providerhttp.Problem{Title: err.Error()})
		return
	}
	writeReceipt(w, key, rc)
}

func writeReceipt(w http.ResponseWriter, key string, rc disbursement.Receipt) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(providerhttp.Receipt{Key: key, Ref: rc.Ref, Status: rc.Status, Error: rc.Error})
}

func badRequest(w http.ResponseWriter, err error) {
	var fe *providerhttp.FieldError
	p := providerhttp.Problem{Title: err.Error(), Field: "body"}
	if errors.As(err, &fe) {
		p.Field = fe.Field
	}
	providerhttp.WriteProblem(w, http.StatusBadRequest, p)
}

// Server is the simulator serving HTTP.
type Server struct {
	sim    *Sim
	srv    *http.Server
	url    string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	zl     *zap.Logger
	client *http.Client
}

// Listen serves the simulator at addr (host:0 for any free port) until
// ctx ends or Close, and sends its callbacks when cfg.CallbackURL is set.
func Listen(ctx context.Context, sim *Sim, addr string, zl *zap.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("provider simulator: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{sim: sim, srv: &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second},
		url: "http://" + ln.Addr().String(), cancel: cancel, zl: zl, client: &http.Client{Timeout: 5 * time.Second}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			zl.Error("provider simulator stopped", zap.Error(err))
		}
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		_ = s.srv.Close()
	}()
	if sim.cfg.CallbackURL != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.callbacks(ctx)
		}()
	}
	return s, nil
}

// URL is the simulator's base URL.
func (s *Server) URL() string { return s.url }

// Close stops the server and its callbacks.
func (s *Server) Close() {
	s.cancel()
	s.wg.Wait()
}

// callbacks sends a callback for each payment that settled, 1 +
// Duplicates times, each after a random delay up to CallbackJitter.
func (s *Server) callbacks(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due, err := s.sim.settledUnnotified(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.zl.Warn("provider simulator: settled payments", zap.Error(err))
			}
			continue
		}
		for _, cb := range due {
			for range 1 + max(0, s.sim.cfg.Duplicates) {
				delay := s.sim.upTo(s.sim.cfg.CallbackJitter)
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					if sleep(ctx, delay) == nil {
						s.send(ctx, cb)
					}
				}()
			}
		}
	}
}

// send POSTs one callback, trying a few times.
func (s *Server) send(ctx context.Context, cb providerhttp.Callback) {
	body, _ := json.Marshal(cb)
	for i := range 3 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.sim.cfg.CallbackURL, bytes.NewReader(body))
		if err != nil {
			s.zl.Warn("provider simulator: callback", zap.Error(err))
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
			err = fmt.Errorf("callback answered %s", resp.Status)
		}
		if ctx.Err() != nil {
			return
		}
		s.zl.Debug("provider simulator: callback failed", zap.String("key", cb.Key), zap.Error(err))
		if sleep(ctx, time.Duration(100<<i)*time.Millisecond) != nil {
			return
		}
	}
}

// settledUnnotified marks the payments that settled since the last call
// as notified and returns their callbacks: one statement, committed on
// its own (one round trip on PostgreSQL, every tick of callbacks). Were
// its answer lost, the payments it marked get no callback, as those whose
// callbacks fail; the client asks for their status.
func (s *Sim) settledUnnotified(ctx context.Context) ([]providerhttp.Callback, error) {
	var out []providerhttp.Callback
	err := sqldb.Autocommit(ctx, s.db, func(q sqldb.Querier) error {
		out = nil
		rows, err := q.Query(ctx, `UPDATE provsim_payments SET notified = 1
			WHERE key IN (SELECT key FROM provsim_payments WHERE status = $1 AND notified = 0 AND settle_at <= $2 LIMIT 100)
			RETURNING key, ref`, disbursement.ReceiptSent, sqldb.Micros(s.now()))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			cb := providerhttp.Callback{Status: disbursement.ReceiptSettled}
			if err := rows.Scan(&cb.Key, &cb.Ref); err != nil {
				return err
			}
			out = append(out, cb)
		}
		return rows.Err()
	})
	return out, err
}
