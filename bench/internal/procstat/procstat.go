// Package procstat reads a process's CPU time and memory from /proc (Linux)
// and the bench tool's own CPU time from getrusage.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPU returns the user plus system CPU time process pid has used so far.
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("procstat: read stat of %d: %w", pid, err)
	}
	return parseStat(b)
}

// parseStat extracts utime+stime (fields 14 and 15) from a /proc/PID/stat
// line. The command name (field 2) is in parentheses and may hold spaces, so
// fields are counted after the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("procstat: malformed stat line %q", b)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("procstat: stat line has %d fields after the name, want at least 13", len(f))
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("procstat: bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// Mem is a process's resident memory in bytes.
type Mem struct {
	RSS int64 `json:"rss_bytes"` // VmRSS, now
	HWM int64 `json:"hwm_bytes"` // VmHWM, the peak of VmRSS over the process's life
}

// Memory returns the resident memory of process pid.
func Memory(pid int) (Mem, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Mem{}, fmt.Errorf("procstat: read status of %d: %w", pid, err)
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (Mem, error) {
	var m Mem
	var seen int
	for line := range bytes.Lines(b) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &m.RSS
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &m.HWM
		default:
			continue
		}
		f := bytes.Fields(line)
		if len(f) < 2 {
			return m, fmt.Errorf("procstat: malformed status line %q", line)
		}
		kb, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return m, fmt.Errorf("procstat: malformed status line %q: %w", line, err)
		}
		*dst = kb * 1024
		seen++
	}
	if seen < 2 {
		return m, fmt.Errorf("procstat: VmRSS/VmHWM missing from status (kernel thread or exited process?)")
	}
	return m, nil
}

// SelfCPU returns the user plus system CPU time of the calling process.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Machine is the CPU time of the whole machine (all cores) so far, from the
// "cpu" line of /proc/stat.
type Machine struct {
	Busy time.Duration // user, nice, system, irq and softirq
	Idle time.Duration // idle and iowait
}

// MachineCPU returns the machine's CPU time so far.
func MachineCPU() (Machine, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Machine{}, fmt.Errorf("procstat: read /proc/stat: %w", err)
	}
	return parseProcStat(b)
}

// Sub returns the CPU time between earlier and m.
func (m Machine) Sub(earlier Machine) Machine {
	return Machine{Busy: m.Busy - earlier.Busy, Idle: m.Idle - earlier.Idle}
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat: user nice
// system idle iowait irq softirq [steal guest guest_nice], in ticks. Steal
// (time the hypervisor gave to others) is neither; guest time is already
// counted in user.
func parseProcStat(b []byte) (Machine, error) {
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 || string(f[0]) != "cpu" {
			continue
		}
		if len(f) < 8 {
			return Machine{}, fmt.Errorf("procstat: /proc/stat cpu line has %d fields, want at least 8", len(f))
		}
		var v [7]int64
		for i := range v {
			n, err := strconv.ParseInt(string(f[i+1]), 10, 64)
			if err != nil {
				return Machine{}, fmt.Errorf("procstat: /proc/stat cpu field %d: %w", i+1, err)
			}
			v[i] = n
		}
		tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
		return Machine{Busy: tick(v[0] + v[1] + v[2] + v[5] + v[6]), Idle: tick(v[3] + v[4])}, nil
	}
	return Machine{}, fmt.Errorf("procstat: no cpu line in /proc/stat")
}
