package wire

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Progress draws a progress bar of a long walk of the log on w (stderr):
// redrawn in place at most ten times a second on a terminal, a plain line
// every few seconds otherwise (a log file, a pipe), so that it never
// floods what it is written to.
type Progress struct {
	w     io.Writer
	what  string
	tty   bool
	start time.Time
	drawn time.Time
	every time.Duration
	done  uint64
}

// NewProgress returns a progress bar of what ("replay intake", ...) on w;
// a bar when w is a terminal.
func NewProgress(w io.Writer, what string) *Progress {
	p := &Progress{w: w, what: what, start: time.Now(), every: 5 * time.Second}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, 100*time.Millisecond
		}
	}
	return p
}

// Update reports done of total events; it draws when it is time to.
func (p *Progress) Update(done, total uint64) {
	if p == nil {
		return
	}
	p.done = done
	if now := time.Now(); now.Sub(p.drawn) >= p.every {
		p.drawn = now
		p.draw(done, total, false)
	}
}

// Finish draws the final state and ends the line.
func (p *Progress) Finish(done uint64) {
	if p == nil {
		return
	}
	p.draw(done, done, true)
}

func (p *Progress) draw(done, total uint64, final bool) {
	elapsed := time.Since(p.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	frac := 1.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	if !p.tty {
		if final {
			fmt.Fprintf(p.w, "%s: %d events in %s (%.0f events/s)\n", p.what, done, elapsed.Round(time.Millisecond), rate)
		} else {
			fmt.Fprintf(p.w, "%s: %d/%d events (%.0f%%, %.0f events/s)\n", p.what, done, total, 100*frac, rate)
		}
		return
	}
	const width = 30
	n := int(frac * width)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %d/%d events, %.0f events/s%s", p.what,
		strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, done, total, rate, end)
}
