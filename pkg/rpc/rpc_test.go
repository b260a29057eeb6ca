package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/netfault"
	"github.com/eva-org/eva/pkg/rpc"
)

type echoReq struct {
	Text string `json:"text"`
	Fail string `json:"fail,omitempty"`
}

type echoResp struct {
	Text string `json:"text"`
}

var (
	echo   = rpc.Endpoint[echoReq, echoResp]{Subject: "test.echo"}
	nobody = rpc.Endpoint[echoReq, echoResp]{Subject: "test.nobody"}
)

func TestCallAndErrors(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := rpc.NewServer(ctx, nc, nil, "echo", "test", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	err = rpc.Handle(srv, echo, func(ctx context.Context, r echoReq) (echoResp, error) {
		switch r.Fail {
		case "conflict":
			// Wrapped: the edge still finds the *assist.Error.
			return echoResp{}, fmt.Errorf("deciding: %w", &assist.Error{Code: assist.CodeInvalid, Message: "bad",
				Fields: []assist.FieldError{{Field: "text", Message: "is bad"}}})
		case "plain":
			return echoResp{}, errors.New("secret detail")
		case "panic":
			panic("boom")
		}
		return echoResp{Text: r.Text}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Many concurrent calls, mixing answers and errors (run with -race).
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprint(i)
			got, err := echo.Call(ctx, nc, echoReq{Text: text})
			if err != nil || got.Text != text {
				t.Errorf("echo %s: %+v %v", text, got, err)
			}
			_, err = echo.Call(ctx, nc, echoReq{Fail: "conflict"})
			var ae *assist.Error
			if !errors.As(err, &ae) || ae.Code != assist.CodeInvalid || len(ae.Fields) != 1 || ae.Fields[0].Field != "text" {
				t.Errorf("field error: %v", err)
			}
		}()
	}
	wg.Wait()
	for _, fail := range []string{"plain", "panic"} {
		_, err := echo.Call(ctx, nc, echoReq{Fail: fail})
		if !assist.IsCode(err, assist.CodeInternal) || err.Error() != "internal: internal error" {
			t.Errorf("%s: %v, want a hidden internal error", fail, err)
		}
	}
	if _, err := nobody.Call(ctx, nc, echoReq{}); !assist.IsCode(err, assist.CodeUnavailable) {
		t.Errorf("no responder: %v", err)
	}
	// A handler out of its time with ctx's bare error answers
	// unavailable, not internal: asked with more time than the endpoint
	// gives its handler, so that the answer is the server's.
	slow := rpc.Endpoint[echoReq, echoResp]{Subject: "test.slow", Timeout: 50 * time.Millisecond}
	if err := rpc.Handle(srv, slow, func(ctx context.Context, r echoReq) (echoResp, error) {
		<-ctx.Done()
		return echoResp{}, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	if msg, err := nc.Request("test.slow", []byte(`{}`), rpc.DefaultTimeout); err != nil ||
		msg.Header.Get("Nats-Service-Error-Code") != string(assist.CodeUnavailable) {
		t.Errorf("handler out of time: %v %v, want unavailable", msg, err)
	}
	// A malformed body is the caller's fault.
	msg, err := nc.Request("test.echo", []byte("{not json"), rpc.DefaultTimeout)
	if err != nil || msg.Header.Get("Nats-Service-Error-Code") != string(assist.CodeInvalid) {
		t.Errorf("malformed request: %v %v", msg, err)
	}
}

type commandReq struct {
	CommandID string `json:"command_id"`
}

// A request no service received is sent again, the same request, until a
// service answers within the retry budget: a service restarting is not an
// error to the caller.
func TestCallWaitsForAServiceThatIsStarting(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	starting := rpc.Endpoint[commandReq, commandReq]{Subject: "test.starting"}
	go func() {
		time.Sleep(500 * time.Millisecond)
		srv, err := rpc.Serve(ctx, nc, nil, "starting", "test", zaptest.NewLogger(t), rpc.On(starting,
			func(_ context.Context, r commandReq) (commandReq, error) { return r, nil }))
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { _ = srv.Stop() })
	}()
	began := time.Now()
	got, err := starting.Call(ctx, nc, commandReq{CommandID: "c-1"})
	if err != nil || got.CommandID != "c-1" {
		t.Fatalf("call while the service starts: %+v %v", got, err)
	}
	if took := time.Since(began); took < 500*time.Millisecond || took > rpc.RetryBudget {
		t.Errorf("answered after %s; the service started after 500ms and the budget is %s", took, rpc.RetryBudget)
	}
}

// No service within the budget: unavailable, once the budget is spent.
func TestCallGivesUpAfterTheBudget(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	began := time.Now()
	_, err := nobody.Call(context.Background(), nc, echoReq{})
	took := time.Since(began)
	if !assist.IsCode(err, assist.CodeUnavailable) || !strings.Contains(err.Error(), "no service is answering") {
		t.Errorf("no responder: %v", err)
	}
	if took < rpc.RetryBudget-100*time.Millisecond || took > rpc.RetryBudget+time.Second {
		t.Errorf("gave up after %s; the budget is %s", took, rpc.RetryBudget)
	}
}

// A service that answers unavailable (its database restarting) is asked
// again with the same command id when the endpoint is idempotent, and
// only then.
func TestCallRetriesUnavailableOnlyWhenIdempotent(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idem := rpc.Endpoint[commandReq, commandReq]{Subject: "test.idem", Idempotent: true}
	once := rpc.Endpoint[commandReq, commandReq]{Subject: "test.once"}
	var mu sync.Mutex
	seen := map[string][]string{}
	flaky := func(name string) func(context.Context, commandReq) (commandReq, error) {
		return func(_ context.Context, r commandReq) (commandReq, error) {
			mu.Lock()
			defer mu.Unlock()
			seen[name] = append(seen[name], r.CommandID)
			if len(seen[name]) < 3 {
				return commandReq{}, assist.Errorf(assist.CodeUnavailable, "database restarting")
			}
			return r, nil
		}
	}
	srv, err := rpc.Serve(ctx, nc, nil, "flaky", "test", zaptest.NewLogger(t), rpc.On(idem, flaky("idem")), rpc.On(once, flaky("once")))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	if got, err := idem.Call(ctx, nc, commandReq{CommandID: "c-7"}); err != nil || got.CommandID != "c-7" {
		t.Errorf("idempotent call: %+v %v", got, err)
	}
	if _, err := once.Call(ctx, nc, commandReq{CommandID: "c-8"}); !assist.IsCode(err, assist.CodeUnavailable) {
		t.Errorf("call not idempotent: %v, want the service's unavailable", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"c-7", "c-7", "c-7"}; !slices.Equal(seen["idem"], want) {
		t.Errorf("idempotent endpoint handled %v, want %v", seen["idem"], want)
	}
	if want := []string{"c-8"}; !slices.Equal(seen["once"], want) {
		t.Errorf("endpoint not idempotent handled %v, want %v", seen["once"], want)
	}
}

// A reply lost with the caller's connection is not waited for until the
// deadline: the call of an idempotent endpoint sends the request again
// once reconnected.
func TestCallSendsAgainWhenTheConnectionIsLost(t *testing.T) {
	s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	proxy, err := netfault.Start(strings.TrimPrefix(s.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	caller, err := natsx.Connect("nats://"+proxy.Addr(), nil, "caller")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(caller.Close)
	nc, _ := natsxtest.Connect(t, s) // the service's own connection does not go through the proxy

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lossy := rpc.Endpoint[commandReq, commandReq]{Subject: "test.lossy", Idempotent: true}
	var mu sync.Mutex
	var seen []string
	srv, err := rpc.Serve(ctx, nc, nil, "lossy", "test", zaptest.NewLogger(t), rpc.On(lossy,
		func(ctx context.Context, r commandReq) (commandReq, error) {
			mu.Lock()
			seen = append(seen, r.CommandID)
			first := len(seen) == 1
			mu.Unlock()
			if first {
				// The caller's connection is cut while it waits; this
				// reply never reaches it.
				proxy.CutAll()
				<-ctx.Done()
			}
			return r, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = srv.Stop() }() // the blocked handler returns, and Stop waits for it

	callCtx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	began := time.Now()
	got, err := lossy.Call(callCtx, caller, commandReq{CommandID: "c-9"})
	if err != nil || got.CommandID != "c-9" {
		t.Fatalf("call across a lost connection: %+v %v", got, err)
	}
	if took := time.Since(began); took > rpc.RetryBudget {
		t.Errorf("answered after %s, longer than the retry budget", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"c-9", "c-9"}; !slices.Equal(seen, want) {
		t.Errorf("handled %v, want %v", seen, want)
	}
}

// A request taken by a service that died with it gets no reply: the call
// of an idempotent endpoint asks again after a third of its time, rather
// than waiting out its deadline.
func TestCallAsksAgainWhenNoReplyComes(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dying := rpc.Endpoint[commandReq, commandReq]{Subject: "test.dying", Timeout: 3 * time.Second, Idempotent: true}
	var mu sync.Mutex
	var seen []string
	srv, err := rpc.Serve(ctx, nc, nil, "dying", "test", zaptest.NewLogger(t), rpc.On(dying,
		func(ctx context.Context, r commandReq) (commandReq, error) {
			mu.Lock()
			seen = append(seen, r.CommandID)
			first := len(seen) == 1
			mu.Unlock()
			if first {
				<-ctx.Done() // the replica that took it "died": no reply in time
				return commandReq{}, ctx.Err()
			}
			return r, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = srv.Stop() }() // the blocked handler returns, and Stop waits for it
	began := time.Now()
	got, err := dying.Call(ctx, nc, commandReq{CommandID: "c-11"})
	if err != nil || got.CommandID != "c-11" {
		t.Fatalf("call after a lost reply: %+v %v", got, err)
	}
	if took := time.Since(began); took < time.Second || took > 2*time.Second {
		t.Errorf("answered after %s, want about a third of the call's 3 s", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"c-11", "c-11"}; !slices.Equal(seen, want) {
		t.Errorf("handled %v, want %v", seen, want)
	}
}

// Stop waits for the handlers under way to answer: nothing of the server
// runs after it (a reply after it would go out on a closing connection).
func TestStopWaitsForHandlers(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx := context.Background()
	slow := rpc.Endpoint[echoReq, echoResp]{Subject: "test.slow"}
	var (
		once     sync.Once
		finished atomic.Bool
	)
	started, release := make(chan struct{}), make(chan struct{})
	srv, err := rpc.Serve(ctx, nc, nil, "slow", "test", zaptest.NewLogger(t), rpc.On(slow,
		func(ctx context.Context, r echoReq) (echoResp, error) {
			once.Do(func() { close(started) })
			<-release
			finished.Store(true)
			return echoResp{Text: r.Text}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = slow.Call(ctx, nc, echoReq{Text: "x"}) }()
	<-started
	go func() {
		time.Sleep(50 * time.Millisecond) // Stop is waiting by then, or the check below is only weaker
		close(release)
	}()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("Stop returned while a handler was still running")
	}
}

// A request's handler runs on a goroutine labeled eva-rpc=<subject>, so that
// a CPU profile splits the services' handlers by endpoint.
func TestHandlersAreLabeledWithTheirSubject(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx := context.Background()
	ep := rpc.Endpoint[echoReq, echoResp]{Subject: "test.labeled"}
	started, release := make(chan struct{}), make(chan struct{})
	srv, err := rpc.Serve(ctx, nc, nil, "labeled", "test", zaptest.NewLogger(t), rpc.On(ep,
		func(ctx context.Context, r echoReq) (echoResp, error) {
			close(started)
			<-release
			return echoResp{Text: r.Text}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	answered := make(chan error, 1)
	go func() { _, err := ep.Call(ctx, nc, echoReq{Text: "x"}); answered <- err }()
	<-started
	got := evatest.GoroutineLabels(t, "eva-rpc")
	close(release)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, "test.labeled") {
		t.Fatalf("eva-rpc labels %q while the handler ran, want test.labeled among them", got)
	}
}
