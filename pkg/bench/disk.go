package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// diskSample is what the block device under a directory had done at one
// moment, from /proc/diskstats (Linux): writes and cache flushes
// completed, and the milliseconds the device spent on each. A durable
// append is a write and a flush, so their latency says how fast the
// device itself was during a phase, apart from the CPUs. ok is false
// elsewhere, and for a directory on no block device (tmpfs, overlay).
type diskSample struct {
	writes, writeMS, flushes, flushMS uint64
	at                                time.Time
	ok                                bool
}

// DiskPhase is the block device's work over a phase: writes and cache
// flushes a second, and the mean time of each as the device counted it.
type DiskPhase struct {
	WritesPerSec, FlushesPerSec float64
	WriteLatency, FlushLatency  time.Duration
}

// OnBlockDevice reports whether dir is on a block device, whose work
// over the lifecycle phase the bench reports (Linux).
func OnBlockDevice(dir string) bool {
	_, _, ok := blockDevice(dir)
	return ok
}

// blockDevice is the device number of the file system under dir; ok is
// false when dir cannot be read, or its file system is on no block device
// (major 0: tmpfs, overlay).
func blockDevice(dir string) (major, minor uint32, ok bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return 0, 0, false
	}
	dev := uint64(st.Dev) // int32 on some systems
	major, minor = unix.Major(dev), unix.Minor(dev)
	return major, minor, major != 0
}

func sampleDisk(dir string) diskSample {
	major, minor, ok := blockDevice(dir)
	if !ok {
		return diskSample{}
	}
	data, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return diskSample{}
	}
	return parseDiskstats(string(data), major, minor, time.Now())
}

// parseDiskstats finds the device major:minor in the text of
// /proc/diskstats. Its fields after the name: 4 writes completed, 7
// milliseconds writing, 15 flushes completed, 16 milliseconds flushing
// (the flush fields since Linux 5.5).
func parseDiskstats(text string, major, minor uint32, at time.Time) diskSample {
	maj, mnr := strconv.FormatUint(uint64(major), 10), strconv.FormatUint(uint64(minor), 10)
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 20 || f[0] != maj || f[1] != mnr {
			continue
		}
		var v [4]uint64
		for i, k := range []int{7, 10, 18, 19} {
			n, err := strconv.ParseUint(f[k], 10, 64)
			if err != nil {
				return diskSample{}
			}
			v[i] = n
		}
		return diskSample{writes: v[0], writeMS: v[1], flushes: v[2], flushMS: v[3], at: at, ok: true}
	}
	return diskSample{}
}

// diskPhase is the device's work between two samples; zero when either
// sample is missing or nothing was written.
func diskPhase(from, to diskSample) DiskPhase {
	span := to.at.Sub(from.at).Seconds()
	if !from.ok || !to.ok || span <= 0 || to.writes <= from.writes {
		return DiskPhase{}
	}
	mean := func(ms, n uint64) time.Duration {
		if n == 0 {
			return 0
		}
		return time.Duration(ms) * time.Millisecond / time.Duration(n)
	}
	w, f := to.writes-from.writes, to.flushes-from.flushes
	return DiskPhase{
		WritesPerSec: float64(w) / span, FlushesPerSec: float64(f) / span,
		WriteLatency: mean(to.writeMS-from.writeMS, w), FlushLatency: mean(to.flushMS-from.flushMS, f),
	}
}
