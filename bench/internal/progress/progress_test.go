package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	got := Line("[proxy round 1/3]", 500, 2, 1000, 12345.6, 1500*time.Millisecond)
	want := "[proxy round 1/3]  500/1000 ( 50%) ops  12346 ops/s  2 errors  1.5s"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := Line("x", 7, 0, 0, 1, time.Second); !strings.Contains(got, "  7 ops  ") {
		t.Errorf("time-bounded line %q: want the plain count", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the printer's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPrinter(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var out syncBuffer
		p := Printer{Out: &out, TTY: tty, Interval: 5 * time.Millisecond}
		stop := p.Start("[t]", 0, func() (int64, int64) { return 10, 1 })
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "10 ops") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		stop()
		s := out.String()
		if !strings.Contains(s, "[t]  10 ops") || !strings.Contains(s, "1 errors") {
			t.Fatalf("tty=%v: output %q lacks the progress line", tty, s)
		}
		if tty != strings.Contains(s, "\r\x1b[K") {
			t.Errorf("tty=%v: output %q: carriage-return rewrite must be used exactly on a terminal", tty, s)
		}
		if !tty && !strings.HasSuffix(s, "\n") {
			t.Errorf("plain output %q: want whole lines", s)
		}
	}
	stop := Printer{}.Start("[t]", 0, nil) // no output: nothing runs
	stop()
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
}
