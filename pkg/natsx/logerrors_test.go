package natsx_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/natsx"
)

// A publish the connection's permissions refuse is logged through zap,
// with the connection's name and the refused subject, not printed by
// nats.go on standard error.
func TestLogErrorsLogsARefusedPublish(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: t.TempDir(),
		Users: []natsx.User{{Name: "svc", PublicKey: pub, Publish: []string{"allowed.>"}, Subscribe: []string{"_INBOX_svc.>"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	core, logs := observer.New(zap.WarnLevel)
	nc, err := natsx.ConnectAs("", s, "eva-svc", natsx.Credentials{User: "svc", Seed: string(seed)}, natsx.LogErrors(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("allowed.one", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("forbidden.one", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	evatest.Await(t, 10*time.Second, "the refused publish logged", func() (bool, string) {
		for _, e := range logs.All() {
			f := e.ContextMap()
			if f["connection"] == "eva-svc" && strings.Contains(f["error"].(string), "forbidden.one") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("logged: %v", logs.All())
	})
}
