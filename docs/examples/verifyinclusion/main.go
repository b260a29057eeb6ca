// Command verifyinclusion is what an outsider needs to check EVA's audit
// log: with nothing but the verifier key, it checks that a checkpoint is
// signed by it, and that an event (its leaf bytes) is in the tree the
// checkpoint names, with the inclusion proof EVA gave.
//
//	go run ./docs/examples/verifyinclusion KEYFILE CHECKPOINTFILE LEAFFILE PROOFFILE
//
// KEYFILE holds GET /v1/audit/key, CHECKPOINTFILE GET /v1/audit/checkpoint,
// LEAFFILE GET /v1/audit/leaves/{seq} and PROOFFILE
// GET /v1/audit/proof/inclusion?seq={seq}&size={the checkpoint's size}.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: verifyinclusion KEYFILE CHECKPOINTFILE LEAFFILE PROOFFILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4]); err != nil {
		fmt.Fprintln(os.Stderr, "NOT VERIFIED:", err)
		os.Exit(1)
	}
}

func run(keyFile, checkpointFile, leafFile, proofFile string) error {
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(key)))
	if err != nil {
		return fmt.Errorf("verifier key: %w", err)
	}
	signed, err := os.ReadFile(checkpointFile)
	if err != nil {
		return err
	}
	// The checkpoint must carry a valid signature by that key.
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	// C2SP tlog-checkpoint: origin, tree size, root hash (base64).
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 3 || lines[0] != v.Name() {
		return fmt.Errorf("checkpoint is not a checkpoint of log %q", v.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return fmt.Errorf("checkpoint size: %w", err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return fmt.Errorf("checkpoint root hash %q", lines[2])
	}
	leaf, err := os.ReadFile(leafFile)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(proofFile)
	if err != nil {
		return err
	}
	var proof struct {
		Seq    int64       `json:"seq"`
		Size   int64       `json:"size"`
		Hashes []tlog.Hash `json:"hashes"` // base64
	}
	if err := json.Unmarshal(data, &proof); err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	if proof.Size != size {
		return fmt.Errorf("the proof is for a tree of %d leaves, the checkpoint's has %d", proof.Size, size)
	}
	// Leaf seq-1 hashes to SHA-256(0x00 ‖ leaf bytes) (RFC 6962).
	if err := tlog.CheckRecord(proof.Hashes, size, tlog.Hash(root), proof.Seq-1, tlog.RecordHash(leaf)); err != nil {
		return fmt.Errorf("inclusion proof: %w", err)
	}
	fmt.Printf("verified: event %d is in log %s of %d events (root %s)\n", proof.Seq, v.Name(), size, lines[2])
	return nil
}
