package assist_test

import (
	"math"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

func TestDefaultPolicy(t *testing.T) {
	p := assist.DefaultPolicy()
	if p.Version == "" || p.ClaimTTL <= 0 || p.CaseCapUSDCents <= 0 {
		t.Fatalf("policy %+v", p)
	}
	for _, c := range assist.Categories {
		v, ok := p.CategoryCapsUSDCents[c]
		if !ok || v <= 0 || v > p.CaseCapUSDCents {
			t.Errorf("category %s: cap %d (set %v)", c, v, ok)
		}
	}
	for _, u := range assist.Urgencies {
		if p.Deadlines[u] <= 0 {
			t.Errorf("urgency %s: no deadline", u)
		}
	}
	// Each call returns its own maps.
	p.CategoryCapsUSDCents[assist.Shelter] = 1
	if assist.DefaultPolicy().CategoryCapsUSDCents[assist.Shelter] != 500_000 {
		t.Fatal("DefaultPolicy shares its cap map between calls")
	}
}

func TestCap(t *testing.T) {
	p := assist.Policy{CaseCapUSDCents: 1_000_000, CategoryCapsUSDCents: map[assist.Category]int64{
		assist.Shelter:  250_000,   // lower: applies
		assist.Medical:  1_000_000, // equal: the case cap applies
		assist.LegalAid: 3_000_000, // higher: the case cap applies
	}}
	tests := []struct {
		p     assist.Policy
		c     assist.Category
		cents int64
		name  string
	}{
		{p, assist.Shelter, 250_000, "category cap for shelter (2,500.00 USD)"},
		{p, assist.Medical, 1_000_000, "case cap (10,000.00 USD)"},
		{p, assist.LegalAid, 1_000_000, "case cap (10,000.00 USD)"},
		{p, assist.Other, 1_000_000, "case cap (10,000.00 USD)"},
		{assist.Policy{CaseCapUSDCents: 7}, assist.Shelter, 7, "case cap (0.07 USD)"},
		{assist.DefaultPolicy(), assist.TravelDocuments, 100_000, "category cap for travel_documents (1,000.00 USD)"},
		{assist.DefaultPolicy(), assist.Category("unknown"), 2_000_000, "case cap (20,000.00 USD)"},
	}
	for _, tt := range tests {
		cents, name := tt.p.Cap(tt.c)
		if cents != tt.cents || name != tt.name {
			t.Errorf("Cap(%s) = %d, %q; want %d, %q", tt.c, cents, name, tt.cents, tt.name)
		}
	}
}

func TestDeadline(t *testing.T) {
	custom := assist.Policy{Deadlines: map[assist.Urgency]time.Duration{assist.Critical: time.Hour}}
	tests := []struct {
		p    assist.Policy
		u    assist.Urgency
		want time.Duration
	}{
		{assist.DefaultPolicy(), assist.Critical, 4 * time.Hour},
		{assist.DefaultPolicy(), assist.Urgent, 24 * time.Hour},
		{assist.DefaultPolicy(), assist.Routine, 72 * time.Hour},
		{assist.DefaultPolicy(), assist.Urgency("unknown"), 72 * time.Hour},
		{custom, assist.Critical, time.Hour},
		{custom, assist.Urgent, 72 * time.Hour}, // missing: the routine default
		{assist.Policy{}, assist.Critical, 72 * time.Hour},
	}
	for _, tt := range tests {
		if got := tt.p.Deadline(tt.u, t0); !got.Equal(t0.Add(tt.want)) {
			t.Errorf("Deadline(%s) = %v, want %v", tt.u, got, t0.Add(tt.want))
		}
	}
}

func TestFormatUSD(t *testing.T) {
	tests := []struct {
		cents int64
		want  string
	}{
		{0, "0.00 USD"},
		{5, "0.05 USD"},
		{99, "0.99 USD"},
		{100, "1.00 USD"},
		{123456, "1,234.56 USD"},
		{99_999_99, "99,999.99 USD"},
		{100_000_00, "100,000.00 USD"},
		{1_000_000_00, "1,000,000.00 USD"},
		{-5, "-0.05 USD"},
		{-123456, "-1,234.56 USD"},
		{-100_000_00, "-100,000.00 USD"},
		{math.MaxInt64, "92,233,720,368,547,758.07 USD"},
		{math.MinInt64 + 1, "-92,233,720,368,547,758.07 USD"},
	}
	for _, tt := range tests {
		if got := assist.FormatUSD(tt.cents); got != tt.want {
			t.Errorf("FormatUSD(%d) = %q, want %q", tt.cents, got, tt.want)
		}
	}
}

func TestFormatUSDMinInt64(t *testing.T) {
	if got, want := assist.FormatUSD(math.MinInt64), "-92,233,720,368,547,758.08 USD"; got != want {
		t.Fatalf("FormatUSD(MinInt64) = %q, want %q", got, want)
	}
}
