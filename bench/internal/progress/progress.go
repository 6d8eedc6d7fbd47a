// Package progress shows a running round's progress: one line rewritten in
// place on a terminal, plain periodic lines otherwise (logs, CI).
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Default intervals between updates.
const (
	DefaultTTYInterval   = 250 * time.Millisecond
	DefaultPlainInterval = 5 * time.Second
)

// Counter returns the operations and errors counted so far.
type Counter func() (ops, errs int64)

// Printer writes progress lines to Out. The zero value writes nothing
// (Out nil).
type Printer struct {
	// Out receives the lines; nil disables progress.
	Out io.Writer
	// TTY selects the rewritten single line; see IsTerminal.
	TTY bool
	// Interval between updates; default DefaultTTYInterval on a terminal,
	// DefaultPlainInterval otherwise.
	Interval time.Duration
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Start begins reporting for one round labelled label, with total
// operations expected (0 when the round is bounded by time). The returned
// function stops it and clears the line.
func (p Printer) Start(label string, total int64, count Counter) (stop func()) {
	if p.Out == nil {
		return func() {}
	}
	iv := p.Interval
	if iv <= 0 {
		iv = DefaultPlainInterval
		if p.TTY {
			iv = DefaultTTYInterval
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	began := time.Now()
	wg.Go(func() {
		tick := time.NewTicker(iv)
		defer tick.Stop()
		lastOps, lastT := int64(0), began
		for {
			select {
			case <-done:
				if p.TTY {
					fmt.Fprint(p.Out, "\r\x1b[K")
				}
				return
			case now := <-tick.C:
				ops, errs := count()
				rate := float64(ops-lastOps) / now.Sub(lastT).Seconds()
				lastOps, lastT = ops, now
				line := Line(label, ops, errs, total, rate, now.Sub(began))
				if p.TTY {
					fmt.Fprint(p.Out, "\r\x1b[K"+line)
				} else {
					fmt.Fprintln(p.Out, line)
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// Line formats one progress line.
func Line(label string, ops, errs, total int64, rate float64, elapsed time.Duration) string {
	done := fmt.Sprintf("%d", ops)
	if total > 0 {
		done = fmt.Sprintf("%d/%d (%3.0f%%)", ops, total, 100*float64(ops)/float64(total))
	}
	return fmt.Sprintf("%s  %s ops  %.0f ops/s  %d errors  %.1fs", label, done, rate, errs, elapsed.Seconds())
}
