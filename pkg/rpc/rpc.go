// Package rpc carries EVA's commands and queries between services over
// NATS request/reply, with the nats.go micro package: JSON bodies, and
// errors as micro errors whose code is an assist.Code and whose data is the
// *assist.Error. Request/reply is at most once: callers retry on timeout,
// and every command carries an id that makes the retry harmless. Call
// itself absorbs a short outage (see Call).
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/outage"
	"github.com/eva-org/eva/pkg/retry"
)

// DefaultTimeout bounds a call that has no earlier deadline.
const DefaultTimeout = 15 * time.Second

// RetryBudget bounds how long Call keeps trying again after a failure
// that an outage explains (see Call), counted from the call's start.
const RetryBudget = 3 * time.Second

// retryPolicy spaces the tries within RetryBudget.
var retryPolicy = retry.Policy{First: 50 * time.Millisecond, Max: 500 * time.Millisecond, Budget: RetryBudget}

// Server is one service's set of endpoints.
type Server struct {
	nc      *nats.Conn
	svc     micro.Service
	ctx     context.Context
	sem     chan struct{}
	zl      *zap.Logger
	outages outage.Log
	trust   *Verifier

	// running counts the handlers under way, for Stop to wait on; once
	// stopped, no handler starts.
	mu      sync.Mutex
	stopped bool
	running sync.WaitGroup
}

// NewServer registers a micro service. Handlers run concurrently, at most
// 512 at once, with contexts derived from ctx. Requests that act for a
// user (Acting) are served only with an actor signed by a key trust holds;
// with a nil trust, none is.
func NewServer(ctx context.Context, nc *nats.Conn, trust *Verifier, name, description string, zl *zap.Logger) (*Server, error) {
	svc, err := micro.AddService(nc, micro.Config{Name: name, Version: "1.0.0", Description: description})
	if err != nil {
		return nil, fmt.Errorf("register service %s: %w", name, err)
	}
	return &Server{nc: nc, svc: svc, ctx: ctx, sem: make(chan struct{}, 512), zl: zl, trust: trust}, nil
}

// Route is an endpoint with its handler, for Serve (see On).
type Route func(*Server) error

// On routes an endpoint to its handler.
func On[Req, Resp any](e Endpoint[Req, Resp], h func(ctx context.Context, req Req) (Resp, error)) Route {
	return func(s *Server) error { return Handle(s, e, h) }
}

// Serve registers a micro service with its routes. Stop it when done.
//
// Errors: the service or one of its endpoints could not be registered.
func Serve(ctx context.Context, nc *nats.Conn, trust *Verifier, name, description string, zl *zap.Logger, routes ...Route) (*Server, error) {
	srv, err := NewServer(ctx, nc, trust, name, description, zl)
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(routes))
	for i, r := range routes {
		errs[i] = r(srv)
	}
	if err := errors.Join(errs...); err != nil {
		_ = srv.Stop()
		return nil, fmt.Errorf("register service %s: %w", name, err)
	}
	return srv, nil
}

// Stop unsubscribes every endpoint and waits for the handlers under way
// to answer (each within its endpoint's timeout, sooner once the
// server's context is done): nothing of the server runs after it.
func (s *Server) Stop() error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	err := s.svc.Stop()
	s.running.Wait()
	return err
}

// start counts a handler in, unless the server stopped.
func (s *Server) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.running.Add(1)
	return true
}

// Endpoint declares one operation of a service: its subject, and — by its
// type parameters — what it takes and what it answers. A service's contract
// package declares its endpoints once; the handler (Handle) and the client
// (Call) are both typed by the same declaration, so they cannot disagree
// on types.
type Endpoint[Req, Resp any] struct {
	Subject string
	// Timeout bounds a call and its handler; 0 is DefaultTimeout. Long
	// queries (verifying a whole archive) declare a longer one.
	Timeout time.Duration
	// Idempotent declares that a request handled twice does what it does
	// once and answers the same: a query, or a command whose command id
	// the service de-duplicates. Call then also sends the same request
	// again when the service answered unavailable (its own dependency
	// down). A request no service received is sent again in any case.
	Idempotent bool
}

func (e Endpoint[Req, Resp]) timeout() time.Duration {
	if e.Timeout > 0 {
		return e.Timeout
	}
	return DefaultTimeout
}

// Handle serves the endpoint with h: the request body is decoded into Req,
// and h's result or error is the reply. When Req acts for a user
// (Acting), h sees only requests whose actor the gateway signed for this
// very command; the others are refused with CodeForbidden and logged.
//
// Errors: the endpoint could not be registered, or Req carries an
// assist.Actor but is not Acting (its actor would go unchecked).
func Handle[Req, Resp any](s *Server, e Endpoint[Req, Resp], h func(ctx context.Context, req Req) (Resp, error)) error {
	subject := e.Subject
	name := subject[strings.LastIndexByte(subject, '.')+1:]
	_, acts := any(*new(Req)).(Acting)
	if !acts && carriesActor(reflect.TypeFor[Req]()) {
		return fmt.Errorf("endpoint %s: its request carries an actor but does not implement rpc.Acting", subject)
	}
	labels := pprof.Labels("eva-rpc", subject) // the handlers', in profiles
	return s.svc.AddEndpoint(name, micro.HandlerFunc(func(r micro.Request) {
		// The handler answers from its own goroutine, after micro's
		// handler returned: it must not touch r's methods that micro
		// also uses, so it publishes the reply itself (see reply).
		reply := r.Reply()
		if !s.start() {
			s.reply(reply, nil, assist.Errorf(assist.CodeUnavailable, "shutting down"))
			return
		}
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			s.running.Done()
			s.reply(reply, nil, assist.Errorf(assist.CodeUnavailable, "shutting down"))
			return
		}
		data, header := r.Data(), nats.Header(r.Headers())
		go pprof.Do(s.ctx, labels, func(context.Context) {
			defer s.running.Done()
			defer func() { <-s.sem }()
			s.serve(reply, data, subject, e.timeout(), func(ctx context.Context, data []byte) (any, error) {
				var req Req
				if err := json.Unmarshal(data, &req); err != nil {
					return nil, assist.Errorf(assist.CodeInvalid, "malformed request to %s: %v", subject, err)
				}
				if a, ok := any(req).(Acting); ok {
					if _, err := s.trust.verify(subject, header, data, a); err != nil {
						_, actor := a.Acting()
						s.zl.Warn("command refused: its actor is not vouched for", zap.String("subject", subject),
							zap.String("claimed_user", actor.Username), zap.String("claimed_role", actor.Role),
							zap.String("key", header.Get(KeyHeader)), zap.Error(err))
						return nil, err
					}
				}
				return h(ctx, req)
			})
		})
	}), micro.WithEndpointSubject(subject))
}

func (s *Server) serve(reply string, data []byte, subject string, timeout time.Duration, h func(context.Context, []byte) (any, error)) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	resp, err := safely(ctx, data, h)
	if err != nil {
		var ae *assist.Error
		if !errors.As(err, &ae) && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The handler ran out of its time without saying on what
			// (a retry whose ctx ended before its first attempt answers
			// ctx's bare error): what it waited for is too slow to
			// serve, as a caller would find it.
			err = assist.Errorf(assist.CodeUnavailable, "%s: no answer within %s: %v", subject, timeout, err)
		}
		if !errors.As(err, &ae) {
			// Unknown errors are internal: log once here, hide the detail.
			s.zl.Error("request failed", zap.String("subject", subject), zap.Error(err))
			err = assist.Errorf(assist.CodeInternal, "internal error")
		} else {
			switch ae.Code {
			case assist.CodeInternal:
				s.zl.Warn("request failed", zap.String("subject", subject), zap.Error(err))
			case assist.CodeUnavailable:
				s.outages.Failed(s.zl, "dependency unavailable: requests answer unavailable", err, time.Now(),
					zap.String("subject", subject))
			}
			err = ae
		}
	}
	s.reply(reply, resp, err)
}

// reply publishes a response or, for an *assist.Error, a micro error reply
// (headers Nats-Service-Error and Nats-Service-Error-Code, the error as
// JSON in the body).
func (s *Server) reply(to string, resp any, err error) {
	if to == "" {
		return
	}
	m := nats.NewMsg(to)
	if err != nil {
		ae := err.(*assist.Error)
		m.Data, _ = json.Marshal(ae)
		m.Header.Set(micro.ErrorCodeHeader, string(ae.Code))
		m.Header.Set(micro.ErrorHeader, orDefault(ae.Message, string(ae.Code)))
	} else if m.Data, err = json.Marshal(resp); err != nil {
		s.zl.Error("encode reply", zap.Error(err))
		m.Data, _ = json.Marshal(assist.Errorf(assist.CodeInternal, "internal error"))
		m.Header.Set(micro.ErrorCodeHeader, string(assist.CodeInternal))
		m.Header.Set(micro.ErrorHeader, "internal error")
	}
	if err := s.nc.PublishMsg(m); err != nil {
		s.zl.Error("reply", zap.String("to", to), zap.Error(err))
	}
}

func safely(ctx context.Context, data []byte, h func(context.Context, []byte) (any, error)) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return h(ctx, data)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Call sends req to the endpoint and decodes the reply.
//
// A short outage is absorbed: a request that no service received (no
// responders: the service is restarting, or NATS is electing or
// reconnecting and refused it) is sent again, the same request with the
// same command id, for up to RetryBudget from the call's start; so is a
// request to an Idempotent endpoint that the service answered with
// CodeUnavailable, or that was waiting for its reply when the connection
// to NATS was lost (the reply may be lost with it: rather than wait out
// the deadline, the request is sent again once reconnected) or that got
// no reply in a third of the call's time (the service that took it may
// have died); these are asked again for as long as the call may last.
// A request to an endpoint that is not idempotent is sent again only when
// no service received it.
//
// Errors: the *assist.Error the service answered with; CodeUnavailable
// when no service answers in time.
func (e Endpoint[Req, Resp]) Call(ctx context.Context, nc *nats.Conn, req Req) (Resp, error) {
	var zero Resp
	data, err := json.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("call %s: %w", e.Subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.timeout())
		defer cancel()
	}
	// A command that acts for a user carries its signed actor; every try
	// sends the same signature.
	header := nats.Header{}
	if a, ok := any(req).(Acting); ok {
		if as, ok := ctx.Value(actingKey{}).(acting); ok {
			signed := &nats.Msg{Subject: e.Subject, Data: data, Header: header}
			commandID, _ := a.Acting()
			// Valid as long as the call may last.
			as.signer.Sign(signed, as.principalOf(a), commandID, e.timeout())
		}
	}
	var last error
	var resp Resp
	for {
		resp, err = retry.DoValue(ctx, retryPolicy, e.retryable, func(ctx context.Context) (Resp, error) {
			resp, err := e.call(ctx, nc, data, header)
			last = err
			return resp, err
		})
		// A reply presumably lost (see call) is asked for again, with a
		// new budget, for as long as the call may last.
		var lr lostReply
		if !errors.As(last, &lr) || ctx.Err() != nil {
			break
		}
	}
	if err != nil && last != nil {
		// The last answer says why, not the deadline that ended the tries.
		err = last
	}
	var ns notSent
	var lr lostReply
	switch {
	case errors.As(err, &ns):
		err = ns.err
	case errors.As(err, &lr):
		err = lr.err
	}
	return resp, err
}

var (
	errConnectionLost = errors.New("the connection to NATS was lost while waiting for the reply")
	errNoReply        = errors.New("no reply in a third of the call's time")
)

// lostReply marks a request to an idempotent endpoint whose reply is
// presumably lost: the caller's connection was lost while it waited, or
// no reply came in a third of the call's time (the service that took the
// request died with it).
type lostReply struct{ err error }

func (lr lostReply) Error() string { return lr.err.Error() }

// notSent marks a request that reached no service.
type notSent struct{ err error }

func (ns notSent) Error() string { return ns.err.Error() }

// retryable says whether a failed try may be repeated: a request no
// service received, always; one the service answered unavailable, when
// the endpoint is idempotent. (A request that timed out ended the call's
// context, which ends the tries.)
func (e Endpoint[Req, Resp]) retryable(err error) bool {
	var ns notSent
	var lr lostReply
	return errors.As(err, &ns) || errors.As(err, &lr) || e.Idempotent && assist.IsCode(err, assist.CodeUnavailable)
}

// call sends the request once.
func (e Endpoint[Req, Resp]) call(ctx context.Context, nc *nats.Conn, data []byte, header nats.Header) (Resp, error) {
	subject := e.Subject
	var zero Resp
	actx := ctx
	if e.Idempotent {
		// A reply sent while the connection was down is lost: stop
		// waiting for it when the connection is lost, and try again. So
		// is the reply of a service that died with the request: stop
		// waiting after a third of the call's time.
		var cancel context.CancelCauseFunc
		actx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		timer := time.AfterFunc(e.timeout()/3, func() { cancel(errNoReply) })
		defer timer.Stop()
		lost := nc.StatusChanged(nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
		defer nc.RemoveStatusListener(lost)
		go func() {
			select {
			case _, ok := <-lost:
				if ok {
					cancel(errConnectionLost)
				}
			case <-actx.Done():
			}
		}()
	}
	msg, err := nc.RequestMsgWithContext(actx, &nats.Msg{Subject: subject, Data: data, Header: header})
	if cause := context.Cause(actx); err != nil && ctx.Err() == nil && (cause == errConnectionLost || cause == errNoReply) {
		return zero, lostReply{assist.Errorf(assist.CodeUnavailable, "%s: %v", subject, cause)}
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return zero, notSent{assist.Errorf(assist.CodeUnavailable, "%s: no service is answering", subject)}
	case errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionReconnecting):
		return zero, notSent{assist.Errorf(assist.CodeUnavailable, "%s: NATS is out of reach: %v", subject, err)}
	case err != nil:
		return zero, assist.Errorf(assist.CodeUnavailable, "%s: %v", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var ae assist.Error
		if err := json.Unmarshal(msg.Data, &ae); err != nil || ae.Code == "" {
			ae = assist.Error{Code: assist.Code(code), Message: msg.Header.Get(micro.ErrorHeader)}
		}
		return zero, &ae
	}
	var resp Resp
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return zero, fmt.Errorf("call %s: decode reply: %w", subject, err)
	}
	return resp, nil
}
