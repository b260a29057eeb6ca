package audit_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
)

// migrated applies audit's migrations to db and returns the store on it.
func migrated(tb testing.TB, db sqldb.DB) *audit.SQLStore {
	tb.Helper()
	if err := db.Migrate(context.Background(), audit.Migrations); err != nil {
		tb.Fatal(err)
	}
	return audit.NewSQLStore(db)
}

// chained builds archive records for seqs 1..n of the given cases (round
// robin), hashed and chained as the archiver does.
func chained(n int, cases ...string) []audit.Record {
	out := make([]audit.Record, 0, n)
	chain := audit.GenesisChain()
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	for i := range n {
		seq := uint64(i + 1)
		c := cases[i%len(cases)]
		subject := "eva.case." + c + ".RequestSubmitted"
		id := c + "-" + string(rune('a'+i))
		// Binary bytes with zeros and high bytes; seq 2 has an empty body.
		data := []byte{0x00, 0xff, byte(i), 0x0a, 0x00}
		if seq == 2 {
			data = []byte{}
		}
		hash := audit.HashEvent(seq, subject, id, data)
		chain = audit.ChainNext(chain, hash)
		out = append(out, audit.Record{Seq: seq, ID: id, CaseID: c, Type: "RequestSubmitted", Subject: subject,
			At: at.Add(time.Duration(i) * time.Second), Data: data, Hash: hash, Chain: chain})
	}
	return out
}

func insertAll(tb testing.TB, db sqldb.DB, s audit.Store, recs []audit.Record) {
	tb.Helper()
	ctx := context.Background()
	if err := db.Tx(ctx, func(q sqldb.Querier) error {
		for _, r := range recs {
			if err := s.Insert(ctx, q, r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
}

func sameRecord(a, b audit.Record) bool {
	return a.Seq == b.Seq && a.ID == b.ID && a.CaseID == b.CaseID && a.Type == b.Type && a.Subject == b.Subject &&
		a.At.Equal(b.At) && bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Hash, b.Hash) && bytes.Equal(a.Chain, b.Chain)
}

// TestStoreConformance is the Store's conformance suite; it runs against
// every implementation on every driver.
func TestStoreConformance(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		s := migrated(t, db)
		ctx := context.Background()
		const caseA, caseB = "0190f0aa-0000-7000-8000-00000000000a", "0190f0aa-0000-7000-8000-00000000000b"

		t.Run("empty", func(t *testing.T) {
			seq, chain, err := s.Last(ctx, nil)
			if err != nil || seq != 0 || !bytes.Equal(chain, make([]byte, 32)) {
				t.Fatalf("Last of an empty archive = %d %x %v, want 0 and 32 zero bytes", seq, chain, err)
			}
			recs, err := s.Range(ctx, 0, 10)
			if err != nil || len(recs) != 0 {
				t.Fatalf("Range of an empty archive = %v %v", recs, err)
			}
			recs, err = s.Case(ctx, caseA)
			if err != nil || recs == nil || len(recs) != 0 {
				t.Fatalf("Case of an empty archive = %#v %v, want an empty slice", recs, err)
			}
		})

		want := chained(5, caseA, caseB)

		t.Run("a rolled back transaction archives nothing", func(t *testing.T) {
			boom := errors.New("boom")
			err := db.Tx(ctx, func(q sqldb.Querier) error {
				if err := s.Insert(ctx, q, want[0]); err != nil {
					return err
				}
				// The transaction sees its own insert.
				if seq, chain, err := s.Last(ctx, q); err != nil || seq != 1 || !bytes.Equal(chain, want[0].Chain) {
					t.Errorf("Last inside the transaction = %d %x %v, want 1 %x", seq, chain, err, want[0].Chain)
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("Tx = %v, want boom", err)
			}
			if seq, _, _ := s.Last(ctx, nil); seq != 0 {
				t.Fatalf("after rollback the archive is at %d, want 0", seq)
			}
		})

		t.Run("round trip", func(t *testing.T) {
			insertAll(t, db, s, want)
			seq, chain, err := s.Last(ctx, nil)
			if err != nil || seq != 5 || !bytes.Equal(chain, want[4].Chain) {
				t.Fatalf("Last = %d %x %v, want 5 %x", seq, chain, err, want[4].Chain)
			}
			all, err := s.Range(ctx, 0, 100)
			if err != nil || len(all) != 5 {
				t.Fatalf("Range = %d records, %v", len(all), err)
			}
			for i := range want {
				if !sameRecord(all[i], want[i]) {
					t.Errorf("record %d:\n got %+v\nwant %+v", i+1, all[i], want[i])
				}
			}
		})

		t.Run("range pages in order", func(t *testing.T) {
			var got []uint64
			for after := uint64(0); ; {
				page, err := s.Range(ctx, after, 2)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				if len(page) > 2 {
					t.Fatalf("page of %d, limit 2", len(page))
				}
				for _, r := range page {
					got = append(got, r.Seq)
				}
				after = page[len(page)-1].Seq
			}
			if len(got) != 5 || got[0] != 1 || got[4] != 5 {
				t.Fatalf("paged %v, want 1..5", got)
			}
			for i := 1; i < len(got); i++ {
				if got[i] != got[i-1]+1 {
					t.Fatalf("paged %v, want 1..5 in order", got)
				}
			}
		})

		t.Run("case lists only its events in order", func(t *testing.T) {
			recs, err := s.Case(ctx, caseB)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 2 || recs[0].Seq != 2 || recs[1].Seq != 4 || !sameRecord(recs[0], want[1]) {
				t.Fatalf("case B: %+v, want seqs 2 and 4", recs)
			}
		})

		t.Run("a sequence is archived once", func(t *testing.T) {
			dup := want[2]
			dup.ID = "other"
			err := db.Tx(ctx, func(q sqldb.Querier) error { return s.Insert(ctx, q, dup) })
			if err == nil {
				t.Fatal("a second record at seq 3 was accepted")
			}
			recs, _ := s.Range(ctx, 2, 1)
			if len(recs) != 1 || !sameRecord(recs[0], want[2]) {
				t.Fatalf("seq 3 after a refused duplicate: %+v", recs)
			}
		})
	})
}
