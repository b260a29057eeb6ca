package bench

import (
	"runtime"
	"testing"
	"time"
)

// The CPU this process burns shows in its own sample and the machine's.
func TestSampleCPUCountsWhatThisProcessBurns(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("CPU samples read /proc")
	}
	from := sampleCPU()
	if !from.ok {
		t.Fatal("no sample from /proc")
	}
	spin(200 * time.Millisecond)
	to := sampleCPU()
	self, machine := perCase(from, to, 1)
	// At least half the spin is counted (the machine may lend the CPU
	// to others meanwhile; ticks are 10 ms).
	if self < 100*time.Millisecond || self > 10*time.Second {
		t.Errorf("this process burned %v in a 200 ms spin", self)
	}
	if machine < self/2 {
		t.Errorf("the machine was busy %v while this process burned %v", machine, self)
	}
	if s, m := perCase(from, to, 0); s != 0 || m != 0 {
		t.Errorf("per case of no case: %v %v", s, m)
	}
}

// spin keeps one CPU busy for d of this process's CPU time.
func spin(d time.Duration) {
	start, _ := selfCPU()
	for x := 0; ; x++ {
		if x%1_000_000 == 0 {
			if now, _ := selfCPU(); now-start >= d {
				return
			}
		}
	}
}
