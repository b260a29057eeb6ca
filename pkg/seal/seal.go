// Package seal does the envelope encryption of personal data: every case has
// its own random data key (AES-256-GCM); the data key is stored wrapped by a
// master key, outside the event log, so that destroying it erases the
// person while the history still verifies.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// KeySize is the size of master and data keys.
const KeySize = 32

// Keyring holds the master key.
type Keyring struct {
	master cipher.AEAD
	refKey []byte
}

// NewKeyring uses a 32-byte master key.
func NewKeyring(master []byte) (*Keyring, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", KeySize, len(master))
	}
	aead, err := newAEAD(master)
	if err != nil {
		return nil, err
	}
	refKey, err := hkdf.Key(sha256.New, master, nil, "eva beneficiary reference v1", KeySize)
	if err != nil {
		return nil, err
	}
	return &Keyring{master: aead, refKey: refKey}, nil
}

// NewMasterKey returns a fresh random master key.
func NewMasterKey() []byte {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return k
}

// NewDataKey returns a fresh data key and its wrapped form for storage.
// keyID is bound into the wrapping, so a wrapped key moved to another case
// does not open.
func (k *Keyring) NewDataKey(keyID string) (key, wrapped []byte) {
	key = make([]byte, KeySize)
	_, _ = rand.Read(key)
	return key, seal(k.master, key, []byte("data key "+keyID))
}

// Unwrap opens a stored data key.
func (k *Keyring) Unwrap(keyID string, wrapped []byte) ([]byte, error) {
	key, err := open(k.master, wrapped, []byte("data key "+keyID))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s: %w", keyID, err)
	}
	return key, nil
}

// RefHash is the keyed hash of a beneficiary reference used to find
// possible duplicates without storing the reference in the clear. Case and
// surrounding spaces do not matter.
func (k *Keyring) RefHash(reference string) []byte {
	norm := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return unicode.ToUpper(r)
	}, reference)
	m := hmac.New(sha256.New, k.refKey)
	m.Write([]byte(norm))
	return m.Sum(nil)
}

// Seal encrypts plaintext under a data key; aad binds it to its context
// (the case id). The result carries its own nonce.
func Seal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return seal(aead, plaintext, aad), nil
}

// Open decrypts what Seal produced.
func Open(key, sealed, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return open(aead, sealed, aad)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(aead cipher.AEAD, plaintext, aad []byte) []byte {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, aad)
}

// ErrOpen is returned for anything that does not decrypt.
var ErrOpen = errors.New("sealed data does not open")

func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
