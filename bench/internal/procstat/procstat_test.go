package procstat

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The name holds spaces and a ')', which must not shift the fields.
	line := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 100 1000000 500 18446744073709551615\n"
	d, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; d != want {
		t.Errorf("cpu %v, want %v (325 ticks)", d, want)
	}
	for _, bad := range []string{"no paren at all", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s 13"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tproxy\nVmPeak:\t  800000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n"
	m, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 10<<20 || m.HWM != 20<<20 {
		t.Errorf("got %+v, want RSS 10 MiB, HWM 20 MiB", m)
	}
	if _, err := parseStatus([]byte("Name:\tkthread\n")); err == nil || !strings.Contains(err.Error(), "VmRSS") {
		t.Errorf("missing fields: err %v", err)
	}
	if _, err := parseStatus([]byte("VmRSS:\tlots kB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("malformed value: no error")
	}
}

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	self0 := SelfCPU()
	for end := time.Now().Add(60 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	if after < before || SelfCPU() <= self0 {
		t.Errorf("CPU went from %v to %v, self from %v", before, after, self0)
	}
	m, err := Memory(pid)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("memory %+v: want 0 < RSS <= HWM", m)
	}
	if _, err := CPU(-1); err == nil {
		t.Error("CPU(-1): no error")
	}
}

func TestParseProcStat(t *testing.T) {
	stat := "cpu  100 5 40 800 20 3 2 7 0 0\ncpu0 50 2 20 400 10 1 1 3 0 0\nintr 12345\n"
	m, err := parseProcStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	// busy: user 100 + nice 5 + system 40 + irq 3 + softirq 2; idle: 800 + iowait 20; steal 7 is neither.
	if m.Busy != 1500*time.Millisecond || m.Idle != 8200*time.Millisecond {
		t.Errorf("got %+v, want busy 1.5 s, idle 8.2 s", m)
	}
	d := m.Sub(Machine{Busy: 500 * time.Millisecond, Idle: 200 * time.Millisecond})
	if d.Busy != time.Second || d.Idle != 8*time.Second {
		t.Errorf("Sub: %+v", d)
	}
	for _, bad := range []string{"intr 1\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7\n"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
}

func TestMachineCPU(t *testing.T) {
	a, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn some CPU so busy time advances
	}
	b, err := MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Sub(a); d.Busy <= 0 || d.Idle < 0 {
		t.Errorf("machine CPU over 50 ms of spinning: %+v", d)
	}
}
