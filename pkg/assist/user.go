package assist

import "github.com/google/uuid"

// userNamespace is the UUID namespace of UserID.
var userNamespace = uuid.MustParse("0193f1a0-5c1e-7a00-8e5a-000000000000")

// UserID is the id of the account username in the log: its events are on
// eva.user.<UserID>.<Type>. It is a name-based UUID (RFC 9562 version 5)
// of the username, so that any username, whatever its characters, makes a
// subject token and the same account always has the same id.
func UserID(username string) string {
	return uuid.NewSHA1(userNamespace, []byte(username)).String()
}

// UserCreated is a local account an admin created. It never holds the
// password nor its hash.
type UserCreated struct {
	Username     string
	Roles, Posts []string
	// Email is where notify e-mails the account; empty for none.
	Email string
}

// UserChanged is a change an admin made to a local account: its roles,
// posts and disabled flag after the change, and whether its password was
// set (never the password nor its hash).
type UserChanged struct {
	Username        string
	Roles, Posts    []string
	Disabled        bool
	PasswordChanged bool
	// Email is the account's address after the change; empty for none.
	Email string
}

// Type implements Body.
func (UserCreated) Type() string { return "UserCreated" }

// Type implements Body.
func (UserChanged) Type() string { return "UserChanged" }

// Kind says the event is about a user.
func (UserCreated) Kind() Kind { return KindUser }

// Kind says the event is about a user.
func (UserChanged) Kind() Kind { return KindUser }

func (UserCreated) isBody() {}
func (UserChanged) isBody() {}

// UserEventTypes are the event types of kind KindUser.
var UserEventTypes = []string{UserCreated{}.Type(), UserChanged{}.Type()}
