package gateway

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// migrated returns db with the gateway's schema.
func migrated(tb testing.TB, db sqldb.DB) sqldb.DB {
	tb.Helper()
	if err := db.Migrate(context.Background(), Migrations); err != nil {
		tb.Fatal(err)
	}
	return db
}

// TestStore is the conformance suite of Store, run on every database.
func TestStore(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		store := NewSQLStore(migrated(t, db))
		t.Run("accounts", func(t *testing.T) { testAccounts(t, store) })
		t.Run("password hash", func(t *testing.T) { testReplacePasswordHash(t, store) })
		t.Run("tokens", func(t *testing.T) { testTokens(t, store) })
		t.Run("sign-in throttle", func(t *testing.T) { testThrottle(t, store) })
		t.Run("idempotency", func(t *testing.T) { testIdempotency(t, store) })
		t.Run("idempotency race", func(t *testing.T) { testIdempotencyRace(t, store) })
		t.Run("idempotency keys and answers together", func(t *testing.T) { testKeysAndAnswersTogether(t, store) })
		t.Run("idempotency lookup and record", func(t *testing.T) { testIdempotencyLookupRecord(t, store) })
	})
}

var t0 = time.Date(2025, 3, 1, 9, 30, 0, 123456000, time.UTC)

func testAccounts(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.Account(ctx, "nobody"); !assist.IsCode(err, assist.CodeNotFound) {
		t.Fatalf("unknown account: %v, want not_found", err)
	}
	a := Account{Username: "ana", PasswordHash: []byte("$2a$04$hash"), Roles: []string{requester},
		Posts: []string{"BGD-DHAKA", "BGD-CTG"}, CreatedAt: t0}
	if err := s.PutAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Account(ctx, "ana")
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "ana" || string(got.PasswordHash) != "$2a$04$hash" || !slices.Equal(got.Roles, a.Roles) ||
		!slices.Equal(got.Posts, a.Posts) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("account = %+v, want %+v", got, a)
	}
	// Upsert replaces hash, roles and posts, keeps created_at.
	b := Account{Username: "ana", PasswordHash: []byte("$2a$04$other"), Roles: []string{requester, approver},
		Posts: nil, CreatedAt: t0.Add(time.Hour)}
	if err := s.PutAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err = s.Account(ctx, "ana")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.PasswordHash) != "$2a$04$other" || !slices.Equal(got.Roles, b.Roles) || len(got.Posts) != 0 ||
		!got.CreatedAt.Equal(t0) {
		t.Fatalf("account after upsert = %+v", got)
	}
	if !got.Has(approver) || got.Has(auditor) {
		t.Fatalf("Has: %+v", got)
	}
}

func testReplacePasswordHash(t *testing.T, s Store) {
	ctx := context.Background()
	old := []byte("$2a$04$old")
	if err := s.PutAccount(ctx, Account{Username: "mei", PasswordHash: old, Roles: []string{approver}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.ReplacePasswordHash(ctx, "mei", []byte("$2a$04$not-the-stored-one"), []byte("$argon2id$x")); err != nil || ok {
		t.Fatalf("replace from another hash: %v, %v; want false", ok, err)
	}
	if ok, err := s.ReplacePasswordHash(ctx, "mei", old, []byte("$argon2id$new")); err != nil || !ok {
		t.Fatalf("replace: %v, %v; want true", ok, err)
	}
	a, err := s.Account(ctx, "mei")
	if err != nil || string(a.PasswordHash) != "$argon2id$new" || !slices.Equal(a.Roles, []string{approver}) {
		t.Fatalf("after replace: %+v, %v", a, err)
	}
	if ok, err := s.ReplacePasswordHash(ctx, "nobody", old, []byte("x")); err != nil || ok {
		t.Fatalf("replace for an unknown account: %v, %v", ok, err)
	}
}

func testTokens(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.PutAccount(ctx, Account{Username: "fin", PasswordHash: []byte("x"), Roles: []string{finance}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	live, old := tokenHash("live"), tokenHash("old")
	if err := s.CreateToken(ctx, Token{Hash: live, Username: "fin", ExpiresAt: t0.Add(time.Hour), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, Token{Hash: old, Username: "fin", ExpiresAt: t0.Add(-time.Minute), CreatedAt: t0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	a, exp, err := s.TokenAccount(ctx, live, t0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Username != "fin" || !a.Has(finance) || !exp.Equal(t0.Add(time.Hour)) {
		t.Fatalf("token account = %+v, %v", a, exp)
	}
	// Role changes apply to live tokens at once.
	if err := s.PutAccount(ctx, Account{Username: "fin", PasswordHash: []byte("x"), Roles: []string{auditor}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if a, _, err = s.TokenAccount(ctx, live, t0); err != nil || a.Has(finance) || !a.Has(auditor) {
		t.Fatalf("after role change: %+v, %v", a, err)
	}
	for name, c := range map[string]struct {
		hash []byte
		now  time.Time
	}{
		"expired":          {old, t0},
		"expires at now":   {live, t0.Add(time.Hour)},
		"unknown":          {tokenHash("nope"), t0},
		"empty hash":       {nil, t0},
		"prefix of a hash": {live[:16], t0},
	} {
		if _, _, err := s.TokenAccount(ctx, c.hash, c.now); !assist.IsCode(err, assist.CodeUnauthenticated) {
			t.Errorf("%s: %v, want unauthenticated", name, err)
		}
	}
	n, err := s.DeleteExpiredTokens(ctx, t0)
	if err != nil || n != 1 {
		t.Fatalf("delete expired: %d, %v; want 1", n, err)
	}
	if _, _, err := s.TokenAccount(ctx, live, t0); err != nil {
		t.Fatalf("live token swept: %v", err)
	}
	if err := s.DeleteToken(ctx, live); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TokenAccount(ctx, live, t0); !assist.IsCode(err, assist.CodeUnauthenticated) {
		t.Fatalf("revoked token: %v", err)
	}
}

// beginKey stores rec as a new key's pending record in a write of its
// own (Store.StoreKeys with one begin).
func beginKey(ctx context.Context, s Store, rec IdemRecord) (IdemRecord, bool, error) {
	b, err := s.StoreKeys(ctx, []IdemRecord{rec}, nil)
	if err != nil {
		return IdemRecord{}, false, err
	}
	return b[0].Rec, b[0].Created, nil
}

func testIdempotency(t *testing.T, s Store) {
	ctx := context.Background()
	first := IdemRecord{Username: "ana", Key: "k-1", RequestHash: requestHash("POST", "/v1/requests", []byte(`{}`)),
		CommandID: "0194e1c2-0000-7000-8000-000000000001", CreatedAt: t0}
	got, created, err := beginKey(ctx, s, first)
	if err != nil || !created {
		t.Fatalf("first begin: created=%v, %v", created, err)
	}
	if got.Status != IdemPending || got.CommandID != first.CommandID || !bytes.Equal(got.RequestHash, first.RequestHash) ||
		!got.CreatedAt.Equal(t0) || got.ResponseStatus != 0 || len(got.ResponseBody) != 0 {
		t.Fatalf("first begin = %+v", got)
	}
	// A second use keeps the first command id and hash.
	again := first
	again.CommandID, again.RequestHash = "0194e1c2-0000-7000-8000-000000000002", []byte("other")
	got, created, err = beginKey(ctx, s, again)
	if err != nil || created || got.CommandID != first.CommandID || !bytes.Equal(got.RequestHash, first.RequestHash) ||
		got.Status != IdemPending {
		t.Fatalf("second begin: %+v, created=%v, %v", got, created, err)
	}
	// Another user's key of the same name is another key.
	other := first
	other.Username, other.CommandID = "raj", "0194e1c2-0000-7000-8000-000000000003"
	if got, created, err = beginKey(ctx, s, other); err != nil || !created || got.CommandID != other.CommandID {
		t.Fatalf("other user's key: %+v, created=%v, %v", got, created, err)
	}
	// Done: the response is kept byte for byte, and the pending record's
	// request hash and command id stay.
	body := []byte("{\"id\":\"x\"}\n\x00\xff")
	if _, err := s.StoreKeys(ctx, nil, []IdemRecord{answered(again, 201, body, "/v1/requests/x")}); err != nil {
		t.Fatal(err)
	}
	got, _, err = beginKey(ctx, s, again)
	if err != nil || got.Status != IdemDone || got.ResponseStatus != 201 || !bytes.Equal(got.ResponseBody, body) ||
		got.ResponseLocation != "/v1/requests/x" || got.CommandID != first.CommandID {
		t.Fatalf("after finish: %+v, %v", got, err)
	}
	// A done key is never overwritten.
	if _, err := s.StoreKeys(ctx, nil, []IdemRecord{answered(first, 409, []byte("later"), "")}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ = beginKey(ctx, s, again); got.ResponseStatus != 201 || !bytes.Equal(got.ResponseBody, body) {
		t.Fatalf("done record overwritten: %+v", got)
	}
	// An empty body is stored as empty; answers are stored together, all
	// or none.
	fresh := IdemRecord{Username: "raj", Key: "k-3", RequestHash: []byte("h3"), CommandID: "c3", CreatedAt: t0.Add(time.Hour)}
	if _, err := s.StoreKeys(ctx, nil, []IdemRecord{answered(other, 204, nil, ""), answered(fresh, 200, []byte("3"), "")}); err != nil {
		t.Fatal(err)
	}
	if got, found, _ := s.LookupIdem(ctx, "raj", "k-3"); !found || got.Status != IdemDone || string(got.ResponseBody) != "3" {
		t.Fatalf("a key answered with another: %+v", got)
	}
	if got, _, _ = beginKey(ctx, s, other); got.Status != IdemDone || got.ResponseStatus != 204 || len(got.ResponseBody) != 0 {
		t.Fatalf("empty body: %+v", got)
	}
	// Forgetting old keys.
	newer := IdemRecord{Username: "ana", Key: "k-2", RequestHash: []byte("h"), CommandID: "c", CreatedAt: t0.Add(time.Hour)}
	if _, _, err := beginKey(ctx, s, newer); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteIdemBefore(ctx, t0.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("delete before: %d, %v; want 2", n, err)
	}
	if got, created, _ = beginKey(ctx, s, again); !created || got.CommandID != again.CommandID {
		t.Fatalf("forgotten key not new: %+v", got)
	}
	if _, created, _ = beginKey(ctx, s, newer); created {
		t.Fatal("a newer key was forgotten")
	}
}

// answered is rec done with a response.
func answered(rec IdemRecord, status int, body []byte, location string) IdemRecord {
	rec.Status, rec.ResponseStatus, rec.ResponseBody, rec.ResponseLocation = IdemDone, status, body, location
	return rec
}

// testKeysAndAnswersTogether: one write of answers and new keys, as the
// gateway's group commit makes them: the answers are stored first, so a
// retry's begin written with its key's answer finds it done; a key begun
// twice in one write is made once, the second begin finding the first's
// record.
func testKeysAndAnswersTogether(t *testing.T, s Store) {
	ctx := context.Background()
	hash := []byte("h")
	pending := IdemRecord{Username: "mei", Key: "answered-now", RequestHash: hash, CommandID: "cmd-answered", CreatedAt: t0}
	if _, created, err := beginKey(ctx, s, pending); err != nil || !created {
		t.Fatalf("begin: %v %v", created, err)
	}
	retry := pending
	retry.CommandID = "cmd-retry"
	twice := IdemRecord{Username: "mei", Key: "twice", RequestHash: hash, CommandID: "cmd-twice-1", CreatedAt: t0}
	twiceAgain := twice
	twiceAgain.CommandID = "cmd-twice-2"
	begun, err := s.StoreKeys(ctx, []IdemRecord{retry, twice, twiceAgain}, []IdemRecord{answered(pending, 200, []byte("ok"), "")})
	if err != nil || len(begun) != 3 {
		t.Fatalf("one write: %+v %v", begun, err)
	}
	if b := begun[0]; b.Created || b.Rec.Status != IdemDone || b.Rec.CommandID != "cmd-answered" || string(b.Rec.ResponseBody) != "ok" {
		t.Errorf("a retry's begin written with its key's answer: %+v, want the answer", b)
	}
	if b := begun[1]; !b.Created || b.Rec.CommandID != "cmd-twice-1" {
		t.Errorf("first begin of a key: %+v, want it made", b)
	}
	if b := begun[2]; b.Created || b.Rec.Status != IdemPending || b.Rec.CommandID != "cmd-twice-1" {
		t.Errorf("second begin of a key in the same write: %+v, want the first's record", b)
	}
}

// testIdempotencyRace: concurrent first uses of one key agree on one
// command id, and exactly one of them created it.
func testIdempotencyRace(t *testing.T, s Store) {
	ctx := context.Background()
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]bool{}
		created int
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, c, err := beginKey(ctx, s, IdemRecord{Username: "olu", Key: "race", RequestHash: []byte("h"),
				CommandID: fmt.Sprintf("cmd-%d", i), CreatedAt: t0})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[got.CommandID] = true
			if c {
				created++
			}
		}()
	}
	wg.Wait()
	if len(ids) != 1 || created != 1 {
		t.Fatalf("racing begins: command ids %v, %d created; want 1 and 1", ids, created)
	}
}

func TestSeedUsers(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		users := DemoUsers("demo")
		if err := seedUsers(ctx, db, users, testPasswordParams, func() time.Time { return t0 }); err != nil {
			t.Fatal(err)
		}
		store := NewSQLStore(db)
		before := map[string]Account{}
		for _, u := range users {
			a, err := store.Account(ctx, u.Username)
			if err != nil {
				t.Fatal(err)
			}
			if ok, stale := testPasswordParams.verify(a.PasswordHash, "demo"); !ok || stale {
				t.Fatalf("%s: password does not verify", u.Username)
			}
			if bytes.Contains(a.PasswordHash, []byte("demo")) {
				t.Fatalf("%s: password stored in clear", u.Username)
			}
			before[u.Username] = a
		}
		// Seeding again changes nothing.
		if err := seedUsers(ctx, db, users, testPasswordParams, func() time.Time { return t0.Add(time.Hour) }); err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			a, _ := store.Account(ctx, u.Username)
			if !bytes.Equal(a.PasswordHash, before[u.Username].PasswordHash) || !a.CreatedAt.Equal(t0) {
				t.Fatalf("%s changed by a second seeding", u.Username)
			}
		}
		// Another password or role updates the account.
		users[0].Password, users[0].Posts = "changed", []string{"BGD-DHAKA", "BGD-CTG"}
		if err := seedUsers(ctx, db, users, testPasswordParams, time.Now); err != nil {
			t.Fatal(err)
		}
		a, _ := store.Account(ctx, users[0].Username)
		if ok, _ := testPasswordParams.verify(a.PasswordHash, "changed"); !ok || len(a.Posts) != 2 {
			t.Fatalf("update not applied: %+v", a)
		}
	})
}

func TestDemoUsers(t *testing.T) {
	want := map[string]struct {
		role  string
		posts []string
	}{
		"ana": {requester, []string{"BGD-DHAKA"}}, "raj": {requester, []string{"IND-MUMBAI"}},
		"olu": {approver, nil}, "mei": {approver, nil}, "fin": {finance, nil}, "aud": {auditor, nil}, "adm": {admin, nil},
	}
	users := DemoUsers("pw")
	if len(users) != len(want) {
		t.Fatalf("%d demo users, want %d", len(users), len(want))
	}
	for _, u := range users {
		w, ok := want[u.Username]
		if !ok || !slices.Equal(u.Roles, []string{w.role}) || !slices.Equal(u.Posts, w.posts) || u.Password != "pw" {
			t.Errorf("demo user %+v", u)
		}
		if err := checkUser(u); err != nil {
			t.Errorf("demo user %s: %v", u.Username, err)
		}
	}
}

func TestSeedUsersRefusesBadAccounts(t *testing.T) {
	db := sqldbtest.SQLite(t)
	for name, u := range map[string]User{
		"no username":          {Password: "p", Roles: []string{finance}},
		"comma in username":    {Username: "a,b", Password: "p", Roles: []string{finance}},
		"no password":          {Username: "x", Roles: []string{finance}},
		"long password":        {Username: "x", Password: strings.Repeat("p", maxPassword+1), Roles: []string{finance}},
		"no role":              {Username: "x", Password: "p"},
		"unknown role":         {Username: "x", Password: "p", Roles: []string{"system"}},
		"requester, no post":   {Username: "x", Password: "p", Roles: []string{requester}},
		"comma in post":        {Username: "x", Password: "p", Roles: []string{requester}, Posts: []string{"A,B"}},
		"space in the account": {Username: "x y", Password: "p", Roles: []string{finance}},
	} {
		err := seedUsers(context.Background(), db, []User{u}, testPasswordParams, time.Now)
		if !assist.IsCode(err, assist.CodeInvalid) {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}

func testIdempotencyLookupRecord(t *testing.T, s Store) {
	ctx := context.Background()
	if _, found, err := s.LookupIdem(ctx, "ana", "lr-1"); err != nil || found {
		t.Fatalf("lookup of an unused key: found=%v %v", found, err)
	}
	rec := IdemRecord{Username: "ana", Key: "lr-1", RequestHash: []byte("hash-1"), CommandID: "cmd-1", Status: IdemDone,
		ResponseStatus: 201, ResponseBody: []byte(`{"id":"x"}`), ResponseLocation: "/v1/requests/x", CreatedAt: t0}
	if _, err := s.StoreKeys(ctx, nil, []IdemRecord{rec}); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.LookupIdem(ctx, "ana", "lr-1")
	if err != nil || !found || got.Status != IdemDone || got.ResponseStatus != 201 || string(got.ResponseBody) != `{"id":"x"}` ||
		got.ResponseLocation != "/v1/requests/x" || !bytes.Equal(got.RequestHash, []byte("hash-1")) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("lookup = %+v found=%v %v", got, found, err)
	}
	// A second record of the key changes nothing; keys are per user.
	again := rec
	again.RequestHash, again.ResponseStatus = []byte("hash-2"), 400
	if _, err := s.StoreKeys(ctx, nil, []IdemRecord{again}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.LookupIdem(ctx, "ana", "lr-1"); got.ResponseStatus != 201 || !bytes.Equal(got.RequestHash, []byte("hash-1")) {
		t.Fatalf("a second record changed the first: %+v", got)
	}
	if _, found, _ := s.LookupIdem(ctx, "raj", "lr-1"); found {
		t.Fatal("another user's key found")
	}
}
