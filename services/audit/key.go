package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Key is the audit log's signing key: it signs checkpoints, and its
// verifier key is what outsiders check them with.
type Key struct {
	Signer note.Signer
	// Verifier is the verifier key text, <name>+<hash>+<base64 key>
	// (note.NewVerifier's format), for anyone to hold.
	Verifier string
}

// ParseKey reads a signing key in note's format,
// PRIVATE+KEY+<name>+<hash>+<base64 key> (Ed25519), as GenerateKey writes
// it and EVA_AUDIT_KEY holds it. The name is the log's origin.
//
// Errors: the text is not an Ed25519 note signing key.
func ParseKey(skey string) (Key, error) {
	skey = strings.TrimSpace(skey)
	signer, err := note.NewSigner(skey)
	if err != nil {
		return Key{}, fmt.Errorf("audit signing key: %w", err)
	}
	// NewSigner checked the format: the fifth field (base64, which may
	// hold '+') is the algorithm byte then the 32-byte Ed25519 seed.
	raw, err := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return Key{}, errors.New("audit signing key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return Key{}, fmt.Errorf("audit verifier key: %w", err)
	}
	return Key{Signer: signer, Verifier: vkey}, nil
}

// GenerateKey makes a new signing key for the log named origin (a note
// key name: no spaces, no '+'; e.g. "audit.eva.example.org"), and returns
// it in ParseKey's format with its verifier key.
//
// Errors: an invalid name.
func GenerateKey(origin string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, origin)
}
