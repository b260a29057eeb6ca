package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/notify"
	"github.com/eva-org/eva/services/notify/notifyapi"
)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

var (
	adm = assist.Actor{Username: "adm", Role: assist.RoleAdmin}
	ana = assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
	olu = assist.Actor{Username: "olu", Role: assist.RoleApprover}
)

const secret = "s3cret-of-the-receiver"

// harness is notify on a real embedded JetStream and a real database.
type harness struct {
	t    *testing.T
	ctx  context.Context
	db   sqldb.DB
	log  *eventlog.Log
	keys *seal.Keyring
}

func newHarness(t *testing.T, db sqldb.DB) *harness {
	t.Helper()
	el := eventlogtest.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	if err := notify.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	keys, err := seal.NewKeyring(seal.NewMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, ctx: ctx, db: db, log: el.Log, keys: keys}
}

// service is a notify on the harness's log and database with quick
// retries.
func (h *harness) service() *notify.Service {
	return notify.New(notify.Deps{Config: notify.Config{RetryFirst: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond,
		Poll: 10 * time.Millisecond, Timeout: 5 * time.Second}, Log: h.log, DB: h.db, Keys: h.keys, Logger: zaptest.NewLogger(h.t)})
}

// run runs s's consumer and delivery as Run does; stop ends them and waits.
func (h *harness) run(s *notify.Service) (stop func()) {
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Follow(ctx); err != nil {
			h.t.Errorf("follow: %v", err)
		}
	})
	wg.Go(func() { s.Deliver(ctx) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	h.t.Cleanup(stop)
	return stop
}

// file starts a case; it returns its id and version.
func (h *harness) file(urgency assist.Urgency) (string, uint64) {
	h.t.Helper()
	id := newID()
	c, err := h.log.Start(h.ctx, assist.Event{ID: newID(), CaseID: id, At: time.Now().UTC(), Actor: ana,
		Body: assist.RequestSubmitted{Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: urgency, AmountCents: 10_000,
			Justification: "three nights", Beneficiary: assist.Sealed{KeyID: id, Ciphertext: []byte("sealed name")},
			BeneficiaryRefHash: []byte{1, 2, 3}}})
	if err != nil {
		h.t.Fatal(err)
	}
	return id, c.Version
}

// append adds an event of actor to case id after version.
func (h *harness) append(id string, version uint64, actor assist.Actor, b assist.Body) uint64 {
	h.t.Helper()
	seq, err := h.log.Append(h.ctx, assist.Event{ID: newID(), CaseID: id, At: time.Now().UTC(), Actor: actor, Body: b}, version)
	if err != nil {
		h.t.Fatal(err)
	}
	return seq
}

// receiver is a webhook receiver that answers 503 to the first fail
// attempts of each event, then 204; it checks every signature.
type receiver struct {
	t    *testing.T
	srv  *httptest.Server
	fail int
	mu   sync.Mutex
	// attempts and oks count by EVA-Event-Id; bodies keeps the last body.
	attempts, oks map[string]int
	bodies        map[string]notify.Payload
	bad           []string
}

func newReceiver(t *testing.T, fail int) *receiver {
	r := &receiver{t: t, fail: fail, attempts: map[string]int{}, oks: map[string]int{}, bodies: map[string]notify.Payload{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	id := req.Header.Get(notify.HeaderEventID)
	if problem := verify(req.Header.Get(notify.HeaderSignature), body); problem != "" {
		r.bad = append(r.bad, problem)
	}
	var keys map[string]any
	if err := json.Unmarshal(body, &keys); err != nil || len(keys) != 6 {
		r.bad = append(r.bad, fmt.Sprintf("body %s: %v", body, err))
	}
	var p notify.Payload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || p.ID != id {
		r.bad = append(r.bad, fmt.Sprintf("body %s (EVA-Event-Id %s): %v", body, id, err))
	}
	r.attempts[id]++
	if r.attempts[id] <= r.fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.oks[id]++
	r.bodies[id] = p
	w.WriteHeader(http.StatusNoContent)
}

// verify checks an EVA-Signature header as a receiver would.
func verify(header string, body []byte) string {
	ts, v1, ok := strings.Cut(header, ",")
	t, hasT := strings.CutPrefix(ts, "t=")
	sig, hasV := strings.CutPrefix(v1, "v1=")
	if !ok || !hasT || !hasV {
		return "malformed signature " + header
	}
	if _, err := strconv.ParseInt(t, 10, 64); err != nil {
		return "bad t in " + header
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "." + string(body)))
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		return "signature does not verify: " + header
	}
	return ""
}

// counts are the receiver's successes and attempts of each id.
func (r *receiver) counts(ids ...string) (oks, attempts []int, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		oks, attempts = append(oks, r.oks[id]), append(attempts, r.attempts[id])
	}
	return oks, attempts, slices.Clone(r.bad)
}

func (h *harness) register(s *notify.Service, url string, events ...string) notifyapi.Webhook {
	h.t.Helper()
	w, err := s.RegisterWebhook(h.ctx, notifyapi.RegisterWebhookRequest{CommandID: newID(), Actor: adm, URL: url,
		Events: events, Secret: secret})
	if err != nil {
		h.t.Fatal(err)
	}
	return w
}

// lastEventID is the id of the newest event of case id.
func (h *harness) eventIDs(id string) []string {
	var out []string
	for _, r := range eventlogtest.Events(h.t, h.log, id) {
		out = append(out, r.Event.ID)
	}
	return out
}

// TestWebhookRetriedUntil2xx: a receiver that fails the first two attempts
// of every event gets each matching event until it answers 2xx, then
// never again; the EVA-Event-Id is the same on every attempt, the
// signature verifies with the secret, the body is the six fields and the
// status after the event; an event of a type not asked for is not sent.
func TestWebhookRetriedUntil2xx(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		rcv := newReceiver(t, 2)
		s := h.service()
		w := h.register(s, rcv.srv.URL+"/eva", "RequestSubmitted", "InfoRequested")
		h.run(s)
		a, va := h.file(assist.Critical)
		b, _ := h.file(assist.Routine)
		va = h.append(a, va, olu, assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)})
		h.append(a, va, olu, assist.InfoRequested{Question: "which shelter?"})
		ids := append(h.eventIDs(a), h.eventIDs(b)...) // a: submitted, claimed, info; b: submitted
		want := []string{ids[0], ids[2], ids[3]}
		evatest.Await(t, evatest.Patience, "each event delivered", func() (bool, string) {
			oks, attempts, _ := rcv.counts(want...)
			return !slices.Contains(oks, 0), fmt.Sprintf("oks %v attempts %v", oks, attempts)
		})
		// Nothing more arrives: delivered rows are never sent again.
		ds, err := s.Store().Deliveries(h.ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		evatest.Eventually(t, "every delivery recorded", func() bool {
			ds, err = s.Store().Deliveries(h.ctx, w.ID)
			return err == nil && len(ds) == 3 && !slices.ContainsFunc(ds, func(d notify.Delivery) bool { return d.DeliveredAt.IsZero() })
		})
		oks, attempts, bad := rcv.counts(append(want, ids[1])...)
		if len(bad) > 0 {
			t.Fatalf("receiver saw bad deliveries: %v", bad)
		}
		if !slices.Equal(oks, []int{1, 1, 1, 0}) || !slices.Equal(attempts, []int{3, 3, 3, 0}) {
			t.Fatalf("successes %v attempts %v, want one success after three attempts each, nothing for the claim", oks, attempts)
		}
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		if p := rcv.bodies[ids[2]]; p.Type != "InfoRequested" || p.CaseID != a || p.Status != string(assist.StateInfoRequested) || p.Seq == 0 || p.At.IsZero() {
			t.Fatalf("payload %+v", p)
		}
		if p := rcv.bodies[ids[0]]; p.Type != "RequestSubmitted" || p.Status != string(assist.StateSubmitted) {
			t.Fatalf("payload %+v", p)
		}
	})
}

// TestRestartLosesNothingAndResendsNothing: deliveries acknowledged before
// a restart are not sent again; events appended while notify is down and
// deliveries still failing when it stopped are delivered after it comes
// back, each exactly once.
func TestRestartLosesNothingAndResendsNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		ok := newReceiver(t, 0)
		flaky := newReceiver(t, 1_000_000) // fails until told otherwise
		s1 := h.service()
		hooks := []notifyapi.Webhook{h.register(s1, ok.srv.URL, "RequestSubmitted"), h.register(s1, flaky.srv.URL, "RequestSubmitted")}
		stop := h.run(s1)
		var before []string
		for range 3 {
			id, _ := h.file(assist.Urgent)
			before = append(before, h.eventIDs(id)[0])
		}
		evatest.Await(t, evatest.Patience, "delivered before the restart", func() (bool, string) {
			oks, _, _ := ok.counts(before...)
			_, tries, _ := flaky.counts(before...)
			return !slices.Contains(oks, 0) && !slices.Contains(tries, 0), fmt.Sprintf("ok %v flaky attempts %v", oks, tries)
		})
		stop()
		var during []string
		for range 3 {
			id, _ := h.file(assist.Urgent)
			during = append(during, h.eventIDs(id)[0])
		}
		flaky.mu.Lock()
		flaky.fail = 0 // the flaky receiver recovers while notify is down
		flaky.mu.Unlock()
		s2 := h.service()
		h.run(s2)
		all := append(slices.Clone(before), during...)
		for _, r := range []*receiver{ok, flaky} {
			evatest.Await(t, evatest.Patience, "every event delivered after the restart", func() (bool, string) {
				oks, _, _ := r.counts(all...)
				return !slices.Contains(oks, 0), fmt.Sprintf("oks %v", oks)
			})
		}
		// Once every row is delivered nothing can be sent again (only
		// undelivered rows are claimed): the counts are final.
		evatest.Eventually(t, "every delivery recorded", func() bool {
			n := 0
			for _, w := range hooks {
				ds, err := s2.Store().Deliveries(h.ctx, w.ID)
				if err != nil {
					return false
				}
				for _, d := range ds {
					if !d.DeliveredAt.IsZero() {
						n++
					}
				}
			}
			return n == 12
		})
		for name, r := range map[string]*receiver{"ok": ok, "flaky": flaky} {
			oks, _, bad := r.counts(all...)
			if len(bad) > 0 {
				t.Fatalf("%s: bad deliveries %v", name, bad)
			}
			if !slices.Equal(oks, []int{1, 1, 1, 1, 1, 1}) {
				t.Fatalf("%s: successes %v, want each event exactly once", name, oks)
			}
		}
	})
}

// TestWebhookEventsAndSecret: registration and removal are events of kind
// webhook with their actor; the secret is not in the log in clear; a
// removed webhook receives nothing more and is no longer listed.
func TestWebhookEventsAndSecret(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	rcv := newReceiver(t, 0)
	s := h.service()
	w := h.register(s, rcv.srv.URL, "RequestSubmitted")
	if _, err := s.RemoveWebhook(h.ctx, notifyapi.RemoveWebhookRequest{CommandID: newID(), Actor: adm, ID: w.ID}); err != nil {
		t.Fatal(err)
	}
	msgs, err := h.log.LoadOf(h.ctx, assist.KindWebhook, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Subject != "eva.webhook."+w.ID+".WebhookRegistered" ||
		msgs[1].Subject != "eva.webhook."+w.ID+".WebhookRemoved" {
		t.Fatalf("events %+v", msgs)
	}
	for _, m := range msgs {
		if bytes.Contains(m.Data, []byte(secret)) {
			t.Fatalf("the secret is in clear in %s", m.Subject)
		}
	}
	recs, err := h.log.History(h.ctx, assist.KindWebhook, w.ID)
	if err != nil || recs[0].Event.Actor.Username != "adm" {
		t.Fatalf("history %+v %v", recs, err)
	}
	h.run(s)
	id, _ := h.file(assist.Critical)
	// A second webhook, registered after, sees the event: the first does not.
	other := newReceiver(t, 0)
	w2 := h.register(s, other.srv.URL, "RequestSubmitted")
	id2, _ := h.file(assist.Critical)
	evatest.Eventually(t, "the live webhook gets the later event", func() bool {
		oks, _, _ := other.counts(h.eventIDs(id2)[0])
		return oks[0] == 1
	})
	if oks, attempts, _ := rcv.counts(h.eventIDs(id)[0], h.eventIDs(id2)[0]); attempts[0]+attempts[1] != 0 {
		t.Fatalf("removed webhook got %v %v", oks, attempts)
	}
	if oks, _, _ := other.counts(h.eventIDs(id)[0]); oks[0] != 0 {
		t.Fatalf("a webhook got an event from before its registration")
	}
	page, err := s.Webhooks(h.ctx, notifyapi.WebhooksRequest{})
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != w2.ID {
		t.Fatalf("listed %+v %v", page, err)
	}
	if _, err := s.RemoveWebhook(h.ctx, notifyapi.RemoveWebhookRequest{CommandID: newID(), Actor: adm, ID: w.ID}); !assist.IsCode(err, assist.CodeNotFound) {
		t.Fatalf("removing twice: %v, want not found", err)
	}
}

// TestRegisterBadInput: each bad registration is refused naming the field,
// and nothing is appended.
func TestRegisterBadInput(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	s := h.service()
	cases := []struct {
		name  string
		actor assist.Actor
		in    notifyapi.RegisterWebhookRequest
		code  assist.Code
		field string
	}{
		{"not http", adm, notifyapi.RegisterWebhookRequest{URL: "file:///etc/passwd", Events: []string{"RequestApproved"}, Secret: secret}, assist.CodeInvalid, "url"},
		{"userinfo", adm, notifyapi.RegisterWebhookRequest{URL: "https://a:b@example.org", Events: []string{"RequestApproved"}, Secret: secret}, assist.CodeInvalid, "url"},
		{"unknown event", adm, notifyapi.RegisterWebhookRequest{URL: "https://example.org", Events: []string{"Nope"}, Secret: secret}, assist.CodeInvalid, "events[0]"},
		{"short secret", adm, notifyapi.RegisterWebhookRequest{URL: "https://example.org", Events: []string{"RequestApproved"}, Secret: "x"}, assist.CodeInvalid, "secret"},
		{"not an admin", olu, notifyapi.RegisterWebhookRequest{URL: "https://example.org", Events: []string{"RequestApproved"}, Secret: secret}, assist.CodeForbidden, ""},
	}
	for _, c := range cases {
		c.in.CommandID, c.in.Actor = newID(), c.actor
		_, err := s.RegisterWebhook(h.ctx, c.in)
		if !assist.IsCode(err, c.code) {
			t.Fatalf("%s: %v, want %s", c.name, err, c.code)
		}
		if c.field != "" {
			var fields []string
			if ae, ok := err.(*assist.Error); ok {
				for _, f := range ae.Fields {
					fields = append(fields, f.Field)
				}
			}
			if !slices.Contains(fields, c.field) {
				t.Fatalf("%s: fields %v, want %s", c.name, fields, c.field)
			}
		}
		if msgs, err := h.log.LoadOf(h.ctx, assist.KindWebhook, c.in.CommandID); err != nil || len(msgs) != 0 {
			t.Fatalf("%s: appended %d events (%v)", c.name, len(msgs), err)
		}
	}
}
