package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
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
	// A malformed body is the caller's fault.
	msg, err := nc.Request("test.echo", []byte("{not json"), rpc.DefaultTimeout)
	if err != nil || msg.Header.Get("Nats-Service-Error-Code") != string(assist.CodeInvalid) {
		t.Errorf("malformed request: %v %v", msg, err)
	}
}
