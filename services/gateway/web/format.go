package web

import (
	"errors"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

// funcs are the templates' helpers.
func funcs(a *assets) template.FuncMap {
	return template.FuncMap{
		"usd":   usd,
		"ts":    timestamp,
		"rel":   relative,
		"short": short,
		"asset": a.URL,
		"dict":  dict,
		"open":  func(status string) bool { return assist.State(status).Open() },
	}
}

// usd writes cents as dollars with cents and thousands separators:
// 125000 → "1,250.00". Amounts read the same in every language.
func usd(cents int64) string {
	neg := cents < 0
	if neg {
		cents = -cents
	}
	whole := strconv.FormatInt(cents/100, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	fmt.Fprintf(&b, ".%02d", cents%100)
	return b.String()
}

// errAmount is an amount that is not dollars with at most two decimals.
var errAmount = errors.New("not an amount")

// parseUSD reads an amount typed in dollars — "250", "250.5", "1,250.00",
// "1 250,50" — into cents.
func parseUSD(s string) (int64, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\u00a0', '\u202f', '_', '$':
			return -1
		}
		return r
	}, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "USD")))
	if s == "" {
		return 0, errAmount
	}
	// A comma is a decimal mark when it is the only mark and one or two
	// digits follow it; otherwise commas group thousands.
	if i := strings.LastIndexByte(s, ','); i >= 0 && !strings.Contains(s, ".") && strings.Count(s, ",") == 1 && len(s)-i-1 <= 2 && len(s)-i-1 > 0 {
		s = s[:i] + "." + s[i+1:]
	}
	s = strings.ReplaceAll(s, ",", "")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" {
		whole = "0"
	}
	if len(frac) > 2 || strings.ContainsAny(whole+frac, "+-eE") {
		return 0, errAmount
	}
	for len(frac) < 2 {
		frac += "0"
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/100-1 {
		return 0, errAmount
	}
	f, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, errAmount
	}
	return w*100 + f, nil
}

// parseTime reads an API time.
func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// timestamp writes an API time as "2026-01-31 14:05 UTC": the posts are in
// every time zone, so times are shown in one.
func timestamp(s string) string {
	t, ok := parseTime(s)
	if !ok {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04") + " UTC"
}

// relative says how far an API time is from now: "in 3 h 20 min",
// "2 d ago".
func relative(l *loc, s string, now time.Time) string {
	t, ok := parseTime(s)
	if !ok {
		return ""
	}
	d := t.Sub(now)
	if d >= 0 {
		return l.T("time.in", "D", span(l, d))
	}
	return l.T("time.ago", "D", span(l, -d))
}

// span writes a duration coarsely: "45 min", "3 h 20 min", "2 d 4 h".
func span(l *loc, d time.Duration) string {
	mins := int64(d / time.Minute)
	switch {
	case mins < 1:
		return l.T("time.lessminute")
	case mins < 60:
		return l.T("time.min", "N", mins)
	case mins < 24*60:
		if mins%60 == 0 {
			return l.T("time.h", "N", mins/60)
		}
		return l.T("time.h", "N", mins/60) + " " + l.T("time.min", "N", mins%60)
	default:
		days, hours := mins/(24*60), (mins%(24*60))/60
		if hours == 0 {
			return l.T("time.d", "N", days)
		}
		return l.T("time.d", "N", days) + " " + l.T("time.h", "N", hours)
	}
}

// short is the first block of an id, enough to tell cases apart on a
// screen.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// dict makes a map of pairs, to pass several values to a template.
func dict(pairs ...any) (map[string]any, error) {
	if len(pairs)%2 != 0 {
		return nil, errors.New("dict: odd number of arguments")
	}
	m := make(map[string]any, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		k, ok := pairs[i].(string)
		if !ok {
			return nil, errors.New("dict: keys must be strings")
		}
		m[k] = pairs[i+1]
	}
	return m, nil
}
