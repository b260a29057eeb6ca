package natsx

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// User is one identity on the bus: an NKey and what it may do. A user
// receives replies on its own inbox prefix only (InboxPrefix), so that no
// one reads another's replies.
type User struct {
	Name string
	// PublicKey is the user NKey ("U...").
	PublicKey string
	// Publish and Subscribe are the subjects allowed; empty allows none.
	Publish   []string
	Subscribe []string
	// DenyPublish are exceptions to Publish.
	DenyPublish []string
	// Responds lets the user answer requests it received, for up to
	// ResponseTTL after each.
	Responds bool
}

// ResponseTTL bounds how long a service may take to answer a request
// (the longest rpc timeout, an archive verification, and some).
const ResponseTTL = 15 * time.Minute

// InboxPrefix is the inbox prefix of a user's connection.
func InboxPrefix(name string) string { return "_INBOX_" + name }

// Permissions are u's permissions as the server takes them.
func (u User) Permissions() *server.Permissions {
	p := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: orNone(u.Publish), Deny: u.DenyPublish},
		Subscribe: &server.SubjectPermission{Allow: orNone(append([]string{InboxPrefix(u.Name) + ".>"}, u.Subscribe...))},
	}
	if u.Responds {
		p.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: ResponseTTL}
	}
	return p
}

// orNone allows nothing for an empty list (the server reads an empty
// allow list as "everything").
func orNone(l []string) []string {
	if len(l) == 0 {
		return []string{"_EVA_NOTHING"}
	}
	return l
}

// NewUserKey makes a user NKey: its seed ("SU...") and public key.
func NewUserKey() (seed, public string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", "", err
	}
	s, err := kp.Seed()
	if err != nil {
		return "", "", err
	}
	public, err = kp.PublicKey()
	return string(s), public, err
}

// PublicKeyOf is the public key of a user seed.
//
// Errors: seed is not a user seed.
func PublicKeyOf(seed string) (string, error) {
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(seed)))
	if err != nil {
		return "", err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("not a user seed (SU...)")
	}
	return pub, nil
}

// Credentials are what a connection authenticates with.
type Credentials struct {
	// User names the identity; its connection's inbox prefix is
	// InboxPrefix(User).
	User string
	// Seed is the user's NKey seed ("SU...").
	Seed string
	// CA, when set, is the PEM file of the CA the servers' TLS
	// certificates are checked against (tls://).
	CA string
}

// Options are the connection options for c; none for zero credentials.
//
// Errors: the seed is not a user NKey seed.
func (c Credentials) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if c.CA != "" {
		opts = append(opts, nats.RootCAs(c.CA))
	}
	if c.Seed == "" {
		return opts, nil
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(c.Seed)))
	if err != nil {
		return nil, fmt.Errorf("nats nkey of %s: %w", c.User, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("nats nkey of %s: %w", c.User, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("nats nkey of %s: not a user seed (SU...)", c.User)
	}
	return append(opts, nats.Nkey(pub, kp.Sign), nats.CustomInboxPrefix(InboxPrefix(c.User))), nil
}

// nkeyUsers are users as the server takes them.
func nkeyUsers(users []User) []*server.NkeyUser {
	out := make([]*server.NkeyUser, len(users))
	for i, u := range users {
		out[i] = &server.NkeyUser{Nkey: u.PublicKey, Permissions: u.Permissions()}
	}
	return out
}
