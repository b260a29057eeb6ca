package web

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Charts are SVG drawn here, on the server: no script, a few kilobytes,
// readable at 360 px (they scale with their viewBox), each with a text
// title and a table of its numbers for screen readers.

// Chart geometry (viewBox units).
const (
	chartW, chartH = 520.0, 260.0
	padL, padR     = 64.0, 16.0
	padT, padB     = 12.0, 40.0
)

// tick is a labelled mark on an axis; Anchor aligns its label (start,
// middle, end) so that the labels at the ends stay inside the chart.
type tick struct {
	Pos    float64
	Label  string
	Anchor string
}

// burnChart is a fund's burn-down: paid and reserved stacked over time
// under the allocation, which steps with each change of it, and the
// available amount as the line that burns down.
type burnChart struct {
	W, H                 float64
	Paid, Reserved       string // area paths
	Available, Allocated string // line paths
	X0, X1, Y0, Y1       float64
	YTicks, XTicks       []tick
	Rows                 []burnRow
	Empty                bool
	Title, Desc          string
	LastAvailableUSD     string
}

type burnRow struct {
	At                               string
	Allocated, Reserved, Paid, Avail int64
}

// burnDownChart draws the fund's history (points in time order) up to
// now.
func burnDownChart(l *loc, f fundJSON, pts []fundPoint, now time.Time) burnChart {
	c := burnChart{W: chartW, H: chartH, X0: padL, X1: chartW - padR, Y0: chartH - padB, Y1: padT,
		Title: l.T("chart.burn.title", "Name", f.Name)}
	type pt struct {
		t                      time.Time
		alloc, res, paid, avai int64
	}
	var ps []pt
	for _, p := range pts {
		t, ok := parseTime(p.At)
		if !ok {
			continue
		}
		ps = append(ps, pt{t, p.AllocatedCents, p.ReservedCents, p.PaidCents, p.AvailableCents})
		c.Rows = append(c.Rows, burnRow{At: p.At, Allocated: p.AllocatedCents, Reserved: p.ReservedCents, Paid: p.PaidCents, Avail: p.AvailableCents})
	}
	if len(ps) == 0 {
		created, ok := parseTime(f.CreatedAt)
		if !ok {
			created = now
		}
		ps = append(ps, pt{created, f.AllocatedCents, f.ReservedCents, f.PaidCents, f.AvailableCents})
	}
	// The state now is the fund as it is.
	last := ps[len(ps)-1]
	if now.After(last.t) {
		ps = append(ps, pt{now, f.AllocatedCents, f.ReservedCents, f.PaidCents, f.AvailableCents})
	}
	c.Empty = len(c.Rows) <= 1 && f.ReservedCents == 0 && f.PaidCents == 0
	t0, t1 := ps[0].t, ps[len(ps)-1].t
	if !t1.After(t0) {
		t1 = t0.Add(time.Hour)
	}
	var top int64 = 1
	for _, p := range ps {
		top = max(top, p.alloc)
	}
	x := func(t time.Time) float64 {
		return c.X0 + (c.X1-c.X0)*float64(t.Sub(t0))/float64(t1.Sub(t0))
	}
	y := func(cents int64) float64 { return c.Y0 - (c.Y0-c.Y1)*float64(cents)/float64(top) }
	// Step paths: a value holds until the next change. The tops of paid
	// and of reserved (stacked on paid), the available and the allocated
	// lines.
	series := []func(pt) int64{
		func(p pt) int64 { return p.paid },
		func(p pt) int64 { return p.paid + p.res },
		func(p pt) int64 { return p.avai },
		func(p pt) int64 { return p.alloc },
	}
	steps := make([][]string, len(series))
	for i, p := range ps {
		xi := x(p.t)
		for k, v := range series {
			if i > 0 {
				steps[k] = append(steps[k], pair(xi, y(v(ps[i-1]))))
			}
			steps[k] = append(steps[k], pair(xi, y(v(p))))
		}
	}
	paidTop, resTop := steps[0], steps[1]
	base := pair(x(t1), c.Y0) + " L" + pair(x(t0), c.Y0)
	c.Paid = "M" + strings.Join(paidTop, " L") + " L" + base + " Z"
	// Reserved sits on paid: its top forward, then paid's top backward.
	back := make([]string, len(paidTop))
	for i := range paidTop {
		back[i] = paidTop[len(paidTop)-1-i]
	}
	c.Reserved = "M" + strings.Join(resTop, " L") + " L" + strings.Join(back, " L") + " Z"
	c.Available = "M" + strings.Join(steps[2], " L")
	c.Allocated = "M" + strings.Join(steps[3], " L")
	for i := 0; i <= 4; i++ {
		v := top * int64(i) / 4
		c.YTicks = append(c.YTicks, tick{Pos: y(v), Label: compactUSD(v)})
	}
	for i := 0; i <= 2; i++ {
		t := t0.Add(time.Duration(int64(t1.Sub(t0)) * int64(i) / 2))
		c.XTicks = append(c.XTicks, tick{Pos: x(t), Label: t.UTC().Format("01-02 15:04"), Anchor: [...]string{"start", "middle", "end"}[i]})
	}
	c.LastAvailableUSD = usd(f.AvailableCents)
	c.Desc = l.T("chart.burn.desc", "Allocated", usd(f.AllocatedCents), "Reserved", usd(f.ReservedCents),
		"Paid", usd(f.PaidCents), "Available", usd(f.AvailableCents))
	return c
}

func pair(x, y float64) string {
	return strconv.FormatFloat(x, 'f', 1, 64) + "," + strconv.FormatFloat(y, 'f', 1, 64)
}

// compactUSD writes an axis label: 1.5M, 250k, 900.
func compactUSD(cents int64) string {
	d := float64(cents) / 100
	switch {
	case d >= 1e6:
		return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", d/1e6), "0"), ".0") + "M"
	case d >= 1e3:
		return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", d/1e3), "0"), ".") + "k"
	}
	return strconv.FormatFloat(d, 'f', 0, 64)
}

// fundBar is one fund as a bar split into paid, reserved and available.
type fundBar struct {
	PaidW, ReservedW, AvailW float64
	ReservedX, AvailX        float64
}

func newFundBar(f fundJSON) fundBar {
	const w = 200.0
	total := float64(max(f.AllocatedCents, 1))
	b := fundBar{PaidW: w * float64(f.PaidCents) / total, ReservedW: w * float64(f.ReservedCents) / total}
	b.ReservedX = b.PaidW
	b.AvailX = b.PaidW + b.ReservedW
	b.AvailW = max(w-b.AvailX, 0)
	return b
}

// ageBuckets are the queue chart's ages, upper bounds (the last is open).
var ageBuckets = []time.Duration{time.Hour, 4 * time.Hour, 24 * time.Hour, 72 * time.Hour}

// ageChart is the queue's age by urgency: for each urgency a bar split by
// how long its cases have waited.
type ageChart struct {
	W, H    float64
	Rows    []ageRow
	Legend  []ageLegend
	Total   int
	Title   string
	Buckets []string
	XTicks  []tick
	X0, X1  float64
}

type ageRow struct {
	Urgency string
	Label   string
	Y       float64
	Count   int
	Counts  []int
	Segs    []ageSeg
}

type ageSeg struct {
	X, W  float64
	Color string
	N     int
}

type ageLegend struct {
	Label, Color string
	X, Y         float64
}

// ageColors have a contrast of at least 3:1 on white (WCAG 1.4.11), from
// young to old.
var ageColors = []string{"#2f6f4f", "#6b6a00", "#a35200", "#b3261e", "#5c1630"}

// queueAgeChart counts the queue's cases by urgency and age.
func queueAgeChart(l *loc, items []queueItem, now time.Time) ageChart {
	c := ageChart{W: 360, H: 214, X0: 76, X1: 360 - padR, Title: l.T("chart.age.title")}
	labels := []string{l.T("chart.age.b0"), l.T("chart.age.b1"), l.T("chart.age.b2"), l.T("chart.age.b3"), l.T("chart.age.b4")}
	c.Buckets = labels
	idx := map[string]int{}
	for i, u := range urgencies() {
		idx[u] = i
		c.Rows = append(c.Rows, ageRow{Urgency: u, Label: l.T("urgency." + u), Counts: make([]int, len(labels))})
	}
	for _, it := range items {
		i, ok := idx[it.Urgency]
		if !ok {
			continue
		}
		created, ok := parseTime(it.CreatedAt)
		if !ok {
			continue
		}
		age := now.Sub(created)
		b := len(ageBuckets)
		for j, lim := range ageBuckets {
			if age < lim {
				b = j
				break
			}
		}
		c.Rows[i].Counts[b]++
		c.Rows[i].Count++
		c.Total++
	}
	most := 1
	for _, r := range c.Rows {
		most = max(most, r.Count)
	}
	for i := range c.Rows {
		r := &c.Rows[i]
		r.Y = 14 + float64(i)*44
		x := c.X0
		for j, n := range r.Counts {
			if n == 0 {
				continue
			}
			w := (c.X1 - c.X0) * float64(n) / float64(most)
			r.Segs = append(r.Segs, ageSeg{X: x, W: w, Color: ageColors[j], N: n})
			x += w
		}
	}
	for j, lab := range labels {
		c.Legend = append(c.Legend, ageLegend{Label: lab, Color: ageColors[j], X: float64(j%3) * 120, Y: float64(j/3) * 20})
	}
	for i := 0; i <= 2; i++ {
		n := most * i / 2
		if i == 1 && (n == 0 || n == most) {
			continue // no middle mark that repeats an end
		}
		c.XTicks = append(c.XTicks, tick{Pos: c.X0 + (c.X1-c.X0)*float64(n)/float64(most), Label: strconv.Itoa(n),
			Anchor: [...]string{"start", "middle", "end"}[i]})
	}
	return c
}
