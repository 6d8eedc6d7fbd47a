package proxy

import (
	"sync"
	"sync/atomic"
)

// callQueue hands calls from a session's reader (and its pub/sub
// subscribers) to its writer, in order. Producers append under a mutex; the
// writer takes everything queued at once, so a pipeline of sixteen commands
// costs it one hand-off instead of sixteen channel receives.
//
// The bound is kept by the session's queued counter, which counts calls
// handed over and not yet written: a producer waits for room while it is at
// the limit (waitRoom), and the writer wakes it (released).
type callQueue struct {
	mu      sync.Mutex
	calls   []*call
	closed  bool
	waiting bool          // the writer sleeps on ready
	ready   chan struct{} // capacity 1

	wantRoom atomic.Bool
	room     chan struct{} // capacity 1
}

func newCallQueue() *callQueue {
	return &callQueue{ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// put appends c for the writer.
func (q *callQueue) put(c *call) {
	q.mu.Lock()
	q.calls = append(q.calls, c)
	q.wakeWriter()
}

// wakeWriter unlocks q.mu and wakes the writer if it sleeps.
func (q *callQueue) wakeWriter() {
	wake := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if wake {
		select {
		case q.ready <- struct{}{}:
		default: // a token from an earlier wake-up is still there
		}
	}
}

// close tells the writer that nothing more will be put once it has taken
// what is queued.
func (q *callQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.wakeWriter()
}

// take waits for calls and returns all of them, appended to buf. It returns
// false once the queue is closed and empty.
func (q *callQueue) take(buf []*call) ([]*call, bool) {
	for {
		q.mu.Lock()
		if len(q.calls) > 0 {
			buf = append(buf, q.calls...)
			clear(q.calls)
			q.calls = q.calls[:0]
			q.mu.Unlock()
			return buf, true
		}
		if q.closed {
			q.mu.Unlock()
			return buf, false
		}
		q.waiting = true
		q.mu.Unlock()
		<-q.ready
	}
}

// waitRoom waits until *queued is below limit; the writer's released calls
// wake it.
func (q *callQueue) waitRoom(queued *atomic.Int32, limit int32) {
	for queued.Load() >= limit {
		q.wantRoom.Store(true)
		if queued.Load() < limit {
			return // released before it could see wantRoom
		}
		<-q.room
	}
}

// released is called by the writer after each call written: it wakes a
// producer waiting for room.
func (q *callQueue) released() {
	if q.wantRoom.Load() && q.wantRoom.CompareAndSwap(true, false) {
		select {
		case q.room <- struct{}{}:
		default:
		}
	}
}
