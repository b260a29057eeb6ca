package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// fakeDiskstats is /proc/diskstats as a Linux 6 kernel writes it, made up
// for the test: a whole disk (254:0), its partition (254:1), and a device
// of an older kernel without the flush fields (7:0).
const fakeDiskstats = `   7       0 loop0 10 0 20 1 5 0 8 2 0 3 3
 254       0 vda 282659 39160 11651354 161434 6797766 349101 120084408 1092409 0 589664 1583193 150119 116 26727216 35373 2160213 293975
 254       1 vda1 100 0 200 10 4000 10 8000 900 0 50 60 0 0 0 0 300 45
`

func TestFakeDiskstatsGiveTheDevicesWritesAndFlushes(t *testing.T) {
	at := time.Unix(100, 0)
	got := parseDiskstats(fakeDiskstats, 254, 0, at)
	want := diskSample{writes: 6797766, writeMS: 1092409, flushes: 2160213, flushMS: 293975, at: at, ok: true}
	if got != want {
		t.Fatalf("254:0 = %+v, want %+v", got, want)
	}
	if got := parseDiskstats(fakeDiskstats, 254, 1, at); got.writes != 4000 || got.flushes != 300 || !got.ok {
		t.Fatalf("the partition 254:1 = %+v, want its own counters", got)
	}
	for _, dev := range [][2]uint32{{7, 0}, {8, 0}} {
		if got := parseDiskstats(fakeDiskstats, dev[0], dev[1], at); got.ok {
			t.Errorf("%d:%d (no flush fields, or not listed) = %+v, want no sample", dev[0], dev[1], got)
		}
	}
}

func TestDiskPhaseIsTheMeanWriteAndFlushBetweenTwoSamples(t *testing.T) {
	t0 := time.Unix(100, 0)
	from := diskSample{writes: 1000, writeMS: 500, flushes: 100, flushMS: 40, at: t0, ok: true}
	to := diskSample{writes: 5000, writeMS: 1300, flushes: 1100, flushMS: 240, at: t0.Add(2 * time.Second), ok: true}
	got := diskPhase(from, to)
	want := DiskPhase{WritesPerSec: 2000, FlushesPerSec: 500, WriteLatency: 200 * time.Microsecond, FlushLatency: 200 * time.Microsecond}
	if got != want {
		t.Fatalf("diskPhase = %+v, want %+v", got, want)
	}
	if got := diskPhase(from, diskSample{}); got != (DiskPhase{}) {
		t.Errorf("a missing sample gave a phase: %+v", got)
	}
	if got := diskPhase(from, from); got != (DiskPhase{}) {
		t.Errorf("a phase without writes gave a phase: %+v", got)
	}
}

// On Linux, a directory on a block device has a sample, and writing and
// syncing a file there counts.
func TestSampleDiskCountsASyncedWriteUnderTheDirectory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("disk samples read /proc/diskstats")
	}
	dir := t.TempDir()
	if !OnBlockDevice(dir) {
		t.Skipf("%s is on no block device (tmpfs, overlay): nothing to sample", dir)
	}
	from := sampleDisk(dir)
	if !from.ok {
		t.Fatalf("no sample of the device under %s in /proc/diskstats", dir)
	}
	f, err := os.Create(filepath.Join(dir, "synced"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 5 {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	to := sampleDisk(dir)
	if to.writes < from.writes+5 {
		t.Fatalf("five synced writes: the device's writes went %d → %d", from.writes, to.writes)
	}
	// A device without a volatile cache is never asked to flush.
	if from.flushes > 0 && to.flushes <= from.flushes {
		t.Fatalf("five syncs on a device that flushes: flushes %d → %d", from.flushes, to.flushes)
	}
}
