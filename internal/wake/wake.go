// Package wake is a one-slot wake-up between goroutines that keep their
// own condition (a queue's length, a count of replies): a sleeper announces
// itself, re-checks its condition, then sleeps; a waker that changed the
// condition wakes it. Waking costs one atomic load when nobody sleeps.
package wake

import "sync/atomic"

// Waiter wakes one announced sleeper. The zero value is not usable: use
// New.
type Waiter struct {
	want atomic.Bool
	ch   chan struct{}
}

// New returns a Waiter.
func New() *Waiter { return &Waiter{ch: make(chan struct{}, 1)} }

// Want announces a sleeper. The sleeper must check its condition after
// Want and before receiving from C, so that a change made before Want is
// not missed.
func (w *Waiter) Want() { w.want.Store(true) }

// C is where an announced sleeper receives its wake-up. A wake-up may be
// left over from an earlier announcement: sleepers re-check their
// condition after waking.
func (w *Waiter) C() <-chan struct{} { return w.ch }

// Wake wakes the announced sleeper, if any. It never blocks.
func (w *Waiter) Wake() {
	if w.want.Load() && w.want.CompareAndSwap(true, false) {
		select {
		case w.ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// WaitUntil sleeps until ok reports true, checking it before each sleep.
func (w *Waiter) WaitUntil(ok func() bool) {
	for !ok() {
		w.Want()
		if ok() {
			return
		}
		<-w.ch
	}
}
