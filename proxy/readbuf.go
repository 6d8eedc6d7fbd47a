package proxy

import (
	"sync"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// readBuffers is a session's resp.Recycler. Commands are never copied out
// of the buffer they were read into, so a buffer the Reader retires is in
// use until every command read from it is answered; readBuffers keeps the
// last one retired and, once the writer has answered up to the last of its
// commands, lends it again or gives it to the server's pool. Without it a
// busy client costs a fresh read buffer for every BufferSize bytes it sends
// (at -P 16 GET, 43 bytes allocated per command and a garbage collection
// every 100,000 commands).
//
// Commands are numbered in the order read (session.dispatched); the writer
// publishes the number of the last one it answered (session.finished), or
// the reader records it when it answered the command itself
// (session.answered). While a transaction holds queued commands or the
// client is subscribed, buffers are left to the garbage collector, as
// their frames may be kept beyond their replies.
type readBuffers struct {
	s         *session
	pool      *sync.Pool // *[]byte, shared by the server's sessions
	size      int        // the Reader's standard buffer size; others are not kept
	retired   []byte     // the buffer retired last, while its commands may be in use
	retiredAt int64      // session.dispatched when it was retired
}

var _ resp.Recycler = (*readBuffers)(nil)

// Buffer implements resp.Recycler: the retired buffer if its commands are
// answered, else one from the pool, else nil (a new one).
func (b *readBuffers) Buffer(size int) []byte {
	if size != b.size {
		return nil
	}
	if b.free() {
		buf := b.retired
		b.retired = nil
		return buf
	}
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return nil
}

// Retire implements resp.Recycler. A buffer retired earlier whose commands
// are still in use (more than a buffer's worth in flight) is dropped for
// the garbage collector.
func (b *readBuffers) Retire(buf []byte) {
	if len(buf) != b.size {
		return
	}
	b.release()
	b.retired, b.retiredAt = buf, b.s.dispatched
}

// release gives the retired buffer to the pool if its commands are
// answered, so an idle session holds one buffer only.
func (b *readBuffers) release() {
	if b.free() {
		p := new([]byte)
		*p = b.retired
		b.pool.Put(p)
		b.retired = nil
	}
}

// free reports whether there is a retired buffer that no command uses.
func (b *readBuffers) free() bool {
	if b.retired == nil || b.s.tx != nil || b.s.subs != nil {
		return false
	}
	return max(b.s.finished.Load(), b.s.answered) >= b.retiredAt
}
