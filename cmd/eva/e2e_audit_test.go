package main

import (
	"database/sql"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// The finding, on the real binary: a log cut short after a
// checkpoint was saved (the data directory rolled back to a copy made
// before its last events: the stream, the archive rows, the tree and the
// kept checkpoints all go back together) verifies against its own
// records, but not against the saved checkpoint; nor does a log rolled
// back and then grown again with other events.
func TestE2EAuditCheckpointCatchesTruncationAndRewrite(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	eva, c := startDev(t, "eva dev", dataDir)
	payee := c.payee()
	post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, "REF-AUDIT-1", 10_000), http.StatusCreated, nil)
	c.waitVerified(30 * time.Second)
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}
	older := filepath.Join(t.TempDir(), "older")
	copyDir(t, dataDir, older)

	// Two more requests; then the checkpoint covering them is saved, with
	// the verifier key, as an outsider would save them.
	eva, c = startDev(t, "eva dev again", dataDir)
	witnessDir := filepath.Join(t.TempDir(), "witness")
	vkey := strings.TrimSpace(string(c.do(req{user: "aud", method: http.MethodGet, path: "/v1/audit/key"}).Body))
	witness := func(c *client) (int, string) {
		t.Helper()
		tok, err := c.token("aud")
		if err != nil {
			t.Fatal(err)
		}
		p := startProc(t, "eva audit witness", childEnv("EVA_AUDIT_TOKEN="+tok), "audit", "witness",
			"--url", c.base, "--key", vkey, "--dir", witnessDir)
		return p.wait(30 * time.Second), p.out.String()
	}
	if code, out := witness(c); code != 0 || !strings.Contains(out, "first checkpoint kept") {
		t.Fatalf("eva audit witness, first: exit %d\n%s", code, out)
	}
	post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, "REF-AUDIT-2", 10_000), http.StatusCreated, nil)
	post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, "REF-AUDIT-3", 10_000), http.StatusCreated, nil)
	v := c.waitVerified(30 * time.Second)
	var note string
	evatest.Await(t, 5*time.Second, "a checkpoint of the whole log", func() (bool, string) {
		var size uint64
		size, note = c.checkpoint()
		return size == v.Events, note
	})
	key := c.do(req{user: "aud", method: http.MethodGet, path: "/v1/audit/key"})
	if key.Status != http.StatusOK {
		t.Fatalf("GET /v1/audit/key: %s", key)
	}
	outsiderVerifies(t, c, key.Body, []byte(note), v.Events)
	if code, out := witness(c); code != 0 || !strings.Contains(out, "consistent: ") {
		t.Fatalf("eva audit witness after two more requests: exit %d\n%s", code, out)
	} else {
		t.Logf("witness: %s", lastLine(out))
	}
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}
	saved := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(saved, []byte(note), 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(dir string) (int, string) {
		t.Helper()
		p := startProc(t, "eva audit verify", childEnv(), "audit", "verify", "--data", dir,
			"--checkpoint", saved, "--key", strings.TrimSpace(string(key.Body)))
		code := p.wait(60 * time.Second)
		return code, p.out.String()
	}
	if code, out := verify(dataDir); code != 0 || !strings.Contains(out, `"checkpoints": `) {
		t.Fatalf("eva audit verify on the whole log: exit %d\n%s", code, out)
	}

	// Cut short: the older copy, which by itself is a consistent log.
	if code, out := verify(older); code == 0 || !strings.Contains(out, "cut short or rolled back") {
		t.Fatalf("eva audit verify on the log cut short: exit %d, want a failure naming it\n%s", code, out)
	} else {
		t.Logf("cut short: %s", lastLine(out))
	}
	// Rolled back and rewritten: the older copy grows again with other
	// events, past the saved checkpoint's size.
	eva, c = startDev(t, "eva dev on the older copy", older)
	for _, ref := range []string{"REF-FORGED-2", "REF-FORGED-3", "REF-FORGED-4"} {
		post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, ref, 20_000), http.StatusCreated, nil)
	}
	v = c.waitVerified(30 * time.Second)
	evatest.Await(t, 5*time.Second, "a checkpoint of the rewritten log", func() (bool, string) {
		size, note := c.checkpoint()
		return size == v.Events, note
	})
	// The witness, which kept the checkpoint of the log before, refuses it.
	if code, out := witness(c); code == 0 || !strings.Contains(out, "rewritten") {
		t.Fatalf("eva audit witness on the rewritten log: exit %d, want a failure naming it\n%s", code, out)
	} else {
		t.Logf("witness: %s", lastLine(out))
	}
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}
	// The witness's whole file of checkpoints is a --checkpoint too.
	saved = filepath.Join(witnessDir, "checkpoints")
	if code, out := verify(older); code == 0 || !strings.Contains(out, "rewritten") {
		t.Fatalf("eva audit verify on the rewritten log: exit %d, want a failure naming it\n%s", code, out)
	} else {
		t.Logf("rewritten: %s", lastLine(out))
	}
}

// copyDir copies a stopped EVA's data directory, as a backup would.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", from, to, err, out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// outsiderVerifies runs the README's outsider check
// (docs/examples/verifyinclusion) on the first and the last event of a
// checkpoint of size events, with nothing but the verifier key; and a leaf
// with one byte changed fails it.
func outsiderVerifies(t *testing.T, c *client, key, checkpoint []byte, size uint64) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyFile, cpFile := write("key", key), write("checkpoint", checkpoint)
	run := func(seq uint64, leaf []byte) (string, error) {
		proof := c.do(req{user: "aud", method: http.MethodGet,
			path: "/v1/audit/proof/inclusion?seq=" + strconv.FormatUint(seq, 10) + "&size=" + strconv.FormatUint(size, 10)})
		if proof.Status != http.StatusOK {
			t.Fatalf("inclusion proof of %d: %s", seq, proof)
		}
		cmd := exec.Command("go", "run", "../../docs/examples/verifyinclusion", keyFile, cpFile,
			write("leaf", leaf), write("proof", proof.Body))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, seq := range []uint64{1, size} {
		leaf := c.do(req{user: "aud", method: http.MethodGet, path: "/v1/audit/leaves/" + strconv.FormatUint(seq, 10)})
		if leaf.Status != http.StatusOK || !strings.HasPrefix(string(leaf.Body), "eva-audit-leaf/v1\nseq "+strconv.FormatUint(seq, 10)+"\nsubject eva.") {
			t.Fatalf("leaf %d: %s", seq, leaf)
		}
		out, err := run(seq, leaf.Body)
		if err != nil || !strings.Contains(out, "verified: event") {
			t.Fatalf("the outsider's check of event %d: %v\n%s", seq, err, out)
		}
		t.Log(strings.TrimSpace(out))
		leaf.Body[len(leaf.Body)-1] ^= 1
		if out, err := run(seq, leaf.Body); err == nil || !strings.Contains(out, "NOT VERIFIED") {
			t.Fatalf("the outsider's check passed a changed leaf %d:\n%s", seq, out)
		}
	}
}

// Tamper suite, a payee's row: an account edited in SQL (not through the
// log) redirects no payout (ADR 24), and `eva audit verify` names the
// payee whose row differs from the log.
func TestE2EAuditVerifyNamesAnEditedPayeeRow(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	eva, c := startDev(t, "eva dev", dataDir)
	payee := c.payee()
	c.waitVerified(30 * time.Second)
	if code := eva.stop(); code != 0 {
		t.Fatalf("eva dev exited with %d", code)
	}
	verify := func() (int, string) {
		t.Helper()
		p := startProc(t, "eva audit verify", childEnv(), "audit", "verify", "--data", dataDir)
		return p.wait(60 * time.Second), p.out.String()
	}
	if code, out := verify(); code != 0 || !strings.Contains(out, `"payees": {`) {
		t.Fatalf("eva audit verify before the edit: exit %d\n%s", code, out)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "disbursement.db"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE disb_payees SET account = 'XX00 EVIL 0000' WHERE id = ?`, payee.ID)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("edit the payee's row: %v (%d rows)", err, n)
	}
	db.Close()
	code, out := verify()
	if code == 0 || !strings.Contains(out, "payee rows: payee "+payee.ID+": account") {
		t.Fatalf("eva audit verify after the edit: exit %d, want a failure naming payee %s\n%s", code, payee.ID, out)
	}
	if strings.Contains(out, "EVIL") {
		t.Errorf("verify prints the account: %s", out)
	}
	t.Logf("edited payee row: %s", lastLine(out))
}
