package assist

import (
	"fmt"
	"strconv"
	"time"
)

// Policy is the configurable rule set that decisions are checked against.
// Every decision event records the Version it was made under.
type Policy struct {
	Version string
	// CaseCapUSDCents caps one case, whatever its category.
	CaseCapUSDCents int64
	// CategoryCapsUSDCents caps one case of a category; a missing category
	// falls back to the case cap.
	CategoryCapsUSDCents map[Category]int64
	// Deadlines by urgency: how long a decision may take after filing.
	Deadlines map[Urgency]time.Duration
	// ClaimTTL is how long an approver holds a claimed case before anyone
	// may claim it again.
	ClaimTTL time.Duration
	// SecondApprovalAboveUSDCents: an approval of more than this needs a
	// second, different approver.
	SecondApprovalAboveUSDCents int64
}

// DefaultPolicy is the policy of a fresh installation.
func DefaultPolicy() Policy {
	return Policy{
		Version:         "default-1",
		CaseCapUSDCents: 2_000_000, // 20,000.00 USD
		CategoryCapsUSDCents: map[Category]int64{
			Shelter:            500_000,
			Medical:            1_000_000,
			Psychosocial:       300_000,
			FoodBasicNeeds:     200_000,
			LegalAid:           500_000,
			TravelDocuments:    100_000,
			RepatriationTravel: 500_000,
			ReintegrationGrant: 1_000_000,
			FamilyTracing:      200_000,
			Other:              200_000,
		},
		Deadlines: map[Urgency]time.Duration{
			Critical: 4 * time.Hour,
			Urgent:   24 * time.Hour,
			Routine:  72 * time.Hour,
		},
		ClaimTTL:                    30 * time.Minute,
		SecondApprovalAboveUSDCents: 500_000, // 5,000.00 USD
	}
}

// Cap is the limit that applies to a case of the category, and its name
// for error messages.
func (p Policy) Cap(c Category) (cents int64, name string) {
	if v, ok := p.CategoryCapsUSDCents[c]; ok && v < p.CaseCapUSDCents {
		return v, fmt.Sprintf("category cap for %s (%s)", c, FormatUSD(v))
	}
	return p.CaseCapUSDCents, fmt.Sprintf("case cap (%s)", FormatUSD(p.CaseCapUSDCents))
}

// Deadline is when a decision on a case filed at t with urgency u is due.
func (p Policy) Deadline(u Urgency, t time.Time) time.Time {
	d, ok := p.Deadlines[u]
	if !ok {
		d = 72 * time.Hour
	}
	return t.Add(d)
}

// PolicySeen is the part of the policy a decision depended on.
type PolicySeen struct {
	Version                     string
	CaseCapUSDCents             int64
	CategoryCapUSDCents         int64
	SecondApprovalAboveUSDCents int64
}

func (p Policy) seen(c Category) PolicySeen {
	capCents, _ := p.Cap(c)
	return PolicySeen{Version: p.Version, CaseCapUSDCents: p.CaseCapUSDCents, CategoryCapUSDCents: capCents,
		SecondApprovalAboveUSDCents: p.SecondApprovalAboveUSDCents}
}

// needsSecond reports whether an approval of cents needs a second approver.
func (p Policy) needsSecond(cents int64) bool {
	return p.SecondApprovalAboveUSDCents > 0 && cents > p.SecondApprovalAboveUSDCents
}

// FormatUSD renders cents as "1,234.56 USD".
func FormatUSD(cents int64) string {
	sign := ""
	u := uint64(cents)
	if cents < 0 {
		sign, u = "-", uint64(-(cents+1))+1 // no overflow at MinInt64
	}
	whole := strconv.FormatUint(u/100, 10)
	var b []byte
	for i, r := range []byte(whole) {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, r)
	}
	return fmt.Sprintf("%s%s.%02d USD", sign, b, u%100)
}
