package router

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// maxIdleDedicated bounds the idle dedicated connections kept per node and
// protocol version.
const maxIdleDedicated = 16

// Dedicated is a node connection used by one client at a time, for commands
// that block (BLPOP, XREAD BLOCK, ...) or that tie state to the connection
// (MULTI/EXEC, WATCH). It is not safe for concurrent use, except Abort.
type Dedicated struct {
	node  *node
	proto int
	conn  net.Conn
	bw    *bufio.Writer
	rd    *resp.Reader

	mu      sync.Mutex // guards aborted and noReuse
	aborted bool
	noReuse bool
	broken  bool
}

// LocalAddr returns the connection's local address: the client address the
// node knows it by (CLIENT LIST's addr).
func (d *Dedicated) LocalAddr() string { return d.conn.LocalAddr().String() }

// NoReuse makes Release close the connection instead of pooling it. Another
// goroutine may call it: after it, no later user can get the connection, so
// a command sent to the node about it (CLIENT UNBLOCK) can only reach its
// current user.
func (d *Dedicated) NoReuse() {
	d.mu.Lock()
	d.noReuse = true
	d.mu.Unlock()
}

// Addr returns the address of the node the connection goes to.
func (d *Dedicated) Addr() string { return d.node.addr }

// Do writes frame (after ASKING when asking is set, on the same connection)
// and returns the reply. The reply stays valid after later calls. Any error
// leaves the connection broken: Release then closes it.
func (d *Dedicated) Do(frame []byte, asking bool) ([]byte, error) {
	if d.broken {
		return nil, errors.New("router: dedicated connection is broken")
	}
	if asking {
		_, _ = d.bw.Write(askingFrame)
	}
	_, _ = d.bw.Write(frame)
	if err := d.bw.Flush(); err != nil {
		d.broken = true
		return nil, d.wrap(err)
	}
	if asking {
		if r, err := d.rd.ReadReply(); err != nil {
			d.broken = true
			return nil, d.wrap(err)
		} else if resp.IsError(r) {
			d.broken = true
			return nil, fmt.Errorf("router: ASKING refused: %s", resp.ErrorText(r))
		}
	}
	reply, err := d.rd.ReadReply()
	if err != nil {
		d.broken = true
		return nil, d.wrap(err)
	}
	return reply, nil
}

// DoMany writes frames (n commands, already encoded back to back) in one
// write and returns their n replies, so a short sequence costs one round
// trip. The replies stay valid after later calls. Any error leaves the
// connection broken, as with Do.
func (d *Dedicated) DoMany(frames []byte, n int) ([][]byte, error) {
	if d.broken {
		return nil, errors.New("router: dedicated connection is broken")
	}
	_, _ = d.bw.Write(frames)
	if err := d.bw.Flush(); err != nil {
		d.broken = true
		return nil, d.wrap(err)
	}
	replies := make([][]byte, n)
	for i := range replies {
		r, err := d.rd.ReadReply()
		if err != nil {
			d.broken = true
			return nil, d.wrap(err)
		}
		replies[i] = r
	}
	return replies, nil
}

func (d *Dedicated) wrap(err error) error {
	d.mu.Lock()
	aborted := d.aborted
	d.mu.Unlock()
	if aborted {
		return ErrAborted
	}
	return fmt.Errorf("%w: %w", ErrConnLost, err)
}

// Abort closes the connection from another goroutine, making a Do that is
// blocked on it return (the client went away).
func (d *Dedicated) Abort() {
	d.mu.Lock()
	d.aborted = true
	d.mu.Unlock()
	d.conn.Close()
}

// Watch aborts the connection if abort is closed before the returned stop
// is called. stop waits for the watcher to end, so after it the connection
// is either aborted or safe to Release.
func (d *Dedicated) Watch(abort <-chan struct{}) (stop func()) {
	quit := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-abort:
			d.Abort()
		case <-quit:
		}
	}()
	return func() {
		close(quit)
		<-exited
	}
}

// Release returns a healthy connection to its node's idle pool, or closes it.
// A connection must not be released while it holds state (an open MULTI or
// WATCH): use Close then, or reset the state first.
func (d *Dedicated) Release() {
	d.mu.Lock()
	aborted := d.aborted || d.noReuse
	d.mu.Unlock()
	if d.broken || aborted {
		d.conn.Close()
		return
	}
	d.node.putDedicated(d)
}

// Close closes the connection.
func (d *Dedicated) Close() { d.conn.Close() }

// Dedicated returns a dedicated connection to the master of slot (or to
// addr when it is not empty), speaking proto.
func (r *Router) Dedicated(slot int, addr string, proto int) (*Dedicated, error) {
	req := Request{Slot: slot, Addr: addr}
	n, err := r.route(&req)
	if err != nil {
		return nil, err
	}
	return n.getDedicated(proto)
}

func (n *node) getDedicated(proto int) (*Dedicated, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	idle := n.idle[proto&1]
	if k := len(idle); k > 0 {
		d := idle[k-1]
		n.idle[proto&1] = idle[:k-1]
		n.mu.Unlock()
		return d, nil
	}
	n.mu.Unlock()
	conn, rd, err := dialNode(n.opts, n.addr, proto)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return &Dedicated{node: n, proto: proto, conn: conn, bw: bufio.NewWriterSize(conn, 4096), rd: rd}, nil
}

func (n *node) putDedicated(d *Dedicated) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || len(n.idle[d.proto&1]) >= maxIdleDedicated {
		d.conn.Close()
		return
	}
	n.idle[d.proto&1] = append(n.idle[d.proto&1], d)
}

// Block runs a command that may block (BLPOP, BRPOP, BLMOVE, BZPOPMIN,
// XREAD BLOCK, ...) on a dedicated connection, so that it never holds up the
// shared pipelines, following redirections like Wait. When abort is closed
// (the client went away) the connection is closed and the command ends with
// ErrAborted. The result is in req.Reply or req.Err.
func (r *Router) Block(req *Request, abort <-chan struct{}) {
	req.asking = false
	addr := req.Addr
	for {
		req.Reply, req.Err = nil, nil
		target := Request{Slot: req.Slot, Addr: addr}
		n, err := r.route(&target)
		var d *Dedicated
		if err == nil {
			d, err = n.getDedicated(req.Proto)
		}
		if err != nil {
			req.Err = err
			r.Refresh("error")
			if !r.backoff(req) {
				return
			}
			continue
		}
		req.node = n
		stop := d.Watch(abort)
		if req.BlockedOn != nil {
			req.BlockedOn.Store(d)
		}
		req.Reply, req.Err = d.Do(req.Frame, req.asking)
		if req.BlockedOn != nil {
			req.BlockedOn.Store(nil)
		}
		stop()
		d.Release()
		if req.Err != nil {
			return // written: it may have been applied (or the client left)
		}
		switch r.redirect(req) {
		case redirectNow:
			addr = req.redirectTo
			continue
		case redirectLater:
			req.asking = false
			addr = req.Addr
			if !r.backoff(req) {
				return
			}
			continue
		}
		return
	}
}

// Send writes frame and flushes, without reading a reply (pub/sub: replies
// and messages are read by Receive).
func (d *Dedicated) Send(frame []byte) error {
	_, _ = d.bw.Write(frame)
	if err := d.bw.Flush(); err != nil {
		d.broken = true
		return d.wrap(err)
	}
	return nil
}

// Receive reads the next frame (a reply or a push). It may run in another
// goroutine than Send.
func (d *Dedicated) Receive() ([]byte, error) {
	f, err := d.rd.ReadReply()
	if err != nil {
		return nil, d.wrap(err)
	}
	return f, nil
}
