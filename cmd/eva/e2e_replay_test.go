package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// The auditor's and operator's tools on the real binary, on a stopped
// eva dev's data directory: replay rebuilds every read model and prints a
// case's timeline; export writes the log with its proofs, check-export
// passes it with nothing but the verifier key, and fails it, naming the
// event, once one byte of an event's line is changed.
func TestE2EAuditReplayAndExport(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	eva, c := startDev(t, "eva dev", dataDir)
	payee := c.payee()
	var first caseJSON
	for i, ref := range []string{"REF-REPLAY-1", "REF-REPLAY-2", "REF-REPLAY-3"} {
		cs := post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, ref, 10_000), http.StatusCreated, nil)
		if i == 0 {
			first = cs
		}
	}
	v := c.waitVerified(30 * time.Second)
	evatest.Await(t, 5*time.Second, "a checkpoint of the whole log", func() (bool, string) {
		size, note := c.checkpoint()
		return size == v.Events, note
	})
	key := c.do(req{user: "aud", method: http.MethodGet, path: "/v1/audit/key"})
	if key.Status != http.StatusOK {
		t.Fatalf("GET /v1/audit/key: %s", key)
	}
	vkey := strings.TrimSpace(string(key.Body))
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}
	run := func(args ...string) (int, string) {
		t.Helper()
		p := startProc(t, "eva audit "+args[0], childEnv(), append([]string{"audit"}, args...)...)
		return p.wait(60 * time.Second), p.out.String()
	}

	if code, out := run("replay", "--data", dataDir); code != 0 || !strings.Contains(out, "intake: rebuilt ") ||
		!strings.Contains(out, "approval: rebuilt ") || !strings.Contains(out, "replay intake, approval: ") {
		t.Fatalf("eva audit replay: exit %d\n%s", code, out)
	} else {
		t.Logf("replay: %s", out)
	}
	if code, out := run("replay", "--data", dataDir, "--service", "approval"); code != 0 || strings.Contains(out, "intake: rebuilt") {
		t.Fatalf("eva audit replay --service approval: exit %d\n%s", code, out)
	}
	if code, out := run("replay", "--data", dataDir, "--service", "nope"); code == 0 || !strings.Contains(out, `--service "nope"`) {
		t.Fatalf("eva audit replay --service nope: exit %d, want a failure naming the flag\n%s", code, out)
	}
	if code, out := run("replay", "--data", dataDir, "--case", first.ID); code != 0 || !strings.Contains(out, "RequestSubmitted") ||
		!strings.Contains(out, "ana (requester)") {
		t.Fatalf("eva audit replay --case: exit %d\n%s", code, out)
	} else {
		t.Logf("timeline:\n%s", out)
	}
	// Replay left the read models as they were: dev answers as before.
	eva, c = startDev(t, "eva dev after replay", dataDir)
	if got := get[caseJSON](c, "ana", "/v1/requests/"+first.ID, http.StatusOK); got.Status != first.Status || got.ID != first.ID {
		t.Fatalf("after replay GET the request = %+v, want %+v", got, first)
	}
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}

	export := filepath.Join(t.TempDir(), "eva.export")
	if code, out := run("export", "--data", dataDir, "--out", export); code != 0 || !strings.Contains(out, "exported ") {
		t.Fatalf("eva audit export: exit %d\n%s", code, out)
	}
	if code, out := run("check-export", "--in", export, "--key", vkey); code != 0 || !strings.Contains(out, `"ok": true`) {
		t.Fatalf("eva audit check-export: exit %d\n%s", code, out)
	}
	data, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("\n2 ")) + 10 // inside event 2's leaf
	data[at] ^= 0x20
	if err := os.WriteFile(export, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := run("check-export", "--in", export, "--key", vkey); code == 0 || !strings.Contains(out, "event 2: ") {
		t.Fatalf("eva audit check-export on an export with a byte of event 2 changed: exit %d, want a failure naming it\n%s", code, out)
	} else {
		t.Logf("flipped: %s", lastLine(out))
	}
}
