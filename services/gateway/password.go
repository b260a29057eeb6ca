package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// PasswordParams are the argon2id parameters (RFC 9106) new password
// hashes are made with. A stored hash carries its own parameters, so
// changing them never invalidates a password: a hash made with others is
// replaced at the account's next successful sign-in (ADR 0014).
type PasswordParams struct {
	// Memory in KiB.
	Memory uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the degree of parallelism.
	Threads uint8
}

// DefaultPasswordParams are OWASP's first recommended argon2id setting
// (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 thread (96 ms and
// 19 MiB per hash measured on the shared two-core machine at load 30), so
// that a burst of sign-ins neither exhausts a gateway's memory nor its CPU.
var DefaultPasswordParams = PasswordParams{Memory: 19 * 1024, Time: 2, Threads: 1}

// Sizes of a hash's salt and key, in bytes.
const (
	saltLen = 16
	keyLen  = 32
)

func (p PasswordParams) orDefault() PasswordParams {
	if p.Memory == 0 || p.Time == 0 || p.Threads == 0 {
		return DefaultPasswordParams
	}
	return p
}

// HashPassword hashes password with argon2id and DefaultPasswordParams,
// in the PHC string format: $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>.
func HashPassword(password string) []byte { return DefaultPasswordParams.hash(password) }

func (p PasswordParams) hash(password string) []byte {
	p = p.orDefault()
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Appendf(nil, "$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// verify reports whether password matches hash, an argon2id hash or a
// bcrypt hash of an older EVA. stale reports a match whose hash should be
// made again with p: bcrypt, or argon2id with other parameters. A hash
// that cannot be read matches nothing.
func (p PasswordParams) verify(hash []byte, password string) (ok, stale bool) {
	p = p.orDefault()
	if bytes.HasPrefix(hash, []byte("$2")) {
		return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, true
	}
	hp, salt, key, err := parseArgon2id(string(hash))
	if err != nil {
		return false, false
	}
	got := argon2.IDKey([]byte(password), salt, hp.Time, hp.Memory, hp.Threads, uint32(len(key)))
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return false, false
	}
	return true, hp != p || len(key) != keyLen
}

var errBadHash = errors.New("not an argon2id hash")

// parseArgon2id reads a PHC argon2id string.
func parseArgon2id(s string) (p PasswordParams, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, nil, nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		p.Memory == 0 || p.Time == 0 || p.Threads == 0 {
		return p, nil, nil, errBadHash
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}
