package intake

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

// trickyStrings are strings every part of encoding/json's escaping
// touches: quotes, backslashes, control characters, HTML, U+2028/2029,
// invalid UTF-8, multi-byte runes, DEL.
var trickyStrings = []string{
	"", "a", "ana", "BGD-DHAKA", `"`, `\`, `a"b\c`, "<script>&amp;</script>", "\x00\x01\x08\x0c\x1f", "\x7f",
	"\t\n\r\b\f", "\u2028\u2029", "x\u2028y", "\xff", "a\xfe\xffb", "\xe2\x80", "é日本語", "😀", "\u00e9\u0301",
	"01936d7e-8a3b-7c2d-9e4f-0a1b2c3d4e5f", "tab\there", "/slash/", "'single'", "\ufffd", "\xed\xa0\x80",
}

// stateTimes are times of many forms: zero, UTC and other offsets and
// zones, with and without nanoseconds, the last year JSON writes and
// the first it does not, before year 0.
func stateTimes(r *rand.Rand) time.Time {
	zones := []*time.Location{time.UTC, time.FixedZone("", 5*3600+1800), time.FixedZone("X", -7*3600), time.Local}
	switch r.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	case 2:
		return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // json.Marshal refuses it
	case 3:
		return time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) // and this
	case 4:
		return time.Unix(r.Int64N(4e9), 0).In(zones[r.IntN(len(zones))])
	default:
		return time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(zones[r.IntN(len(zones))])
	}
}

func randomCase(r *rand.Rand) *assist.Case {
	s := func() string {
		if r.IntN(4) == 0 {
			b := make([]byte, r.IntN(12))
			for i := range b {
				b[i] = byte(r.IntN(256))
			}
			return string(b)
		}
		return trickyStrings[r.IntN(len(trickyStrings))]
	}
	bs := func() []byte {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, r.IntN(70))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	ss := func() []string {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		out := make([]string, 1+r.IntN(3))
		for i := range out {
			out[i] = s()
		}
		return out
	}
	i64 := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return -r.Int64()
		}
		return r.Int64()
	}
	c := &assist.Case{
		ID: s(), Requester: s(), Authors: ss(), Post: s(), Category: assist.Category(s()), Urgency: assist.Urgency(s()),
		AmountCents: i64(), Justification: s(), Beneficiary: assist.Sealed{KeyID: s(), Ciphertext: bs()},
		BeneficiaryRefHash: bs(), PayeeID: s(), Deadline: stateTimes(r), Escalated: r.IntN(2) == 0, Warned: r.IntN(2) == 0,
		State: assist.State(s()), PersonalDataErased: r.IntN(2) == 0, ClaimedBy: s(), ClaimExpiresAt: stateTimes(r),
		Question: s(), ApprovedCents: i64(), ApprovedBy: s(), Amenders: ss(), PolicyVersion: s(), FundID: s(),
		HoldID: s(), PayoutID: s(), PayoutAttempt: int(i64()), PayoutAccount: s(), PossibleDuplicateOf: ss(),
		ReleasedHolds: ss(), CreatedAt: stateTimes(r), UpdatedAt: stateTimes(r), Version: r.Uint64(), Events: int(i64()),
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		c.Approvals = []assist.Approval{}
	default:
		for range 1 + r.IntN(2) {
			c.Approvals = append(c.Approvals, assist.Approval{Approver: s(), AmountCents: i64(), At: stateTimes(r), PolicyVersion: s()})
		}
	}
	return c
}

// sameAsMarshal fails unless appendState(prefix, c) is prefix followed by
// json.Marshal(toStored(c)), or fails as it does.
func sameAsMarshal(t *testing.T, c *assist.Case) {
	t.Helper()
	want, wantErr := json.Marshal(toStored(c))
	prefix := []byte("prefix")
	got, err := appendState(bytes.Clone(prefix), c)
	if wantErr != nil || err != nil {
		if wantErr == nil || err == nil || err.Error() != wantErr.Error() {
			t.Fatalf("case %+v: error %v, json.Marshal's %v", c, err, wantErr)
		}
		return
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("case %+v:\n got %s\nwant %s", c, got, want)
	}
	if s, err := encodeState(c); err != nil || s != string(want) {
		t.Fatalf("encodeState: %s %v\nwant %s", s, err, want)
	}
}

// TestStateJSONIsJSONMarshal: the stored state is, byte for byte, what
// json.Marshal made of it before appendState (rows written by either
// read the same, and a rebuild writes the rows the consumer wrote).
func TestStateJSONIsJSONMarshal(t *testing.T) {
	sameAsMarshal(t, &assist.Case{})
	r := rand.New(rand.NewPCG(9, 33))
	for range 20_000 {
		sameAsMarshal(t, randomCase(r))
	}
	// A case as the log makes it, round-tripped through the stored form.
	at := time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	c := &assist.Case{ID: "01936d7e-8a3b-7c2d-9e4f-0a1b2c3d4e5f", Requester: "ana", Authors: []string{"ana"}, Post: "BGD-DHAKA",
		Category: assist.Shelter, Urgency: assist.Critical, AmountCents: 12_500, Justification: "a bed <tonight> & food",
		Beneficiary: assist.Sealed{KeyID: "k1", Ciphertext: []byte{1, 2, 3, 250}}, BeneficiaryRefHash: []byte("0123456789abcdef0123456789abcdef"),
		Deadline: at.Add(4 * time.Hour), State: assist.StateApproved, Approvals: []assist.Approval{{Approver: "bo", AmountCents: 12_000, At: at, PolicyVersion: "v3"}},
		PolicyVersion: "v3", ReleasedHolds: []string{}, CreatedAt: at, UpdatedAt: at.Add(time.Minute), Version: 42, Events: 3}
	sameAsMarshal(t, c)
	s, err := encodeState(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeState(c.ID, s)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := encodeState(back); again != s {
		t.Fatalf("read back and written again:\n%s\n%s", again, s)
	}
}

// FuzzStateJSON puts the fuzzer's strings, bytes, numbers and times in
// every kind of field and compares appendState with json.Marshal.
func FuzzStateJSON(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s, "x", []byte(s), int64(len(s)), uint64(7), int64(1733100000123456789), 0, true)
	}
	f.Add("", "", []byte(nil), int64(-1), uint64(1<<63), int64(253402300800000000), 3600, false) // 10000-01-01: refused
	f.Add("<&>", "\u2028", []byte{0xff}, int64(1<<62), uint64(0), int64(-62135596800000000), -1800, true)
	f.Fuzz(func(t *testing.T, a, b string, raw []byte, n int64, v uint64, unixNano int64, offset int, flag bool) {
		at := time.Unix(0, unixNano).In(time.FixedZone(a, offset%(24*3600)))
		var list []string
		if flag {
			list = []string{a, b}
		}
		c := &assist.Case{ID: a, Requester: b, Authors: list, Post: a + b, Category: assist.Category(b), Urgency: assist.Urgency(a),
			AmountCents: n, Justification: b + a, Beneficiary: assist.Sealed{KeyID: a, Ciphertext: raw}, BeneficiaryRefHash: raw,
			PayeeID: b, Deadline: at, Escalated: flag, PersonalDataErased: !flag, State: assist.State(a), ClaimedBy: b,
			ClaimExpiresAt: at.Add(time.Duration(n)), Question: a, ApprovedCents: -n, ApprovedBy: a, Amenders: list,
			PolicyVersion: b, FundID: a, HoldID: b, PayoutID: a, PayoutAttempt: int(n), PossibleDuplicateOf: list,
			ReleasedHolds: list, CreatedAt: at, UpdatedAt: at, Version: v, Events: int(n)}
		if flag {
			c.Approvals = []assist.Approval{{Approver: a, AmountCents: n, At: at, PolicyVersion: b}}
		}
		sameAsMarshal(t, c)
	})
}

// BenchmarkStateJSON: the stored state of one case by json.Marshal (as
// before appendState) and by appendState.
func BenchmarkStateJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	cs := make([]*assist.Case, 256)
	for i := range cs {
		for cs[i] = randomCase(r); ; cs[i] = randomCase(r) {
			if _, err := json.Marshal(toStored(cs[i])); err == nil {
				break
			}
		}
	}
	b.Run("marshal", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := json.Marshal(toStored(cs[i%len(cs)])); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for i := 0; b.Loop(); i++ {
			var err error
			if buf, err = appendState(buf[:0], cs[i%len(cs)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
