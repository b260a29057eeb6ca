package bench

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// architecture Go supports.
const userHZ = 100

// cpuSample is what the CPUs had done at one moment: this process's CPU
// time (user and system) and the machine's busy time (all CPUs, every
// process: EVA, PostgreSQL, the rest), from /proc (Linux). ok is false
// elsewhere.
type cpuSample struct {
	self, machine time.Duration
	ok            bool
}

func sampleCPU() cpuSample {
	self, ok1 := selfCPU()
	machine, ok2 := machineBusy()
	return cpuSample{self: self, machine: machine, ok: ok1 && ok2}
}

// selfCPU is utime+stime of /proc/self/stat (fields 14 and 15).
func selfCPU() (time.Duration, bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count the fields after its closing one.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, false
	}
	return ticks(f[11:13])
}

// machineBusy is the first line of /proc/stat less idle, iowait and
// steal: user, nice, system, irq and softirq (guest time is within user).
func machineBusy() (time.Duration, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	return ticks([]string{f[1], f[2], f[3], f[6], f[7]})
}

func ticks(fields []string) (time.Duration, bool) {
	var n int64
	for _, s := range fields {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		n += v
	}
	return time.Duration(n) * time.Second / userHZ, true
}

// perCase is the CPU spent between two samples, per case completed.
func perCase(from, to cpuSample, cases int) (self, machine time.Duration) {
	if !from.ok || !to.ok || cases == 0 {
		return 0, 0
	}
	return (to.self - from.self) / time.Duration(cases), (to.machine - from.machine) / time.Duration(cases)
}
