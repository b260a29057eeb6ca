package seal_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/eva-org/eva/pkg/seal"
)

func TestEnvelope(t *testing.T) {
	k, err := seal.NewKeyring(seal.NewMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	key, wrapped := k.NewDataKey("case-1")
	if bytes.Contains(wrapped, key) {
		t.Fatal("wrapped key contains the key")
	}
	got, err := k.Unwrap("case-1", wrapped)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := k.Unwrap("case-2", wrapped); err == nil {
		t.Fatal("a wrapped key opened for another case")
	}
	other, _ := seal.NewKeyring(seal.NewMasterKey())
	if _, err := other.Unwrap("case-1", wrapped); err == nil {
		t.Fatal("a wrapped key opened under another master key")
	}

	ct, err := seal.Seal(key, []byte("Jane Doe"), []byte("case-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("Jane")) {
		t.Fatal("ciphertext shows the plaintext")
	}
	pt, err := seal.Open(key, ct, []byte("case-1"))
	if err != nil || string(pt) != "Jane Doe" {
		t.Fatalf("open: %q %v", pt, err)
	}
	if _, err := seal.Open(key, ct, []byte("case-2")); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("open with other aad: %v", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := seal.Open(key, ct, []byte("case-1")); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("open tampered: %v", err)
	}
	if _, err := seal.Open(key, []byte("short"), nil); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("open short: %v", err)
	}
}

func TestRefHashNormalisesAndIsKeyed(t *testing.T) {
	k1, _ := seal.NewKeyring(seal.NewMasterKey())
	k2, _ := seal.NewKeyring(seal.NewMasterKey())
	if !bytes.Equal(k1.RefHash("ab 12"), k1.RefHash(" AB12 ")) {
		t.Error("case and spaces changed the hash")
	}
	if bytes.Equal(k1.RefHash("ab12"), k1.RefHash("ab13")) {
		t.Error("different references hash alike")
	}
	if bytes.Equal(k1.RefHash("ab12"), k2.RefHash("ab12")) {
		t.Error("the hash does not depend on the key")
	}
	if _, err := seal.NewKeyring([]byte("short")); err == nil {
		t.Error("short master key accepted")
	}
}
