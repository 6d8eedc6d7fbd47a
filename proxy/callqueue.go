package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/clusterproxy/clusterproxy/internal/wake"
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
	mu     sync.Mutex
	calls  []*call
	closed bool
	ready  *wake.Waiter // wakes the writer sleeping on an empty queue
	room   *wake.Waiter // wakes a producer waiting for room
}

func newCallQueue() *callQueue {
	return &callQueue{ready: wake.New(), room: wake.New()}
}

// put appends c for the writer.
func (q *callQueue) put(c *call) {
	q.mu.Lock()
	q.calls = append(q.calls, c)
	q.mu.Unlock()
	q.ready.Wake()
}

// close tells the writer that nothing more will be put once it has taken
// what is queued.
func (q *callQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.ready.Wake()
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
		q.ready.Want() // before unlocking: a producer's Wake comes after
		q.mu.Unlock()
		<-q.ready.C()
	}
}

// waitRoom waits until *queued is below limit; the writer's released calls
// wake it.
func (q *callQueue) waitRoom(queued *atomic.Int32, limit int32) {
	q.room.WaitUntil(func() bool { return queued.Load() < limit })
}

// released is called by the writer after each call written: it wakes a
// producer waiting for room.
func (q *callQueue) released() { q.room.Wake() }
