package auditapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TreeHead is a tree head of the audit log, as a signed checkpoint holds
// it: the C2SP tlog-checkpoint format (https://c2sp.org/tlog-checkpoint)
// signed as a note (golang.org/x/mod/sumdb/note, Ed25519). Its text is
//
//	<origin>
//	<tree size in decimal>
//	<root hash in standard base64>
//
// followed by a blank line and the signature lines. The origin is the
// signing key's name. The tree is the RFC 6962 Merkle tree whose leaf i is
// the event of sequence i+1 (audit.LeafBytes).
type TreeHead struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// FormatCheckpoint is the text of a checkpoint, before it is signed.
func FormatCheckpoint(c TreeHead) string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint reads the text of a checkpoint (without signatures).
// Extension lines after the root are allowed and ignored.
//
// Errors: the text is not a checkpoint.
func ParseCheckpoint(text string) (TreeHead, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 3 || !strings.HasSuffix(text, "\n") {
		return TreeHead{}, errors.New("a checkpoint has at least three lines: origin, size and root hash")
	}
	var c TreeHead
	c.Origin = strings.TrimSuffix(lines[0], "\n")
	if c.Origin == "" {
		return TreeHead{}, errors.New("checkpoint: empty origin")
	}
	size := strings.TrimSuffix(lines[1], "\n")
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != size {
		return TreeHead{}, fmt.Errorf("checkpoint: tree size %q is not a decimal number", size)
	}
	c.Size = n
	root, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(lines[2], "\n"))
	if err != nil || len(root) != tlog.HashSize {
		return TreeHead{}, errors.New("checkpoint: the root hash is not 32 bytes in base64")
	}
	c.Root = tlog.Hash(root)
	return c, nil
}

// OpenCheckpoint checks a signed checkpoint against the verifier key (as
// GET /v1/audit/key prints it) and reads it. The origin must be the key's
// name.
//
// Errors: a malformed key; a note not signed by that key, or altered; a
// text that is not a checkpoint.
func OpenCheckpoint(signed []byte, verifierKey string) (TreeHead, error) {
	return openCheckpoint(signed, verifierKey, func(origin, name string) bool { return origin == name })
}

// OpenCheckpointOfAny is OpenCheckpoint for a checkpoint of the event log
// or of the access log: the origin is the key's name, or it followed by
// "/access".
//
// Errors: those of OpenCheckpoint.
func OpenCheckpointOfAny(signed []byte, verifierKey string) (TreeHead, error) {
	return openCheckpoint(signed, verifierKey, func(origin, name string) bool {
		return origin == name || origin == name+"/"+AccessLog
	})
}

func openCheckpoint(signed []byte, verifierKey string, originOK func(origin, name string) bool) (TreeHead, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return TreeHead{}, fmt.Errorf("verifier key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return TreeHead{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return TreeHead{}, err
	}
	if !originOK(c.Origin, v.Name()) {
		return TreeHead{}, fmt.Errorf("checkpoint of log %q, the key is %q's", c.Origin, v.Name())
	}
	return c, nil
}

// SplitCheckpoints splits a file of signed checkpoints, one after another
// (as `eva audit witness` keeps them), into the notes. Each note ends with
// its signature lines; a note starts after a signature line that is
// followed by a line that is not a signature.
func SplitCheckpoints(data []byte) [][]byte {
	var (
		out   [][]byte
		start int
		inSig bool
	)
	for i := 0; i < len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += i + 1
		}
		line := data[i:end]
		isSig := bytes.HasPrefix(line, []byte("— "))
		if inSig && !isSig && len(bytes.TrimSpace(line)) > 0 {
			out = append(out, data[start:i])
			start = i
		}
		inSig = isSig
		i = end
	}
	if rest := data[start:]; len(bytes.TrimSpace(rest)) > 0 {
		out = append(out, rest)
	}
	return out
}
