package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"

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
// Commands are numbered in the order read (session.dispatched), and the
// number of the last one answered is published in session.finished. While
// a transaction holds queued commands or the client is subscribed, buffers
// are left to the garbage collector, as their frames may be kept beyond
// their replies. A buffer retired while its commands are in flight (a
// pipeline, then silence) stays with the session until its next burst.
type readBuffers struct {
	s         *session
	pool      *sync.Pool // *[]byte, shared by the server's sessions
	size      int        // the Reader's standard buffer size; others are not kept
	retired   []byte     // the buffer retired last, while its commands may be in use
	retiredAt int64      // session.dispatched when it was retired
	box       *[]byte    // the pool holds *[]byte: a spare one, so Put does not allocate
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
		buf := *p
		*p, b.box = nil, p // the box carries the next buffer given back
		return buf
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
	b.release() // free already when the Reader retires it to wait idle
}

// release gives the retired buffer to the pool if its commands are
// answered.
func (b *readBuffers) release() {
	if b.free() {
		p := b.box
		if p == nil {
			p = new([]byte)
		}
		*p, b.box = b.retired, nil
		b.pool.Put(p)
		b.retired = nil
	}
}

// free reports whether there is a retired buffer that no command uses.
func (b *readBuffers) free() bool {
	if b.retired == nil || b.s.tx != nil || b.s.subs != nil {
		return false
	}
	return b.s.finished.Load() >= b.retiredAt
}

// idleConn is a client connection as the command Reader reads it: a TCP
// connection that waits for data holding no buffer (resp.IdleReader), so
// that an idle client costs no read buffer. It reads with the raw file
// descriptor, through Go's poller, like net.Conn.Read.
type idleConn struct {
	net.Conn
	raw    syscall.RawConn
	readFn func(fd uintptr) bool // c.read, bound once

	// State of the ReadIdle in progress, kept here so that reading
	// allocates nothing.
	p      []byte
	park   func()
	unpark func() []byte
	n      int
	errno  error
	parked bool // park was called and unpark not yet
	woken  bool // unpark was called: never park twice
}

// newIdleConn returns conn as an idleConn, or conn itself when it has no
// file descriptor to read (TLS).
func newIdleConn(conn net.Conn) io.Reader {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return conn
	}
	c := &idleConn{Conn: conn, raw: raw}
	c.readFn = c.read
	return c
}

// ReadIdle implements resp.IdleReader.
func (c *idleConn) ReadIdle(p []byte, park func(), unpark func() []byte) (int, error) {
	c.p, c.park, c.unpark = p, park, unpark
	c.n, c.errno, c.parked, c.woken = 0, nil, false, false
	err := c.raw.Read(c.readFn)
	n, errno := c.n, c.errno
	c.p, c.park, c.unpark = nil, nil, nil
	switch {
	case err != nil: // a deadline, or the connection closed
		return 0, err
	case errno != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is the attempt syscall.RawConn.Read makes, once at first and again
// each time the connection turns readable: it reports false to wait.
func (c *idleConn) read(fd uintptr) bool {
	if c.parked {
		c.p, c.parked, c.woken = c.unpark(), false, true
	}
	for {
		c.n, c.errno = syscall.Read(int(fd), c.p)
		if c.errno != syscall.EINTR {
			break
		}
	}
	if c.errno == syscall.EAGAIN {
		if !c.woken && !c.parked {
			c.park()
			c.parked = true
		}
		return false
	}
	return true
}
