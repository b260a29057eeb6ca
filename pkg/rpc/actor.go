package rpc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/eva-org/eva/pkg/assist"
)

// A command that acts for a user carries a signed actor: the gateway signs
// who the user is (username, roles, posts), which command this is (its id,
// subject and body) and until when, with an Ed25519 key only it holds;
// every service verifies the signature against the public keys it trusts
// before it decides anything. A forged actor, one signed for another
// command, an expired one or none at all is refused with CodeForbidden.

// Headers of a signed command.
const (
	// ActorHeader is the canonical encoding of the Claims, base64url.
	ActorHeader = "Eva-Actor"
	// SignatureHeader is the Ed25519 signature of the encoding, base64url.
	SignatureHeader = "Eva-Actor-Signature"
	// KeyHeader is the public key (an NKey, "A...") that signed.
	KeyHeader = "Eva-Actor-Key"
)

// Acting is a request made for a user: it names the command id (empty for
// a query) and the actor the service will record and decide for. Every
// request type with an assist.Actor implements it; Handle refuses to serve
// one that does not.
type Acting interface {
	Acting() (commandID string, actor assist.Actor)
}

// Principal is an authenticated user as the gateway knows them.
type Principal struct {
	Username string
	Roles    []string
	Posts    []string
}

// Claims are what a signature vouches for.
type Claims struct {
	Principal
	// CommandID is the request's command id; empty for a query.
	CommandID string
	// Subject is the endpoint the request was sent to.
	Subject string
	// BodySHA256 is the hash of the request body.
	BodySHA256 [sha256.Size]byte
	// Expires bounds when a service may act on it (millisecond precision).
	Expires time.Time
}

const claimsMagic = "eva-actor/1\x00"

// maxList bounds the roles and posts a decoder accepts.
const maxList = 256

// encode is the canonical encoding: a magic prefix, then each field in
// order, strings as uvarint length and bytes, lists (sorted) as uvarint
// count and strings, the hash raw, the expiry as big-endian Unix
// milliseconds. Equal claims encode to equal bytes.
func (c Claims) encode() []byte {
	b := []byte(claimsMagic)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	list := func(l []string) {
		l = slices.Sorted(slices.Values(l))
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	str(c.Username)
	list(c.Roles)
	list(c.Posts)
	str(c.CommandID)
	str(c.Subject)
	b = append(b, c.BodySHA256[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(c.Expires.UnixMilli()))
}

var errMalformedClaims = errors.New("malformed actor claims")

// decodeClaims reads an encoding made by encode, strictly: no trailing
// bytes, no unsorted lists.
func decodeClaims(b []byte) (Claims, error) {
	var c Claims
	if !bytes.HasPrefix(b, []byte(claimsMagic)) {
		return c, errMalformedClaims
	}
	b = b[len(claimsMagic):]
	bad := false
	str := func() string {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			bad = true
			return ""
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s
	}
	list := func() []string {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > maxList {
			bad = true
			return nil
		}
		b = b[k:]
		var l []string
		for range n {
			l = append(l, str())
		}
		if !slices.IsSorted(l) {
			bad = true
		}
		return l
	}
	c.Username = str()
	c.Roles = list()
	c.Posts = list()
	c.CommandID = str()
	c.Subject = str()
	if bad || len(b) != sha256.Size+8 {
		return Claims{}, errMalformedClaims
	}
	copy(c.BodySHA256[:], b)
	c.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(b[sha256.Size:])))
	return c, nil
}

// Signer signs the actors of the commands the gateway sends.
type Signer struct {
	// key is the seed's Ed25519 key, derived once: an nkeys.KeyPair
	// derives it again at every signature, half the cost of one.
	key    ed25519.PrivateKey
	public string
	now    func() time.Time
}

// NewSigner reads an actor signing key: an account NKey seed ("SA...",
// see NewActorKey).
//
// Errors: the seed is not an account seed.
func NewSigner(seed string) (*Signer, error) {
	prefix, raw, err := nkeys.DecodeSeed([]byte(strings.TrimSpace(seed)))
	if err != nil {
		return nil, fmt.Errorf("actor signing key: %w", err)
	}
	if prefix != nkeys.PrefixByteAccount {
		return nil, errors.New("actor signing key: not an account seed (SA...)")
	}
	key := ed25519.NewKeyFromSeed(raw)
	pub, err := nkeys.Encode(nkeys.PrefixByteAccount, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("actor signing key: %w", err)
	}
	return &Signer{key: key, public: string(pub), now: time.Now}, nil
}

// NewActorKey makes a new actor signing key: its seed and public key.
func NewActorKey() (seed, public string, err error) {
	kp, err := nkeys.CreateAccount()
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

// PublicKey is the key services must trust to accept this signer's
// commands.
func (s *Signer) PublicKey() string { return s.public }

// WithClock makes a signer that reads the time from now (tests).
func (s *Signer) WithClock(now func() time.Time) *Signer {
	c := *s
	c.now = now
	return &c
}

// Sign sets the signature headers of msg, a request for p naming
// commandID (empty for a query), valid for ttl. Call signs for the
// context's principal (ActingFor); Sign is for what Call does not send.
func (s *Signer) Sign(msg *nats.Msg, p Principal, commandID string, ttl time.Duration) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	c := Claims{Principal: p, CommandID: commandID, Subject: msg.Subject,
		BodySHA256: sha256.Sum256(msg.Data), Expires: s.now().Add(ttl)}
	enc := c.encode()
	sig := ed25519.Sign(s.key, enc)
	msg.Header.Set(ActorHeader, base64.RawURLEncoding.EncodeToString(enc))
	msg.Header.Set(SignatureHeader, base64.RawURLEncoding.EncodeToString(sig))
	msg.Header.Set(KeyHeader, s.public)
}

type actingKey struct{}

type acting struct {
	signer *Signer
	p      *Principal // nil: the request's own actor
}

// ActingFor returns a context whose calls act for p: Call signs the actor
// of every Acting request made with it. A nil signer signs nothing (and
// the services refuse such commands).
func ActingFor(ctx context.Context, s *Signer, p Principal) context.Context {
	if s == nil {
		return ctx
	}
	return context.WithValue(ctx, actingKey{}, acting{signer: s, p: &p})
}

// ActingAsRequested returns a context whose calls sign, for each Acting
// request, the actor the request names — whoever that is. It is for tools
// and tests that hold the key (seeding, service tests); the gateway signs
// for the signed-in user only (ActingFor).
func ActingAsRequested(ctx context.Context, s *Signer) context.Context {
	if s == nil {
		return ctx
	}
	return context.WithValue(ctx, actingKey{}, acting{signer: s})
}

// principalOf is the principal a request is signed for.
func (a acting) principalOf(req Acting) Principal {
	if a.p != nil {
		return *a.p
	}
	_, actor := req.Acting()
	p := Principal{Username: actor.Username, Roles: []string{actor.Role}}
	if actor.Post != "" {
		p.Posts = []string{actor.Post}
	}
	return p
}

// Verifier checks signed actors against the public keys it trusts.
type Verifier struct {
	keys map[string]nkeys.KeyPair
	now  func() time.Time
}

// maxSkew is how far a signer's clock may run behind a verifier's.
const maxSkew = 5 * time.Second

// NewVerifier trusts the given public keys ("A..."); several during a key
// rotation.
//
// Errors: no key, or one that is not an account public key.
func NewVerifier(publicKeys ...string) (*Verifier, error) {
	v := &Verifier{keys: map[string]nkeys.KeyPair{}, now: time.Now}
	for _, k := range publicKeys {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !nkeys.IsValidPublicAccountKey(k) {
			return nil, fmt.Errorf("actor public key %q: not an account public key (A...)", k)
		}
		kp, err := nkeys.FromPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("actor public key %q: %w", k, err)
		}
		v.keys[k] = kp
	}
	if len(v.keys) == 0 {
		return nil, errors.New("no actor public key to trust")
	}
	return v, nil
}

// WithClock makes a verifier that reads the time from now (tests).
func (v *Verifier) WithClock(now func() time.Time) *Verifier {
	c := *v
	c.now = now
	return &c
}

// verify checks that the request (subject, body, header) was signed by a
// trusted key for the actor and command it names.
//
// Errors: CodeForbidden, saying why, for every refusal.
func (v *Verifier) verify(subject string, h nats.Header, body []byte, req Acting) (Claims, error) {
	refuse := func(why string) (Claims, error) {
		return Claims{}, assist.Errorf(assist.CodeForbidden, "refused %s: %s", subject, why)
	}
	if v == nil {
		return refuse("this service trusts no actor key")
	}
	encB64, sigB64, key := h.Get(ActorHeader), h.Get(SignatureHeader), h.Get(KeyHeader)
	if encB64 == "" || sigB64 == "" {
		return refuse("the actor is not signed")
	}
	kp, ok := v.keys[key]
	if !ok {
		return refuse("the actor is signed by an untrusted key")
	}
	enc, err1 := base64.RawURLEncoding.DecodeString(encB64)
	sig, err2 := base64.RawURLEncoding.DecodeString(sigB64)
	if err1 != nil || err2 != nil || kp.Verify(enc, sig) != nil {
		return refuse("the actor signature is not valid")
	}
	c, err := decodeClaims(enc)
	if err != nil {
		return refuse("the actor signature is not valid")
	}
	commandID, actor := req.Acting()
	switch {
	case c.Subject != subject || c.BodySHA256 != sha256.Sum256(body) || c.CommandID != commandID:
		return refuse("the actor was signed for another command")
	case !v.now().Before(c.Expires.Add(maxSkew)):
		return refuse("the actor signature expired at " + c.Expires.UTC().Format(time.RFC3339))
	case actor.Username != c.Username || !slices.Contains(c.Roles, actor.Role) ||
		(actor.Post != "" && !slices.Contains(c.Posts, actor.Post)):
		return refuse("the command's actor is not the signed one")
	}
	return c, nil
}

var actorType = reflect.TypeFor[assist.Actor]()

// carriesActor reports whether t (a struct) has an assist.Actor field.
func carriesActor(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if t.Field(i).Type == actorType {
			return true
		}
	}
	return false
}
