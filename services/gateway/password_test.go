package gateway

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

func TestPasswordHash(t *testing.T) {
	p := testPasswordParams
	h1, h2 := p.hash("correct horse"), p.hash("correct horse")
	if !bytes.HasPrefix(h1, []byte("$argon2id$v=19$m=64,t=1,p=1$")) {
		t.Fatalf("hash %s is not a PHC argon2id string with the parameters", h1)
	}
	if bytes.Equal(h1, h2) {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	if ok, stale := p.verify(h1, "correct horse"); !ok || stale {
		t.Fatalf("verify the right password: ok=%v stale=%v", ok, stale)
	}
	for _, wrong := range []string{"", "correct hors", "correct horse ", "Correct horse"} {
		if ok, _ := p.verify(h1, wrong); ok {
			t.Errorf("%q verifies", wrong)
		}
	}
	// A hash made with other parameters verifies and is stale.
	if ok, stale := DefaultPasswordParams.verify(h1, "correct horse"); !ok || !stale {
		t.Fatalf("verify with new parameters: ok=%v stale=%v, want true, true", ok, stale)
	}
	// Default parameters are the documented ones.
	if d := HashPassword("x"); !bytes.HasPrefix(d, []byte("$argon2id$v=19$m=19456,t=2,p=1$")) {
		t.Fatalf("default hash %s", d)
	}
}

func TestPasswordHashOfAnOlderEVA(t *testing.T) {
	old, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if ok, stale := testPasswordParams.verify(old, "pw"); !ok || !stale {
		t.Fatalf("bcrypt hash: ok=%v stale=%v, want true, true", ok, stale)
	}
	if ok, _ := testPasswordParams.verify(old, "pW"); ok {
		t.Fatal("wrong password verifies against bcrypt")
	}
}

func TestPasswordHashUnreadable(t *testing.T) {
	good := string(testPasswordParams.hash("pw"))
	for _, h := range []string{
		"", "pw", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5",
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=64", "m=0", 1),
		strings.Replace(good, "t=1", "t=x", 1),
		good[:strings.LastIndex(good, "$")] + "$!!!",
		good + "$extra",
	} {
		if ok, _ := testPasswordParams.verify([]byte(h), "pw"); ok {
			t.Errorf("%q verifies", h)
		}
	}
}

// An account with a bcrypt hash signs in, and its hash is argon2id after.
func TestLoginUpgradesAnOldHash(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	ctx := context.Background()
	old, err := bcrypt.GenerateFromPassword([]byte("legacy pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.store.PutAccount(ctx, Account{Username: "old", PasswordHash: old, Roles: []string{auditor}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	decodeProblem(t, login(h, "old", "wrong", ""), http.StatusUnauthorized)
	if a, _ := h.store.Account(ctx, "old"); !bytes.Equal(a.PasswordHash, old) {
		t.Fatal("a failed sign-in replaced the hash")
	}
	decodeJSONBody[tokenResponse](t, login(h, "old", "legacy pw", ""), http.StatusOK)
	a, err := h.store.Account(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(a.PasswordHash, []byte("$argon2id$")) {
		t.Fatalf("hash after sign-in: %s, want argon2id", a.PasswordHash)
	}
	decodeJSONBody[tokenResponse](t, login(h, "old", "legacy pw", ""), http.StatusOK)
	decodeProblem(t, login(h, "old", "wrong", ""), http.StatusUnauthorized)
}
