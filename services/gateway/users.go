package gateway

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

// User is a local account to seed. Password is plain text: only its
// argon2id hash is stored.
type User struct {
	Username string
	Password string
	Roles    []string
	Posts    []string
}

// DemoUsers returns the demo accounts of `eva dev` (API.md), all with
// password: ana (requester, BGD-DHAKA), raj (requester, IND-MUMBAI), olu and
// mei (approvers), fin (finance), aud (auditor), adm (admin).
func DemoUsers(password string) []User {
	u := func(name, role string, posts ...string) User {
		return User{Username: name, Password: password, Roles: []string{role}, Posts: posts}
	}
	return []User{
		u("ana", assist.RoleRequester, "BGD-DHAKA"),
		u("raj", assist.RoleRequester, "IND-MUMBAI"),
		u("olu", assist.RoleApprover),
		u("mei", assist.RoleApprover),
		u("fin", assist.RoleFinance),
		u("aud", assist.RoleAuditor),
		u("adm", assist.RoleAdmin),
	}
}

// SeedUsers creates the accounts, or brings existing ones up to date, on
// db (migrating it first). It is idempotent: an account whose password,
// roles and posts already match is left untouched, and seeding twice
// leaves the same accounts.
//
// Errors: CodeInvalid naming the first bad account; store errors.
func SeedUsers(ctx context.Context, db sqldb.DB, users []User) error {
	return seedUsers(ctx, db, users, DefaultPasswordParams, time.Now)
}

func seedUsers(ctx context.Context, db sqldb.DB, users []User, params PasswordParams, now func() time.Time) error {
	if err := Migrate(ctx, db); err != nil {
		return err
	}
	for _, u := range users {
		if err := checkUser(u); err != nil {
			return err
		}
	}
	store := NewSQLStore(db)
	for _, u := range users {
		old, err := store.Account(ctx, u.Username)
		if err != nil && !assist.IsCode(err, assist.CodeNotFound) {
			return err
		}
		if err == nil && slices.Equal(old.Roles, u.Roles) && slices.Equal(old.Posts, u.Posts) {
			if ok, stale := params.verify(old.PasswordHash, u.Password); ok && !stale {
				continue
			}
		}
		hash := params.hash(u.Password)
		if err := store.PutAccount(ctx, Account{Username: u.Username, PasswordHash: hash, Roles: u.Roles,
			Posts: u.Posts, CreatedAt: now().UTC()}); err != nil {
			return err
		}
	}
	return nil
}

// Limits of an account.
const (
	maxUsername = 64
	// maxPassword bounds a password, in bytes; argon2id itself has no
	// limit (bcrypt's was 72).
	maxPassword = 1024
)

func checkUser(u User) error {
	var probs assist.Problems
	if u.Username == "" || len(u.Username) > maxUsername || !visibleASCII(u.Username) || strings.ContainsAny(u.Username, ",") {
		probs.Add("username", "%q must be 1 to %d visible ASCII characters, no comma", u.Username, maxUsername)
	}
	if u.Password == "" || len(u.Password) > maxPassword {
		probs.Add("password", "of %s must be 1 to %d bytes", u.Username, maxPassword)
	}
	if len(u.Roles) == 0 {
		probs.Add("roles", "of %s: at least one is required", u.Username)
	}
	for _, r := range u.Roles {
		if !slices.Contains(assist.Roles, r) {
			probs.Add("roles", "of %s: %q is not a role", u.Username, r)
		}
	}
	if slices.Contains(u.Roles, assist.RoleRequester) && len(u.Posts) == 0 {
		probs.Add("posts", "of %s: a requester needs at least one post", u.Username)
	}
	for _, p := range u.Posts {
		if p == "" || strings.ContainsAny(p, ",") || !visibleASCII(p) {
			probs.Add("posts", "of %s: %q is not a post", u.Username, p)
		}
	}
	return probs.Err()
}

// visibleASCII reports whether s is made of printable ASCII other than
// space (0x21-0x7E).
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
