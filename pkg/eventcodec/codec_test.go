package eventcodec_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	evav1 "github.com/eva-org/eva/proto/eva/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the sample events")

// Times in UTC with microsecond precision, as the services write them.
var (
	at       = time.Date(2026, 3, 14, 9, 30, 15, 123456000, time.UTC)
	deadline = time.Date(2026, 3, 15, 9, 30, 15, 654321000, time.UTC)
)

func ptr[T any](v T) *T { return &v }

func envelope(id string, b assist.Body) assist.Event {
	return assist.Event{
		ID:        "0190f5a0-0000-7000-8000-0000000000" + id,
		CaseID:    "0190f5a0-0000-7000-8000-00000000c0de",
		At:        at,
		Actor:     assist.Actor{Username: "alice", Role: assist.RoleRequester, Post: "KYIV"},
		CommandID: "cmd-" + id,
		Reason:    "reason " + id + " — with ünïcode",
		Body:      b,
	}
}

var policy = assist.PolicySeen{Version: "default-1", CaseCapUSDCents: 2_000_000, CategoryCapUSDCents: 1_000_000}

// samples has one event of every type with every field set; its names are
// the golden files'.
func samples() []struct {
	name string
	e    assist.Event
} {
	return []struct {
		name string
		e    assist.Event
	}{
		{"RequestSubmitted", envelope("01", assist.RequestSubmitted{
			Post: "KYIV", Category: assist.Medical, Urgency: assist.Urgent, AmountCents: 120_000,
			Justification: "Emergency surgery.", Beneficiary: assist.Sealed{KeyID: "key-1", Ciphertext: []byte{4, 5, 6}},
			BeneficiaryRefHash: []byte{0xaa, 0xbb}, PayeeID: "payee-1", Deadline: deadline, Policy: policy,
			IdempotencyKeyHash: []byte{0x01, 0x02},
		})},
		{"RequestAmended", envelope("02", assist.RequestAmended{
			Category: ptr(assist.Shelter), Urgency: ptr(assist.Critical), AmountCents: ptr(int64(450_000)),
			Justification: ptr("Shelter tonight."), Beneficiary: &assist.Sealed{KeyID: "key-1", Ciphertext: []byte{7}},
			BeneficiaryRefHash: []byte{0xcc}, PayeeID: ptr("payee-2"), Deadline: deadline, Policy: policy,
		})},
		{"RequestWithdrawn", envelope("03", assist.RequestWithdrawn{})},
		{"InfoRequested", envelope("04", assist.InfoRequested{Question: "Which hospital?"})},
		{"InfoProvided", envelope("05", assist.InfoProvided{Answer: "St. Luke's."})},
		{"ReviewClaimed", envelope("06", assist.ReviewClaimed{ExpiresAt: at.Add(30 * time.Minute)})},
		{"ReviewReleased", envelope("07", assist.ReviewReleased{Expired: true})},
		{"RequestApproved", envelope("08", assist.RequestApproved{AmountCents: 100_000, FundID: "fund-1", HoldID: "hold-1",
			PayeeID: "payee-1", Note: "reduced rate", FundAvailableCents: 4_900_000, Policy: policy})},
		{"RequestRejected", envelope("09", assist.RequestRejected{})},
		{"FundsReserved", envelope("10", assist.FundsReserved{HoldID: "hold-1", FundID: "fund-1", AmountCents: 100_000, PayoutID: "payout-1"})},
		{"FundsReleased", envelope("11", assist.FundsReleased{HoldID: "hold-1", FundID: "fund-1", AmountCents: 100_000,
			Cause: assist.ReleasePayoutCancelled})},
		{"PayoutSent", envelope("12", assist.PayoutSent{PayoutID: "payout-1", PayeeID: "payee-1", AmountCents: 100_000,
			ProviderRef: "prov-1", Attempt: 3})},
		{"PayoutSettled", envelope("13", assist.PayoutSettled{PayoutID: "payout-1", ProviderRef: "prov-1"})},
		{"PayoutFailed", envelope("14", assist.PayoutFailed{PayoutID: "payout-1", Error: "timeout", Attempt: 2})},
		{"RequestClosed", envelope("15", assist.RequestClosed{})},
		{"PayoutRetried", envelope("18", assist.PayoutRetried{PayoutID: "payout-1", Attempt: 3})},
		{"DeadlineMissed", envelope("16", assist.DeadlineMissed{Deadline: deadline})},
		{"DeadlineWarning", envelope("52", assist.DeadlineWarning{Deadline: deadline})},
		{"ClaimExpired", envelope("17", assist.ClaimExpired{ClaimedBy: "olu", ExpiresAt: at.Add(30 * time.Minute)})},
		{"PolicyChanged", envelope("19", assist.PolicyChanged{Policy: func() assist.Policy {
			p := assist.DefaultPolicy()
			p.Version = "2"
			return p
		}()})},
		{"FundCreated", envelope("45", assist.FundCreated{Name: "EVA-DEMO", AllocatedCents: 100_000_000})},
		{"PayeeCreated", envelope("46", assist.PayeeCreated{Name: "Safe House", Country: "BD", Account: "ACC-1"})},
		{"PayeeAccountChanged", envelope("47", assist.PayeeAccountChanged{Account: "ACC-2", Previous: "ACC-1"})},
		{"FundAllocationChanged", envelope("48", assist.FundAllocationChanged{AllocatedCents: 90_000_000, PreviousCents: 100_000_000,
			HoldID: "019a0000-0000-7000-8000-000000000048"})},
		{"PersonalDataErased", envelope("30", assist.PersonalDataErased{KeyID: "key-1"})},
		{"UserCreated", envelope("20", assist.UserCreated{Username: "nia", Roles: []string{"requester"}, Posts: []string{"KEN-NAIROBI"}})},
		{"UserChanged", envelope("21", assist.UserChanged{Username: "nia", Roles: []string{"requester", "auditor"},
			Posts: []string{"KEN-NAIROBI"}, Disabled: true, PasswordChanged: true})},
		{"WebhookRegistered", envelope("50", assist.WebhookRegistered{URL: "https://example.org/eva?x=1",
			Events: []string{"RequestApproved", "DeadlineMissed"}, Secret: assist.Sealed{KeyID: "wh-1", Ciphertext: []byte{1, 2}},
			SecretKey: []byte{3, 4}})},
		{"WebhookRemoved", envelope("51", assist.WebhookRemoved{})},
	}
}

// variants are further events whose fields are set in other ways.
func variants() map[string]assist.Event {
	return map[string]assist.Event{
		"first of two approvals": envelope("40", assist.RequestApproved{AmountCents: 600_000, FundID: "fund-1", HoldID: "hold-1",
			PayeeID: "payee-1", FundAvailableCents: 1, Policy: assist.PolicySeen{Version: "v2", SecondApprovalAboveUSDCents: 500_000},
			Step: assist.ApprovalFirst}),
		"second approval": envelope("41", assist.RequestApproved{AmountCents: 550_000, FundID: "fund-1", HoldID: "hold-1",
			PayeeID: "payee-1", Step: assist.ApprovalSecond, Policy: policy}),
		"rejected by the second approver": envelope("42", assist.RequestRejected{HoldID: "hold-1"}),
		"user created with an address": envelope("45", assist.UserCreated{Username: "nia", Roles: []string{"approver"},
			Email: "nia@example.org"}),
		"user changed its address": envelope("46", assist.UserChanged{Username: "nia", Roles: []string{"approver"},
			Email: "nia.k@example.org"}),
		"withdrawn awaiting the second": envelope("43", assist.RequestWithdrawn{HoldID: "hold-1"}),
		"released, not approved": envelope("44", assist.FundsReleased{HoldID: "hold-1", FundID: "fund-1", AmountCents: 5,
			Cause: assist.ReleaseNotApproved}),
		"submitted without beneficiary": envelope("20", assist.RequestSubmitted{Post: "KYIV", Category: assist.Other,
			Urgency: assist.Routine, AmountCents: 1, Justification: "j", BeneficiaryRefHash: []byte{1}, Policy: policy}),
		"submitted with a key id only": envelope("21", assist.RequestSubmitted{Post: "KYIV",
			Beneficiary: assist.Sealed{KeyID: "key-2"}, Policy: policy}),
		"submitted with ciphertext only": envelope("22", assist.RequestSubmitted{Post: "KYIV",
			Beneficiary: assist.Sealed{Ciphertext: []byte{0}}, Policy: policy}),
		"amended urgency only": envelope("23", assist.RequestAmended{Urgency: ptr(assist.Routine), Deadline: deadline, Policy: policy}),
		"amended nothing":      envelope("24", assist.RequestAmended{}),
		"amended to zero values": envelope("25", assist.RequestAmended{Category: ptr(assist.Category("")),
			Urgency: ptr(assist.Urgency("")), AmountCents: ptr(int64(0)), Justification: ptr(""), PayeeID: ptr("")}),
		"amended beneficiary and amount": envelope("26", assist.RequestAmended{AmountCents: ptr(int64(-5)),
			Beneficiary: &assist.Sealed{KeyID: "k", Ciphertext: []byte{1, 2}}, BeneficiaryRefHash: []byte{3}, Policy: policy}),
		"reserved for the logged account": envelope("48", assist.FundsReserved{HoldID: "h", FundID: "f", AmountCents: 5, PayoutID: "p",
			PayeeID: "payee-1", PayeeAccount: "ACC-2", PayeeAccountSeq: 41}),
		"released hold expired":            envelope("27", assist.FundsReleased{HoldID: "h", Cause: assist.ReleaseHoldExpired}),
		"released unspecified":             envelope("28", assist.FundsReleased{HoldID: "h", Cause: assist.ReleaseUnspecified}),
		"released unknown cause":           envelope("29", assist.FundsReleased{HoldID: "h", Cause: assist.ReleaseCause(42)}),
		"released by a claim that ran out": envelope("30", assist.ReviewReleased{Expired: false}),
		"nanosecond times": func() assist.Event {
			e := envelope("31", assist.ReviewClaimed{ExpiresAt: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC)})
			e.At = time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)
			return e
		}(),
		"before 1970": func() assist.Event {
			e := envelope("32", assist.RequestClosed{})
			e.At = time.Date(1969, 7, 20, 20, 17, 40, 500000, time.UTC)
			return e
		}(),
		"zero times and empty envelope fields": {ID: "id", CaseID: "case", Body: assist.ReviewClaimed{}},
		"system actor without post": func() assist.Event {
			e := envelope("33", assist.PayoutSent{PayoutID: "p", Attempt: 1})
			e.Actor = assist.Actor{Username: "eva", Role: assist.RoleSystem}
			e.Reason, e.CommandID = "", ""
			return e
		}(),
	}
}

func TestSamplesCoverEveryEventType(t *testing.T) {
	var got []string
	for _, s := range samples() {
		if s.name != s.e.Type() {
			t.Errorf("sample %s has type %s", s.name, s.e.Type())
		}
		got = append(got, s.e.Type())
	}
	if !reflect.DeepEqual(got, assist.EventTypes) {
		t.Fatalf("samples %v,\nEventTypes %v", got, assist.EventTypes)
	}
}

func roundTrip(tb testing.TB, e assist.Event) assist.Event {
	tb.Helper()
	data, err := eventcodec.Encode(e)
	if err != nil {
		tb.Fatalf("encode %+v: %v", e, err)
	}
	got, err := eventcodec.Decode(e.Type(), data)
	if err != nil {
		tb.Fatalf("decode %s: %v", e.Type(), err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	all := map[string]assist.Event{}
	for _, s := range samples() {
		all[s.name] = s.e
	}
	for name, e := range variants() {
		all[name] = e
	}
	for name, e := range all {
		t.Run(name, func(t *testing.T) {
			if got := roundTrip(t, e); !reflect.DeepEqual(got, e) {
				t.Fatalf("round trip\n got %#v\nwant %#v", got, e)
			}
		})
	}
}

// An amendment that replaces the beneficiary by nothing must survive the
// log: applied in memory it clears the beneficiary, so replay must too.
func TestRoundTripAmendedEmptyBeneficiary(t *testing.T) {
	e := envelope("40", assist.RequestAmended{Beneficiary: &assist.Sealed{}, BeneficiaryRefHash: []byte{1}})
	if got := roundTrip(t, e); !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip\n got %#v\nwant %#v", got, e)
	}
}

// Times in other zones keep their instant and come back in UTC.
func TestRoundTripTimeZone(t *testing.T) {
	zone := time.FixedZone("UTC+3", 3*60*60)
	local := time.Date(2026, 3, 14, 12, 30, 15, 123456000, zone)
	e := envelope("41", assist.ReviewClaimed{ExpiresAt: local.Add(time.Hour)})
	e.At = local
	got := roundTrip(t, e)
	if !got.At.Equal(local) || got.At.Location() != time.UTC {
		t.Fatalf("at %v (%v), want %v in UTC", got.At, got.At.Location(), local)
	}
	exp := got.Body.(assist.ReviewClaimed).ExpiresAt
	if !exp.Equal(local.Add(time.Hour)) || exp.Location() != time.UTC {
		t.Fatalf("expires %v, want %v in UTC", exp, local.Add(time.Hour))
	}
}

// The encoding is deterministic, so the same event always has the same
// bytes (the audit log hashes them).
func TestEncodeIsDeterministic(t *testing.T) {
	for _, s := range samples() {
		a, err := eventcodec.Encode(s.e)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			b, err := eventcodec.Encode(s.e)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("%s: two encodings differ", s.name)
			}
		}
	}
}

// bodyLike implements assist.Body by embedding one, but is no type the
// codec knows.
type bodyLike struct{ assist.RequestClosed }

func TestEncodeRefusesUnknownBodies(t *testing.T) {
	for name, b := range map[string]assist.Body{"nil": nil, "foreign": bodyLike{}} {
		e := envelope("50", b)
		if data, err := eventcodec.Encode(e); err == nil {
			t.Errorf("%s body: encoded to %x", name, data)
		}
	}
}

func TestEncodeRefusesInvalidUTF8(t *testing.T) {
	e := envelope("51", assist.InfoProvided{Answer: "\xff"})
	if data, err := eventcodec.Encode(e); err == nil {
		t.Fatalf("encoded invalid UTF-8 to %x", data)
	}
}

func mustEncode(tb testing.TB, e assist.Event) []byte {
	tb.Helper()
	data, err := eventcodec.Encode(e)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestDecodeRefuses(t *testing.T) {
	closed := envelope("60", assist.RequestClosed{})
	noID, noCase := closed, closed
	noID.ID, noCase.CaseID = "", ""
	for _, e := range []assist.Event{noID, noCase} {
		if _, err := eventcodec.Encode(e); err == nil {
			t.Errorf("encoded an event without id or case id: %+v", e)
		}
	}
	valid := mustEncode(t, closed)

	// Hand-made wire bytes: an event with an id, a case id, a reason that
	// is not UTF-8 and a RequestClosed body.
	var badUTF8 []byte
	badUTF8 = protowire.AppendTag(badUTF8, 1, protowire.BytesType)
	badUTF8 = protowire.AppendString(badUTF8, "id")
	badUTF8 = protowire.AppendTag(badUTF8, 2, protowire.BytesType)
	badUTF8 = protowire.AppendString(badUTF8, "case")
	badUTF8 = protowire.AppendTag(badUTF8, 6, protowire.BytesType)
	badUTF8 = protowire.AppendString(badUTF8, "\xff\xfe")
	badUTF8 = protowire.AppendTag(badUTF8, 34, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, nil)

	tests := []struct {
		name string
		typ  string
		data []byte
	}{
		{"nil", "RequestClosed", nil},
		{"empty", "RequestClosed", []byte{}},
		{"garbage", "RequestClosed", []byte{0xff, 0xff, 0xff, 0xff}},
		{"truncated varint", "RequestClosed", []byte{0x08, 0x80}},
		{"length past the end", "RequestClosed", []byte{0x0a, 0x7f, 'i', 'd'}},
		{"JSON", "RequestClosed", []byte(`{"id":"x","case_id":"y","request_closed":{}}`)},
		{"body of another type", "RequestApproved", valid},
		{"empty type", "", valid},
		{"unknown type", "RequestTeleported", valid},
		{"type in other case", "requestclosed", valid},
		{"missing id", "RequestClosed", mustMarshal(t, &evav1.Event{CaseId: "case", Body: &evav1.Event_RequestClosed{RequestClosed: &evav1.RequestClosed{}}})},
		{"missing case id", "RequestClosed", mustMarshal(t, &evav1.Event{Id: "id", Body: &evav1.Event_RequestClosed{RequestClosed: &evav1.RequestClosed{}}})},
		{"no body", "RequestClosed", mustMarshal(t, &evav1.Event{Id: "id", CaseId: "case"})},
		{"no body, empty type", "", mustMarshal(t, &evav1.Event{Id: "id", CaseId: "case"})},
		{"reason not UTF-8", "RequestClosed", badUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := eventcodec.Decode(tt.typ, tt.data)
			if err == nil {
				t.Fatalf("decoded %+v", e)
			}
			if !reflect.DeepEqual(e, assist.Event{}) {
				t.Fatalf("error %v came with a non-zero event %+v", err, e)
			}
			if !strings.Contains(err.Error(), tt.typ) {
				t.Fatalf("error %q does not name the type %q", err, tt.typ)
			}
		})
	}
	// The hand-made bytes are refused for their reason only.
	fixed := slices.Clone(badUTF8)
	i := bytes.Index(fixed, []byte("\xff\xfe"))
	copy(fixed[i:], "ok")
	if _, err := eventcodec.Decode("RequestClosed", fixed); err != nil {
		t.Fatalf("the hand-made event with a valid reason: %v", err)
	}
}

// Every strict prefix of an encoding misses or cuts the body, which is
// encoded last: none decodes.
func TestDecodeRefusesTruncations(t *testing.T) {
	for _, s := range samples() {
		data := mustEncode(t, s.e)
		for n := range len(data) {
			if e, err := eventcodec.Decode(s.name, data[:n]); err == nil {
				t.Fatalf("%s: the first %d of %d bytes decoded to %+v", s.name, n, len(data), e)
			}
		}
	}
}

// Any single-byte change either fails to decode or decodes to an event of
// the subject's type; it never panics.
func TestDecodeCorruptionsNeverPanic(t *testing.T) {
	for _, s := range samples() {
		data := mustEncode(t, s.e)
		for i := range data {
			for _, v := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff, data[i] ^ 0x20} {
				mutated := slices.Clone(data)
				mutated[i] = v
				e, err := eventcodec.Decode(s.name, mutated)
				if err == nil && e.Type() != s.name {
					t.Fatalf("%s with byte %d = %#x decoded to a %s", s.name, i, v, e.Type())
				}
			}
		}
	}
}

// Events written today decode in every later version: the golden files are
// today's bytes. Run with -update only when adding an event type.
func TestGolden(t *testing.T) {
	for _, s := range samples() {
		path := filepath.Join("testdata", "golden", s.name+".binpb")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, mustEncode(t, s.e), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestGolden -update once to create it)", err)
		}
		got, err := eventcodec.Decode(s.name, data)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !reflect.DeepEqual(got, s.e) {
			t.Fatalf("%s\n got %#v\nwant %#v", path, got, s.e)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range samples() {
		data := mustEncode(f, s.e)
		f.Add(s.name, data)
		f.Add("RequestApproved", data) // mostly the wrong type
		f.Add(s.name, data[:len(data)/2])
	}
	for _, e := range variants() {
		f.Add(e.Type(), mustEncode(f, e))
	}
	f.Add("RequestClosed", []byte{})
	f.Add("RequestClosed", []byte{0xff, 0xff, 0xff})
	f.Add("", []byte{0x0a, 0x02, 'i', 'd', 0x12, 0x01, 'c'})
	f.Add("RequestAmended", []byte{0x0a, 0x01, 'i', 0x12, 0x01, 'c', 0xaa, 0x01, 0x02, 0x2a, 0x00})
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e, err := eventcodec.Decode(typ, data)
		if err != nil {
			if !reflect.DeepEqual(e, assist.Event{}) {
				t.Fatalf("error %v came with a non-zero event %+v", err, e)
			}
			return
		}
		if e.Type() != typ {
			t.Fatalf("decoded a %s for type %q", e.Type(), typ)
		}
		if e.ID == "" || e.CaseID == "" {
			t.Fatalf("decoded an event without id or case id: %+v", e)
		}
		again, err := eventcodec.Encode(e)
		if err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
		e2, err := eventcodec.Decode(typ, again)
		if err != nil {
			t.Fatalf("a re-encoded event does not decode: %v", err)
		}
		if !reflect.DeepEqual(e2, e) {
			t.Fatalf("re-encoding changed the event\n got %#v\nwant %#v", e2, e)
		}
		if third, err := eventcodec.Encode(e2); err != nil || !bytes.Equal(third, again) {
			t.Fatalf("encoding is not stable: %v", err)
		}
	})
}

// BenchmarkDecode decodes each sample event (every type) in turn.
func BenchmarkDecode(b *testing.B) {
	var data [][]byte
	var types []string
	for _, s := range samples() {
		data, types = append(data, mustEncode(b, s.e)), append(types, s.e.Type())
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := eventcodec.Decode(types[i%len(data)], data[i%len(data)]); err != nil {
			b.Fatal(err)
		}
	}
}
