package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/internal/wake"
)

// askingFrame is the ASKING command, written right before a command
// redirected by -ASK on the same connection.
var askingFrame = []byte("*1\r\n$6\r\nASKING\r\n")

// pipe is one multiplexed connection slot to a node. Its writer goroutine
// owns the current wire: it dials lazily, takes every queued request at once,
// writes them with one buffered write and flushes when the queue is empty.
// Each wire has a reader goroutine that completes requests in FIFO order. A
// broken wire fails only the requests written to it and is replaced on the
// next request, after a backoff if dialling failed.
type pipe struct {
	addr  string
	proto int
	opts  *Options

	// qmu guards queue and closed. Senders append to queue under it (a lock
	// and an append: cheaper than a channel send), and the writer swaps the
	// whole queue out at once.
	qmu    sync.Mutex
	queue  []*Request
	closed bool
	work   *wake.Waiter // wakes the writer sleeping on an empty queue
	room   sync.Cond    // signalled when a full queue empties (backpressure)

	stop   chan struct{} // closed by close()
	exited chan struct{} // closed when the writer goroutine returns

	cur atomic.Pointer[wire] // current wire, for the watchdog

	// ask marks the inflight slot of an ASKING command whose +OK reply is
	// dropped; it is never completed.
	ask *Request

	// latency, when set, is given each reply's time from write to reply
	// (see NodeObserver).
	latency func(time.Duration)
}

// wire is one TCP (or TLS) connection of a pipe and its reader goroutine.
type wire struct {
	conn net.Conn
	bw   *bufio.Writer
	rd   *resp.Reader
	// inflight holds the requests written (or being written) and not yet
	// answered, in order: the writer appends under imu, and the reader moves
	// them all to taken, its own slice, each time that runs out. At most
	// MaxInflight are outstanding (sent - replies).
	imu      sync.Mutex
	inflight []*Request
	taken    []*Request // the reader's; next is the index of the oldest
	next     int
	// room wakes the writer waiting for the inflight window to have room.
	room *wake.Waiter

	once       sync.Once
	err        error         // why the wire died; set once, before dead is closed
	dead       chan struct{} // closed when the wire must not be used any more
	readerDone chan struct{} // closed when the reader goroutine returns

	sent    atomic.Uint64 // requests pushed to inflight (writer)
	replies atomic.Uint64 // replies read (reader)
	// watchdog state, touched only by the watchdog goroutine
	lastReplies uint64
	stalled     time.Duration
}

func newPipe(addr string, proto int, opts *Options) *pipe {
	p := &pipe{
		addr:   addr,
		proto:  proto,
		opts:   opts,
		work:   wake.New(),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		ask:    &Request{},
	}
	p.room.L = &p.qmu
	if no, ok := opts.Observer.(NodeObserver); ok {
		p.latency = no.NodeLatency(addr)
	}
	go p.writeLoop()
	return p
}

// send queues req for writing. It blocks while QueueSize requests are
// already queued (backpressure).
func (p *pipe) send(req *Request) {
	p.qmu.Lock()
	for len(p.queue) >= p.opts.QueueSize && !p.closed {
		p.room.Wait()
	}
	if p.closed {
		p.qmu.Unlock()
		req.complete(nil, ErrClosed)
		return
	}
	p.queue = append(p.queue, req)
	p.qmu.Unlock()
	p.work.Wake()
}

// close stops the pipe: queued requests fail with ErrClosed (they were never
// written, so the router retries them elsewhere) and the wire is closed.
func (p *pipe) close() {
	p.qmu.Lock()
	if p.closed {
		p.qmu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	p.room.Broadcast()
	p.qmu.Unlock()
	<-p.exited
}

// What take found.
const (
	gotWork = iota
	wireDied
	stopped
)

// take waits until requests are queued and returns them all, leaving buf
// (emptied) as the new queue. It returns early when dead is closed or the
// pipe is closed.
func (p *pipe) take(buf []*Request, dead <-chan struct{}) ([]*Request, int) {
	for {
		p.qmu.Lock()
		if p.closed {
			p.qmu.Unlock()
			return buf, stopped
		}
		if n := len(p.queue); n > 0 {
			batch := p.queue
			p.queue = buf[:0]
			if n >= p.opts.QueueSize {
				p.room.Broadcast()
			}
			p.qmu.Unlock()
			return batch, gotWork
		}
		p.work.Want() // before unlocking: a sender's Wake comes after
		p.qmu.Unlock()
		select {
		case <-p.work.C():
		case <-dead:
			return buf, wireDied
		case <-p.stop:
		}
	}
}

// takeMore moves what was queued meanwhile to the end of batch, without
// waiting.
func (p *pipe) takeMore(batch []*Request) []*Request {
	p.qmu.Lock()
	if n := len(p.queue); n > 0 && !p.closed {
		batch = append(batch, p.queue...)
		clear(p.queue)
		p.queue = p.queue[:0]
		if n >= p.opts.QueueSize {
			p.room.Broadcast()
		}
	}
	p.qmu.Unlock()
	return batch
}

func (p *pipe) writeLoop() {
	defer close(p.exited)
	var (
		w       *wire
		dialErr error
		retryAt time.Time
		backoff time.Duration
		spare   []*Request // the last batch's slice, the queue's next buffer
	)
	for {
		var dead chan struct{}
		if w != nil {
			dead = w.dead
		}
		batch, what := p.take(spare, dead)
		switch what {
		case wireDied:
			p.teardown(w)
			w = nil
			spare = batch
			continue
		case stopped:
			if w != nil {
				w.kill(ErrClosed)
				p.teardown(w)
			}
			p.failQueued(ErrClosed) // no sender can add to the queue any more
			return
		}
		if w != nil {
			select {
			case <-w.dead: // died while idle: do not write the batch into it
				p.teardown(w)
				w = nil
			default:
			}
		}
		if w == nil {
			if time.Now().Before(retryAt) {
				failAll(batch, dialErr)
				p.failQueued(dialErr)
				spare = recycle(batch)
				continue
			}
			var err error
			w, err = p.dial()
			if err != nil {
				if backoff == 0 {
					backoff = p.opts.RedialBackoff
				} else {
					backoff = min(2*backoff, p.opts.MaxRedialBackoff)
				}
				dialErr = fmt.Errorf("%w: %w", ErrUnavailable, err)
				retryAt = time.Now().Add(backoff)
				p.opts.Logger.Warn("node connection failed", "node", p.addr, "err", err, "retry_in", backoff)
				failAll(batch, dialErr)
				p.failQueued(dialErr)
				spare = recycle(batch)
				continue
			}
			backoff = 0
			p.cur.Store(w)
		}
		spare = recycle(p.writeBatch(w, batch))
	}
}

// failAll completes every request of batch with err.
func failAll(batch []*Request, err error) {
	for _, req := range batch {
		req.complete(nil, err)
	}
}

// recycle empties batch for reuse as a queue buffer.
func recycle(batch []*Request) []*Request {
	clear(batch)
	return batch[:0]
}

// writeBatch writes batch and whatever else is queued meanwhile, then
// flushes once. It returns the batch, grown by what it took.
func (p *pipe) writeBatch(w *wire, batch []*Request) []*Request {
	yielded := false
	now := time.Now() // one reading stamps the whole batch
	for i := 0; i < len(batch); i++ {
		req := batch[i]
		req.WrittenAt = now
		if req.asking {
			if !p.push(w, p.ask) {
				failAll(batch[i:], w.failure(false))
				return batch
			}
			_, _ = w.bw.Write(askingFrame)
		}
		if !p.push(w, req) {
			// The wire died while the writer waited for room. If ASKING went
			// out, its inflight slot was failed with the wire; req and those
			// after it were never written.
			failAll(batch[i:], w.failure(false))
			return batch
		}
		if _, err := w.bw.Write(req.Frame); err != nil {
			w.kill(err)
			failAll(batch[i+1:], w.failure(false))
			return batch
		}
		if i == len(batch)-1 && len(batch) < p.opts.QueueSize {
			batch = p.takeMore(batch)
			if i == len(batch)-1 && !yielded && w.bw.Buffered() < w.bw.Size()/2 {
				// Before paying a write syscall, let runnable sessions queue
				// their commands so that one write carries them all.
				yielded = true
				runtime.Gosched()
				batch = p.takeMore(batch)
			}
		}
	}
	if err := w.bw.Flush(); err != nil {
		w.kill(err)
	}
	return batch
}

// push puts req on the wire's inflight FIFO before its bytes are written, so
// the reader always finds the request a reply belongs to. When MaxInflight
// requests are outstanding the buffered bytes are flushed first (the node
// cannot answer what it has not received), then push waits for room or the
// wire's death.
func (p *pipe) push(w *wire, req *Request) bool {
	req.written = true
	limit := uint64(p.opts.MaxInflight)
	if w.sent.Load()-w.replies.Load() >= limit {
		if err := w.bw.Flush(); err != nil {
			w.kill(err)
			req.written = false
			return false
		}
		for w.sent.Load()-w.replies.Load() >= limit {
			w.room.Want()
			if w.sent.Load()-w.replies.Load() < limit {
				break // a reply came in before the reader could see Want
			}
			select {
			case <-w.room.C():
			case <-w.dead:
				req.written = false
				return false
			case <-p.stop:
				// Closing while the node does not answer: do not wait for
				// the watchdog to give up on it.
				w.kill(ErrClosed)
				req.written = false
				return false
			}
		}
	}
	w.imu.Lock()
	w.inflight = append(w.inflight, req)
	w.imu.Unlock()
	w.sent.Add(1)
	return true
}

// pop returns the oldest request awaiting a reply, or nil if there is none.
// Only the reader calls it.
func (w *wire) pop() *Request {
	if w.next == len(w.taken) {
		clear(w.taken)
		w.imu.Lock()
		w.taken, w.inflight = w.inflight, w.taken[:0]
		w.imu.Unlock()
		w.next = 0
		if len(w.taken) == 0 {
			return nil
		}
	}
	req := w.taken[w.next]
	w.next++
	return req
}

// teardown waits for the reader of a dead wire and fails what it left.
func (p *pipe) teardown(w *wire) {
	p.cur.CompareAndSwap(w, nil)
	<-w.readerDone
	err := w.failure(true)
	for req := w.pop(); req != nil; req = w.pop() { // the reader is gone: pop is ours
		if req != p.ask {
			req.complete(nil, err)
		}
	}
}

// failQueued fails every request waiting in the queue (the node is down, or
// the pipe is closed).
func (p *pipe) failQueued(err error) {
	p.qmu.Lock()
	queued := p.queue
	p.queue = nil
	if len(queued) > 0 {
		p.room.Broadcast()
	}
	p.qmu.Unlock()
	failAll(queued, err)
}

func (p *pipe) dial() (*wire, error) {
	conn, rd, err := dialNode(p.opts, p.addr, p.proto)
	if err != nil {
		return nil, err
	}
	w := &wire{
		conn:       conn,
		bw:         bufio.NewWriterSize(conn, 16<<10),
		rd:         rd,
		room:       wake.New(),
		dead:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go p.readLoop(w)
	return w, nil
}

// dialNode connects to a node (TCP, then TLS when configured) and runs the
// handshake: authentication and the protocol version.
func dialNode(opts *Options, addr string, proto int) (net.Conn, *resp.Reader, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opts.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	rd := resp.NewReplyReader(conn, opts.ReplyLimits)
	if err := handshake(opts, conn, rd, proto); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, rd, nil
}

// handshake authenticates and selects the protocol version before the
// connection carries requests, and with replica reads allows them on it
// (READONLY; a master ignores it).
func handshake(opts *Options, conn net.Conn, rd *resp.Reader, proto int) error {
	var cmd []byte
	n := 1
	switch {
	case proto == resp.RESP3 && opts.Password != "":
		user := opts.Username
		if user == "" {
			user = "default"
		}
		cmd = resp.AppendCommandStrings(nil, "HELLO", "3", "AUTH", user, opts.Password)
	case proto == resp.RESP3:
		cmd = resp.AppendCommandStrings(nil, "HELLO", "3")
	case opts.Password != "" && opts.Username != "":
		cmd = resp.AppendCommandStrings(nil, "AUTH", opts.Username, opts.Password)
	case opts.Password != "":
		cmd = resp.AppendCommandStrings(nil, "AUTH", opts.Password)
	default:
		n = 0
	}
	if opts.ReadFrom != ReadMaster {
		cmd = resp.AppendCommandStrings(cmd, "READONLY")
		n++
	}
	if n == 0 {
		return nil
	}
	_ = conn.SetDeadline(time.Now().Add(opts.DialTimeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(cmd); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	for range n {
		reply, err := rd.ReadReply()
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		if resp.IsError(reply) {
			// The reply names the failure (WRONGPASS, NOPROTO); never the password.
			return fmt.Errorf("handshake: %s", resp.ErrorText(reply))
		}
	}
	return nil
}

func (p *pipe) readLoop(w *wire) {
	defer close(w.readerDone)
	var now time.Time
	for {
		// A reply not yet buffered means a read from the socket: take the
		// time once for the burst that read brings.
		fresh := w.rd.Buffered() == 0
		frame, err := w.rd.ReadReply()
		if err != nil {
			w.kill(err)
			return
		}
		if fresh {
			now = time.Now()
		}
		if frame[0] == '>' {
			// Out-of-band push (e.g. invalidation); shared wires never
			// subscribe, so it belongs to no request.
			continue
		}
		req := w.pop()
		if req == nil {
			w.kill(errors.New("reply without a pending request (protocol out of sync)"))
			return
		}
		w.replies.Add(1)
		w.room.Wake()
		if req != p.ask {
			if now.Before(req.WrittenAt) {
				// The burst's stamp came from a read that ended mid-frame,
				// before this request was written.
				now = time.Now()
			}
			req.RepliedAt = now
			if p.latency != nil {
				p.latency(now.Sub(req.WrittenAt))
			}
			req.complete(frame, nil)
		}
	}
}

// kill marks the wire dead with err (the first cause wins) and closes the
// connection so that the reader returns.
func (w *wire) kill(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.dead)
		w.conn.Close()
	})
}

// failure is the error given to a request that the dead wire could not
// answer. Only requests already written may have been applied.
func (w *wire) failure(written bool) error {
	<-w.dead
	if errors.Is(w.err, ErrTimeout) || errors.Is(w.err, ErrClosed) {
		return w.err
	}
	if written {
		return fmt.Errorf("%w: %w", ErrConnLost, w.err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, w.err)
}

// check is the watchdog's periodic look at the wire: a wire with requests
// outstanding and no reply for ReadTimeout is killed.
func (w *wire) check(tick, timeout time.Duration) {
	replies := w.replies.Load()
	if w.sent.Load() == replies || replies != w.lastReplies {
		w.lastReplies = replies
		w.stalled = 0
		return
	}
	w.stalled += tick
	if w.stalled >= timeout {
		w.kill(ErrTimeout)
	}
}

// inflight returns the requests written to the pipe's current connection and
// not yet answered.
func (p *pipe) inflight() int {
	w := p.cur.Load()
	if w == nil {
		return 0
	}
	replies := w.replies.Load() // first: sent never falls behind it
	return int(w.sent.Load() - replies)
}
