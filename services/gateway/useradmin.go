package gateway

import (
	"context"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
)

// User administration (ADR 0026). Accounts live in the gateway's store;
// each change an admin makes is an event of kind user
// (eva.user.<assist.UserID>.<Type>), written in the same transaction as
// the account into the user outbox, then appended to the event log by
// relayUsers.

// minPassword is the fewest characters of a password an admin sets.
const minPassword = 10

// userJSON is an account as admins see it: never its password hash.
type userJSON struct {
	Username  string    `json:"username"`
	Roles     []string  `json:"roles" jsonschema_description:"requester, approver, finance, auditor, admin"`
	Posts     []string  `json:"posts" jsonschema_description:"post codes, such as BGD-DHAKA"`
	Disabled  bool      `json:"disabled" jsonschema_description:"a disabled account neither signs in nor uses its tokens"`
	Email     string    `json:"email" jsonschema_description:"where EVA e-mails the account's notifications; empty for none"`
	CreatedAt timestamp `json:"created_at"`
}

func (u userJSON) location() string { return "/v1/admin/users/" + url.PathEscape(u.Username) }

func toUserJSON(a Account) userJSON {
	return userJSON{Username: a.Username, Roles: nonNil(a.Roles), Posts: nonNil(a.Posts), Disabled: a.Disabled,
		Email: a.Email, CreatedAt: formatTime(a.CreatedAt)}
}

// newUserBody is POST /v1/admin/users's body.
type newUserBody struct {
	Username string   `json:"username" jsonschema_description:"1 to 64 visible ASCII characters, no comma"`
	Password string   `json:"password" jsonschema_description:"at least 10 characters, not the username; stored only as its argon2id hash"`
	Roles    []string `json:"roles" jsonschema_description:"at least one of requester, approver, finance, auditor, admin"`
	Posts    []string `json:"posts" jsonschema_description:"post codes (A-Z, 0-9, '-', '_'); a requester needs at least one"`
	Email    string   `json:"email,omitempty" jsonschema_description:"optional: an e-mail address (local@domain, no display name) for notifications"`
}

// userPatchBody is PATCH /v1/admin/users/{username}'s body: what is
// sent changes, what is left out stays.
type userPatchBody struct {
	Roles    *[]string `json:"roles,omitempty" jsonschema_description:"the account's roles, all of them"`
	Posts    *[]string `json:"posts,omitempty" jsonschema_description:"the account's posts, all of them"`
	Disabled *bool     `json:"disabled,omitempty" jsonschema_description:"true ends every session of the account at once"`
	Password *string   `json:"password,omitempty" jsonschema_description:"a new password (the event says only that it changed)"`
	Email    *string   `json:"email,omitempty" jsonschema_description:"the account's e-mail address for notifications; \"\" removes it"`
}

// usersQuery is GET /v1/admin/users's query.
type usersQuery struct {
	pageQuery
}

// listUsers is GET /v1/admin/users: accounts by username.
func (s *server) listUsers(r *http.Request, q usersQuery) (page[userJSON], error) {
	after := ""
	if q.Cursor != "" {
		parts, err := listing.Decode(string(q.Cursor), 1)
		if err != nil {
			return page[userJSON]{}, err
		}
		after = parts[0]
	}
	n := int(q.Limit)
	accts, err := s.store.Accounts(r.Context(), after, n+1)
	if err != nil {
		return page[userJSON]{}, err
	}
	var p page[userJSON]
	if len(accts) > n {
		accts = accts[:n]
		p.NextCursor = listing.Encode(accts[n-1].Username)
	}
	p.Items = mapSlice(accts, toUserJSON)
	return p, nil
}

// createUser is POST /v1/admin/users.
func (s *server) createUser(r *http.Request, c command, in newUserBody) (userJSON, error) {
	if err := checkNewUser(in); err != nil {
		return userJSON{}, err
	}
	hash := s.cfg.Password.hash(in.Password)
	a, err := s.editAccount(r.Context(), c, in.Username, func(_ Account, found bool) (Account, assist.Body, error) {
		if found {
			return Account{}, nil, &assist.Error{Code: assist.CodeConflict, Message: "an account " + in.Username + " exists",
				Fields: []assist.FieldError{{Field: "username", Message: "is taken"}}}
		}
		next := Account{PasswordHash: hash, Roles: slices.Clone(in.Roles), Posts: nonNil(slices.Clone(in.Posts)),
			CreatedAt: s.now(), Email: in.Email}
		return next, assist.UserCreated{Username: in.Username, Roles: next.Roles, Posts: next.Posts, Email: next.Email}, nil
	})
	return toUserJSON(a), err
}

// changeUser is PATCH /v1/admin/users/{username}.
func (s *server) changeUser(r *http.Request, c command, in userPatchBody) (userJSON, error) {
	username := usernameParam(r)
	if err := checkUserPatch(username, in); err != nil {
		return userJSON{}, err
	}
	var hash []byte
	if in.Password != nil {
		hash = s.cfg.Password.hash(*in.Password)
	}
	a, err := s.editAccount(r.Context(), c, username, func(old Account, found bool) (Account, assist.Body, error) {
		if !found {
			return Account{}, nil, assist.Errorf(assist.CodeNotFound, "no account %q", username)
		}
		next := old
		if in.Roles != nil {
			next.Roles = slices.Clone(*in.Roles)
		}
		if in.Posts != nil {
			next.Posts = nonNil(slices.Clone(*in.Posts))
		}
		if in.Disabled != nil {
			next.Disabled = *in.Disabled
		}
		if hash != nil {
			next.PasswordHash = hash
		}
		if in.Email != nil {
			next.Email = *in.Email
		}
		if slices.Contains(next.Roles, assist.RoleRequester) && len(next.Posts) == 0 {
			return Account{}, nil, invalid("posts", "a requester needs at least one post")
		}
		if slices.Equal(next.Roles, old.Roles) && slices.Equal(next.Posts, old.Posts) && next.Disabled == old.Disabled &&
			next.Email == old.Email && hash == nil {
			return old, nil, nil // nothing to record
		}
		return next, assist.UserChanged{Username: username, Roles: next.Roles, Posts: next.Posts,
			Disabled: next.Disabled, PasswordChanged: hash != nil, Email: next.Email}, nil
	})
	return toUserJSON(a), err
}

// usernameParam is the {username} of the path.
func usernameParam(r *http.Request) string {
	raw := chi.URLParam(r, "username")
	if u, err := url.PathUnescape(raw); err == nil {
		return u
	}
	return raw
}

// editAccount stores an admin's change to username with its event (a nil
// body: nothing changed, nothing recorded), refreshes this replica's
// revocations, and appends the event to the log.
func (s *server) editAccount(ctx context.Context, c command, username string,
	decide func(old Account, found bool) (Account, assist.Body, error)) (Account, error) {
	a, err := s.store.EditAccount(ctx, username, c.ID, func(old Account, found bool) (Account, assist.Event, error) {
		next, body, err := decide(old, found)
		if err != nil || body == nil {
			return next, assist.Event{}, err
		}
		return next, assist.Event{ID: c.ID, CaseID: assist.UserID(username), At: s.now(),
			Actor: assist.Actor{Username: c.User.Username, Role: admin}, CommandID: c.ID, Body: body}, nil
	})
	if err != nil {
		return Account{}, err
	}
	if err := s.refreshRevocations(ctx); err != nil {
		// The poll (RevocationPoll) reads them again.
		s.log.Warn("refresh token revocations", zap.Error(err))
	}
	s.relayUsers(context.WithoutCancel(ctx))
	return a, nil
}

// checkNewUser checks POST /v1/admin/users's body.
//
// Errors: CodeInvalid naming each bad field.
func checkNewUser(in newUserBody) error {
	var probs assist.Problems
	checkUsername(&probs, in.Username)
	checkPassword(&probs, in.Username, in.Password)
	checkRoles(&probs, in.Roles)
	checkPosts(&probs, in.Posts)
	if in.Email != "" {
		checkEmail(&probs, in.Email)
	}
	if slices.Contains(in.Roles, assist.RoleRequester) && len(in.Posts) == 0 {
		probs.Add("posts", "a requester needs at least one post")
	}
	return probs.Err()
}

// checkUserPatch checks PATCH /v1/admin/users/{username}'s body.
//
// Errors: CodeInvalid naming each bad field, or the body when it changes
// nothing.
func checkUserPatch(username string, in userPatchBody) error {
	var probs assist.Problems
	if in.Roles == nil && in.Posts == nil && in.Disabled == nil && in.Password == nil && in.Email == nil {
		probs.Add("body", "names nothing to change: roles, posts, disabled, password or email")
	}
	if in.Email != nil && *in.Email != "" {
		checkEmail(&probs, *in.Email)
	}
	if in.Roles != nil {
		checkRoles(&probs, *in.Roles)
	}
	if in.Posts != nil {
		checkPosts(&probs, *in.Posts)
	}
	if in.Password != nil {
		checkPassword(&probs, username, *in.Password)
	}
	return probs.Err()
}

func checkUsername(probs *assist.Problems, u string) {
	switch {
	case u == "":
		probs.Add("username", "is required")
	case assist.TextFault(u, false) != "":
		probs.Add("username", "%s", assist.TextFault(u, false))
	case len(u) > maxUsername || !visibleASCII(u) || strings.Contains(u, ","):
		probs.Add("username", "must be 1 to %d visible ASCII characters, no comma", maxUsername)
	}
}

func checkPassword(probs *assist.Problems, username, pw string) {
	switch {
	case pw == "":
		probs.Add("password", "is required")
	case assist.TextFault(pw, false) != "":
		probs.Add("password", "%s", assist.TextFault(pw, false))
	case utf8.RuneCountInString(pw) < minPassword:
		probs.Add("password", "is too weak: at least %d characters", minPassword)
	case len(pw) > maxPassword:
		probs.Add("password", "must be at most %d bytes", maxPassword)
	case strings.EqualFold(pw, username):
		probs.Add("password", "is too weak: it is the username")
	}
}

func checkRoles(probs *assist.Problems, roles []string) {
	if len(roles) == 0 {
		probs.Add("roles", "at least one is required")
	}
	for i, r := range roles {
		switch {
		case !slices.Contains(assist.Roles, r):
			probs.Add("roles", "%q is not a role; roles are %s", safeText(r), strings.Join(assist.Roles, ", "))
		case slices.Index(roles, r) != i:
			probs.Add("roles", "%q is given twice", r)
		}
	}
}

func checkPosts(probs *assist.Problems, posts []string) {
	for i, p := range posts {
		switch {
		case !assist.ValidPost(p):
			probs.Add("posts", "%q is not a post code: up to %d characters A-Z, 0-9, '-' or '_'", safeText(p), assist.MaxPost)
		case slices.Index(posts, p) != i:
			probs.Add("posts", "%q is given twice", p)
		}
	}
}

// maxEmail is the longest e-mail address (RFC 5321's limit on a path).
const maxEmail = 254

// checkEmail checks an account's e-mail address: a bare addr-spec
// (local@domain, no display name, no comments), printable ASCII, whose
// domain has a dot; what goes into a mail header must not be able to
// carry another header.
func checkEmail(probs *assist.Problems, e string) {
	msg := "must be an e-mail address such as name@example.org (no display name)"
	switch {
	case len(e) > maxEmail:
		probs.Add("email", "must be at most %d characters", maxEmail)
	case !visibleASCII(e):
		probs.Add("email", "%s", msg)
	default:
		a, err := mail.ParseAddress(e)
		_, domain, _ := strings.Cut(e, "@")
		if err != nil || a.Name != "" || a.Address != e || strings.Count(e, "@") != 1 || !strings.Contains(domain, ".") ||
			strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.ContainsAny(e, "<>()[],;:\\\"") {
			probs.Add("email", "%s", msg)
		}
	}
}

// safeText is s for a message, or a placeholder when s is not fit to show.
func safeText(s string) string {
	if assist.TextFault(s, false) != "" || len(s) > 64 {
		return "(unprintable)"
	}
	return s
}

// Events is where the gateway appends the events of the accounts it
// keeps (LogEvents).
type Events interface {
	// AppendOnce appends e unless its command's event is already in the
	// history of its user.
	AppendOnce(ctx context.Context, e assist.Event) error
}

// LogEvents appends to l by its one command path (eventlog.ExecuteOn): an
// event whose command id is in its user's history is not appended again,
// so that a relay that crashed after appending, or two replicas relaying
// at once, record each change once.
func LogEvents(l *eventlog.Log) Events { return logEvents{l} }

type logEvents struct{ l *eventlog.Log }

func (le logEvents) AppendOnce(ctx context.Context, e assist.Event) error {
	_, _, err := eventlog.ExecuteOn(ctx, le.l, eventlog.CommandOn[struct{}]{Kind: e.Kind(), ID: e.CaseID, CmdID: e.CommandID,
		Fold:   func([]assist.Recorded) struct{} { return struct{}{} },
		Decide: func(struct{}, uint64) (assist.Event, error) { return e, nil }})
	return err
}

// userRelay appends the user outbox to the log, one relay at a time.
type userRelay struct{ mu sync.Mutex }

// relayUsers appends what waits in the user outbox to the event log, in
// order, each event then leaving the outbox. It stops at the first
// failure (logged): the next call, or the next tick of Run's relay,
// starts again from there. Without Events nothing is appended.
func (s *server) relayUsers(ctx context.Context) {
	if s.events == nil {
		return
	}
	s.relay.mu.Lock()
	defer s.relay.mu.Unlock()
	for {
		evs, err := s.store.UserOutbox(ctx, 100)
		if err != nil {
			s.outages.Failed(s.log, "read the user outbox", err, time.Now())
			return
		}
		for _, e := range evs {
			if err := s.events.AppendOnce(ctx, e); err != nil {
				s.outages.Failed(s.log, "append a user event", err, time.Now())
				return
			}
			if err := s.store.DeleteUserOutbox(ctx, e.ID); err != nil {
				s.outages.Failed(s.log, "delete from the user outbox", err, time.Now())
				return
			}
		}
		if len(evs) < 100 {
			return
		}
	}
}

// watchUserOutbox relays the user outbox every interval until ctx ends:
// the events of changes whose relay failed, or whose gateway stopped
// between the change and its relay.
func (s *server) watchUserOutbox(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.relayUsers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
