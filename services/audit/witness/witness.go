// Package witness keeps an outside copy of an EVA audit log's checkpoints:
// it fetches the latest signed checkpoint over HTTP, checks its signature
// with the verifier key, checks with a consistency proof that the tree it
// names extends the last one it kept, and keeps it. A log that shrank,
// forked or was rewritten is refused, and the checkpoints kept so far are
// what `eva audit verify --checkpoint` checks the log against.
package witness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/services/audit/auditapi"
)

// Files in the witness's directory.
const (
	// LatestFile holds the last checkpoint kept.
	LatestFile = "latest"
	// CheckpointsFile holds every checkpoint kept, one after another.
	CheckpointsFile = "checkpoints"
)

// Witness watches one log.
type Witness struct {
	// BaseURL is EVA's address, e.g. https://eva.example.org.
	BaseURL string
	// Token is an auditor's bearer token.
	Token string
	// Key is the log's verifier key, obtained out of band.
	Key string
	// Dir keeps the checkpoints.
	Dir string
	// Client is the HTTP client; nil is http.DefaultClient.
	Client *http.Client
}

// Check fetches the latest checkpoint and keeps it when it is consistent
// with the last one kept; it says what it saw.
//
// Errors: the log does not answer; a checkpoint that is not signed by the
// key; a tree smaller than the last kept, or of the same size with another
// root, or a consistency proof that does not check (the log was rolled
// back or rewritten).
func (w *Witness) Check(ctx context.Context) (string, error) {
	signed, err := w.get(ctx, "/v1/audit/checkpoint")
	if err != nil {
		return "", err
	}
	head, err := auditapi.OpenCheckpoint(signed, w.Key)
	if err != nil {
		return "", err
	}
	prevNote, err := os.ReadFile(filepath.Join(w.Dir, LatestFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("first checkpoint kept: %d events", head.Size), w.keep(signed)
	case err != nil:
		return "", err
	}
	prev, err := auditapi.OpenCheckpoint(prevNote, w.Key)
	if err != nil {
		return "", fmt.Errorf("the last checkpoint kept: %w", err)
	}
	switch {
	case head.Size < prev.Size:
		return "", fmt.Errorf("the log shrank: it now has %d events, a checkpoint kept earlier has %d (cut short or rolled back)", head.Size, prev.Size)
	case head.Size == prev.Size && head.Root != prev.Root:
		return "", fmt.Errorf("the log forked: two checkpoints of %d events have different roots", head.Size)
	case head.Size == prev.Size:
		return fmt.Sprintf("unchanged: %d events", head.Size), nil
	}
	if prev.Size > 0 {
		data, err := w.get(ctx, "/v1/audit/proof/consistency?from="+strconv.FormatInt(prev.Size, 10)+"&to="+strconv.FormatInt(head.Size, 10))
		if err != nil {
			return "", err
		}
		var proof struct {
			Hashes []tlog.Hash `json:"hashes"`
		}
		if err := json.Unmarshal(data, &proof); err != nil {
			return "", fmt.Errorf("consistency proof: %w", err)
		}
		if err := tlog.CheckTree(proof.Hashes, head.Size, head.Root, prev.Size, prev.Root); err != nil {
			return "", fmt.Errorf("the log was rewritten: its tree of %d events does not extend the one of %d kept earlier: %w",
				head.Size, prev.Size, err)
		}
	}
	return fmt.Sprintf("consistent: %d → %d events", prev.Size, head.Size), w.keep(signed)
}

// keep appends the checkpoint to the kept ones and makes it the latest.
func (w *Witness) keep(signed []byte) error {
	if err := os.MkdirAll(w.Dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(w.Dir, CheckpointsFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(signed); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	tmp := filepath.Join(w.Dir, LatestFile+".tmp")
	if err := os.WriteFile(tmp, signed, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(w.Dir, LatestFile))
}

func (w *Witness) get(ctx context.Context, path string) ([]byte, error) {
	u, err := url.JoinPath(strings.TrimSuffix(w.BaseURL, "/"), "")
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	hc := w.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}
