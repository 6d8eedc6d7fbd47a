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
)

// askingFrame is the ASKING command, written right before a command
// redirected by -ASK on the same connection.
var askingFrame = []byte("*1\r\n$6\r\nASKING\r\n")

// pipe is one multiplexed connection slot to a node. Its writer goroutine
// owns the current wire: it dials lazily, batches queued requests into one
// buffered write and flushes when the queue is empty. Each wire has a reader
// goroutine that completes requests in FIFO order. A broken wire fails only
// the requests written to it and is replaced on the next request, after a
// backoff if dialling failed.
type pipe struct {
	addr  string
	proto int
	opts  *Options

	queue chan *Request

	// mu guards closed against sends in flight: senders hold it shared while
	// they put a request in queue, close takes it exclusively, so after close
	// the writer can drain queue knowing no send is still under way.
	mu     sync.RWMutex
	closed bool
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
	conn     net.Conn
	bw       *bufio.Writer
	rd       *resp.Reader
	inflight chan *Request // written, awaiting a reply; capacity MaxInflight

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
		queue:  make(chan *Request, opts.QueueSize),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		ask:    &Request{},
	}
	if no, ok := opts.Observer.(NodeObserver); ok {
		p.latency = no.NodeLatency(addr)
	}
	go p.writeLoop()
	return p
}

// send queues req for writing. It blocks while the queue is full.
func (p *pipe) send(req *Request) {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		req.complete(nil, ErrClosed)
		return
	}
	p.queue <- req
	p.mu.RUnlock()
}

// close stops the pipe: queued requests fail with ErrClosed (they were never
// written, so the router retries them elsewhere) and the wire is closed.
func (p *pipe) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	p.mu.Unlock()
	<-p.exited
}

func (p *pipe) writeLoop() {
	defer close(p.exited)
	var (
		w       *wire
		dialErr error
		retryAt time.Time
		backoff time.Duration
	)
	for {
		var req *Request
		var dead chan struct{}
		if w != nil {
			dead = w.dead
		}
		select {
		case req = <-p.queue:
		case <-dead:
			p.teardown(w)
			w = nil
			continue
		case <-p.stop:
			if w != nil {
				w.kill(ErrClosed)
				p.teardown(w)
			}
			p.failQueued(ErrClosed) // no sender can add to the queue any more
			return
		}
		if w == nil {
			if time.Now().Before(retryAt) {
				req.complete(nil, dialErr)
				p.failQueued(dialErr)
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
				req.complete(nil, dialErr)
				p.failQueued(dialErr)
				continue
			}
			backoff = 0
			p.cur.Store(w)
		}
		p.writeBatch(w, req)
	}
}

// writeBatch writes req and whatever else is queued, then flushes once.
func (p *pipe) writeBatch(w *wire, req *Request) {
	yielded := false
	now := time.Now() // one reading stamps the whole batch
	for req != nil {
		req.WrittenAt = now
		if req.asking {
			if !p.push(w, p.ask) {
				req.complete(nil, w.failure(false))
				return
			}
			_, _ = w.bw.Write(askingFrame)
		}
		if !p.push(w, req) {
			// The wire died while the writer waited for room. If ASKING went
			// out, its inflight slot was failed with the wire; req itself was
			// never written.
			req.complete(nil, w.failure(false))
			return
		}
		if _, err := w.bw.Write(req.Frame); err != nil {
			w.kill(err)
			return
		}
		select {
		case req = <-p.queue:
		default:
			req = nil
		}
		if req == nil && !yielded && w.bw.Buffered() < w.bw.Size()/2 {
			// Before paying a write syscall, let runnable sessions queue
			// their commands so that one write carries them all.
			yielded = true
			runtime.Gosched()
			select {
			case req = <-p.queue:
			default:
			}
		}
	}
	if err := w.bw.Flush(); err != nil {
		w.kill(err)
	}
}

// push puts req on the wire's inflight FIFO before its bytes are written, so
// the reader always finds the request a reply belongs to. When inflight is
// full the buffered bytes are flushed first (the node cannot answer what it
// has not received), then push waits for room or the wire's death.
func (p *pipe) push(w *wire, req *Request) bool {
	req.written = true
	select {
	case w.inflight <- req:
		w.sent.Add(1)
		return true
	default:
	}
	if err := w.bw.Flush(); err != nil {
		w.kill(err)
		req.written = false
		return false
	}
	select {
	case w.inflight <- req:
		w.sent.Add(1)
		return true
	case <-w.dead:
		req.written = false
		return false
	}
}

// teardown waits for the reader of a dead wire and fails what it left.
func (p *pipe) teardown(w *wire) {
	p.cur.CompareAndSwap(w, nil)
	<-w.readerDone
	err := w.failure(true)
	for {
		select {
		case req := <-w.inflight:
			if req != p.ask {
				req.complete(nil, err)
			}
		default:
			return
		}
	}
}

// failQueued fails every request waiting in the queue (the node is down).
func (p *pipe) failQueued(err error) {
	for {
		select {
		case req := <-p.queue:
			req.complete(nil, err)
		default:
			return
		}
	}
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
		inflight:   make(chan *Request, p.opts.MaxInflight),
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
// connection carries requests.
func handshake(opts *Options, conn net.Conn, rd *resp.Reader, proto int) error {
	var cmd []byte
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
		return nil
	}
	_ = conn.SetDeadline(time.Now().Add(opts.DialTimeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(cmd); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	reply, err := rd.ReadReply()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if resp.IsError(reply) {
		// The reply names the failure (WRONGPASS, NOPROTO); never the password.
		return fmt.Errorf("handshake: %s", resp.ErrorText(reply))
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
		var req *Request
		select {
		case req = <-w.inflight:
		default:
			w.kill(errors.New("reply without a pending request (protocol out of sync)"))
			return
		}
		w.replies.Add(1)
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
