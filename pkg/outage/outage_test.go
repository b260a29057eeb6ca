package outage_test

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/outage"
)

func TestFailedLogsOncePerQuietPeriodAndDependency(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	zl := zap.New(core)
	var l outage.Log
	t0 := time.Unix(1_800_000_000, 0)
	db := &assist.Error{Code: assist.CodeUnavailable, Message: "database unavailable"}
	nats := errors.New("event log: append: nats: timeout")
	for i := range 100 {
		l.Failed(zl, "unavailable", db, t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	l.Failed(zl, "unavailable", nats, t0)
	if n := logs.Len(); n != 2 {
		t.Fatalf("%d lines for 101 failures of two dependencies in one second, want 2", n)
	}
	l.Failed(zl, "unavailable", db, t0.Add(outage.Quiet+time.Second))
	all := logs.All()
	if len(all) != 3 || all[2].ContextMap()["failures"] != int64(100) || all[1].ContextMap()["dependency"] != "event log" {
		t.Fatalf("lines %+v", all)
	}
}
