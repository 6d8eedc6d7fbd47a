package proxy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// call is one client command on its way through a session: either a routed
// request or a reply built by the proxy. Calls are pooled per Server.
type call struct {
	req    *router.Request
	routed bool    // req was sent and must be waited for
	reply  []byte  // a reply built by the proxy (when not routed)
	quit   bool    // close the connection once this reply is written
	mute   bool    // CLIENT REPLY OFF or SKIP: run, but write no reply
	fan    *fanout // several parts to merge (split by slot, or every master)
	// block marks a command that may block: run on a dedicated node
	// connection by the writer; blockDone is closed once its reply is written.
	block     bool
	blockDone chan struct{}
	// evalsha is the SHA1 argument of an EVALSHA, to heal NOSCRIPT.
	evalsha []byte
	// wait is a WAIT/WAITAOF, run by the writer like a blocking command.
	wait *waitCall
	// gw is a gateway command running on its own goroutine.
	gw *gwCall
	// confirm is a (P|S)(UN)SUBSCRIBE's reply, gathered from its
	// subscriber connection.
	confirm *confirmation
	// name and start feed the command metrics; name is empty for frames
	// that answer no command (pub/sub messages).
	name  string
	start time.Time
	// raw is the client's command, for the slow log.
	raw []byte
	// seq numbers the client's commands in the order read (see
	// readBuffers); 0 for frames that answer no command.
	seq int64
	// sync are the slots this write changed, when Config.WriteReplicas asks
	// writes to wait for replication (sync.go); syncErr replaces the reply
	// when too few replicas acknowledged.
	sync    []int
	syncErr []byte
	// hot is the HOTKEYS session that samples this command (nil when none
	// does, or it has no keys): its keys, whether it feeds the sketches,
	// and the time its node requests took.
	hot        *hotKeys
	hotKeys    [][]byte
	hotSampled bool
	nodeTime   time.Duration
}

func newCall() *call { return &call{req: router.NewRequest()} }

func (c *call) reset() {
	c.req.Reset()
	c.routed, c.quit, c.mute, c.fan, c.block, c.blockDone, c.evalsha, c.name, c.wait, c.gw, c.raw, c.confirm = false, false, false, nil, false, nil, nil, "", nil, nil, nil, nil
	c.sync, c.syncErr, c.seq = c.sync[:0], nil, 0
	if c.hot != nil {
		clear(c.hotKeys) // do not pin the request's buffer
		c.hot, c.hotKeys, c.hotSampled, c.nodeTime = nil, c.hotKeys[:0], false, 0
	}
	if cap(c.reply) > 4096 {
		c.reply = nil // do not pin large local replies in the pool
	}
	c.reply = c.reply[:0]
}

// session serves one client connection with two goroutines: the reader
// parses commands and dispatches each at once (routed commands go to their
// node without waiting for earlier ones), the writer waits for each call in
// request order and writes its reply, flushing when no call is pending. So
// a client pipeline is spread over all nodes concurrently and answered in
// order. A lone command is answered by the reader itself, and the writer
// goroutine is started only when the reader first hands it a call.
type session struct {
	srv     *Server
	conn    net.Conn
	id      int64
	addr    string // the client's address, for the slow log
	created time.Time
	pending *callQueue // in request order; at most MaxPipeline (see hand)
	// bw buffers replies; it comes from the server's pool for a burst of
	// replies and goes back once they are flushed, so that an idle client
	// holds no write buffer. cw is what it writes to.
	bw *bufio.Writer
	cw *clientWriter
	// queued counts calls handed to the writer and not yet written. While it
	// is zero the writer does not touch bw, so the reader may answer a call
	// itself (see readLoop).
	queued atomic.Int32
	// finished is the number (call.seq) of the last command answered: by
	// the writer, which publishes it before queued falls to zero, or by the
	// reader when it answered the command itself.
	finished atomic.Int64
	// writerOn is set when the writer goroutine is started (startWriter);
	// writerDone, made by whoever started it, is closed when it ends.
	writerOn   atomic.Bool
	writerDone chan struct{}
	gone       chan struct{} // closed when the reader stops: aborts a blocked command
	// ctx ends when the reader stops, like gone: it bounds gateway commands.
	ctx    context.Context
	cancel context.CancelFunc

	// Fields below are owned by the reader goroutine.
	proto  int
	access authState // the client's user (auth.go)
	keys   []int     // scratch for key indexes
	tx     *tx       // WATCH/MULTI state; nil outside a transaction
	subs   *subs     // pub/sub state; nil until the first subscription
	wrote  slotSet   // slots written since the last WAIT
	readAt time.Time // when the last read burst arrived: the start of its commands
	// lastSpec is the spec of the last command looked up (see lookup);
	// allowedSpec and allowedUser the last command the ACL let this session's
	// user run, for users with every key and channel (see denied).
	// readOnly is set while a read-only command is routed: it may go to a
	// replica (router.Options.ReadFrom), unless the client tracks keys for
	// its cache, whose invalidations come from the masters.
	readOnly bool
	// layout is the router's LayoutVersion when this session last routed
	// a keyed command (see keepOrder).
	layout      uint64
	lastSpec    *command.Spec
	allowedSpec *command.Spec
	allowedUser *aclUser
	// dispatched counts the commands read; with finished it tells when a
	// read buffer is free (readBuffers).
	dispatched int64
	bufs       readBuffers
	// replyOff and skipNext are the CLIENT REPLY mode: every reply muted
	// until CLIENT REPLY ON, or the next command's.
	replyOff, skipNext bool
	// monitoring is set by MONITOR; monitorOn once the session is in the
	// server's monitors (after MONITOR's +OK is queued).
	monitoring, monitorOn bool

	// writeClock is the last clock reading taken for a written reply, reused
	// for replies already read from their node by then (see endTime). The
	// writer goroutine owns it, or the reader while queued is zero.
	writeClock time.Time
	// recName and rec are the metrics recorder of the command answered
	// last (see commandDone); owned like writeClock.
	recName string
	rec     func(failed bool, d time.Duration)

	name atomic.Pointer[string] // CLIENT SETNAME; read by CLIENT LIST of other sessions
	// libName and libVer are CLIENT SETINFO's, for CLIENT LIST.
	libName, libVer atomic.Pointer[string]
	stopped         atomic.Bool // Shutdown or CLIENT KILL asked the reader to stop

	// userLabel is the user last authenticated as (nil: default), for
	// CLIENT LIST of other sessions.
	userLabel atomic.Pointer[string]
	// subCounts are the client's channels, patterns and shard channels, as
	// CLIENT LIST shows them (sub, psub, ssub); kept by subs.apply.
	subCounts [3]atomic.Int32
	// For CLIENT LIST of other sessions: the last command's name and when
	// it arrived (unix nanoseconds; 0: none yet), and the state flags
	// (flagBlocked, flagMulti, flagMonitor).
	lastCmd   atomic.Pointer[string]
	lastCmdAt atomic.Int64
	flags     atomic.Uint32
	// protoShown is proto, for CLIENT LIST of other sessions; cmds is
	// dispatched, for INFO's total_commands_processed.
	protoShown atomic.Int32
	cmds       atomic.Int64
	// blockConn is the node connection the blocking command the writer is
	// running waits on, for CLIENT UNBLOCK from other sessions.
	blockConn atomic.Pointer[router.Dedicated]

	// Client-side caching (tracking.go). trk is the CLIENT TRACKING state,
	// owned by the reader; nil until tracking is first turned on, and while
	// it is set the reader leaves every reply to the writer, since
	// invalidations may arrive at any time. inv holds the invalidations on
	// their way; regSeq is the seq of the last read whose keys were
	// registered, wseq that of the last command written (owned like
	// writeClock). redirect and redirID are the client invalidations go to
	// (REDIRECT), redirBroken set once it is gone.
	trk         *tracking
	inv         invOutbox
	regSeq      atomic.Int64
	wseq        int64
	redirect    atomic.Pointer[session]
	redirID     atomic.Int64
	redirBroken atomic.Bool
	// foreignOK allows frames from other sessions (invalidations redirected
	// here) while the client is in pub/sub mode; foreignMu guards it.
	foreignMu sync.Mutex
	foreignOK bool
}

func newSession(srv *Server, conn net.Conn, id int64) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		ctx:     ctx,
		cancel:  cancel,
		srv:     srv,
		conn:    conn,
		id:      id,
		addr:    conn.RemoteAddr().String(),
		created: time.Now(),
		pending: newCallQueue(),
		cw:      newClientWriter(srv, conn, id),
		proto:   resp.RESP2,
		access:  srv.initialAuth(),
		keys:    make([]int, 0, 16),
		gone:    make(chan struct{}),
		layout:  srv.router.LayoutVersion(), // nothing of this client is routed by an older one
	}
	s.protoShown.Store(resp.RESP2)
	return s
}

// stopReading makes the reader stop after the command it is reading; the
// commands already read are still answered.
func (s *session) stopReading() {
	s.stopped.Store(true)
	_ = s.conn.SetReadDeadline(time.Now())
}

func (s *session) run() {
	if !s.handshake() { // TLS clients (tls.go)
		s.cancel()
		s.conn.Close()
		return
	}
	s.readLoop()
	// Every hand-off to the writer happens before readLoop returns (pub/sub
	// pushes stop before it does), so writerOn is final here.
	if s.writerOn.Load() {
		<-s.writerDone
	}
	s.conn.Close()
}

// startWriter starts the writer goroutine if it is not running yet. A
// client that sends one command at a time is answered by the reader and
// never needs one: the writer starts with the first hand-off, which saves
// an idle request/response client a goroutine stack.
func (s *session) startWriter() {
	if s.writerOn.Load() || !s.writerOn.CompareAndSwap(false, true) {
		return
	}
	s.writerDone = make(chan struct{})
	go func() {
		defer close(s.writerDone)
		s.writeLoop()
	}()
}

func (s *session) readLoop() {
	defer s.pending.close()
	defer close(s.gone)
	defer s.cancel()
	defer s.endTx(false) // an open transaction's connection holds state: close it
	defer func() {
		s.setForeign(false) // before pending closes: other sessions push into it
		if s.subs != nil {
			s.subs.close() // so do subscribers
		}
		s.stopMonitor() // monitors
		s.untrack()     // and the tracker
	}()
	rd := resp.NewReader(newIdleConn(s.conn), s.srv.cfg.Limits)
	s.bufs = readBuffers{s: s, pool: &s.srv.readBufs, size: s.srv.readBufSize}
	rd.SetRecycler(&s.bufs)
	var idleSet bool // a read deadline for IdleTimeout is on the connection
	for {
		if idle := time.Duration(s.srv.idleTimeout.Load()); idle > 0 && !s.stopped.Load() {
			_ = s.conn.SetReadDeadline(time.Now().Add(idle))
			idleSet = true
		} else if idleSet && !s.stopped.Load() {
			_ = s.conn.SetReadDeadline(time.Time{}) // turned off by Reload
			idleSet = false
		}
		fresh := rd.Buffered() == 0 // this command needs a read from the socket
		cmd, err := rd.ReadCommand()
		if err != nil {
			if idleSet && isTimeout(err) && !s.stopped.Load() && (s.queued.Load() > 0 || s.subscribed() || s.monitoring) {
				// Idle, but waiting for replies (a long CACHE.GET WAIT, a
				// slow script) or for messages: like Redis's timeout, which
				// spares blocked and pub/sub clients, that is not
				// idleness. The reader resumes where it was.
				continue
			}
			if resp.IsProtocolError(err) {
				s.srv.obs.ProtocolError()
				c := s.srv.getCall()
				c.reply = resp.AppendError(c.reply, "ERR "+err.Error())
				c.quit = true
				s.hand(c)
				s.srv.log.Debug("client protocol error", "client", s.id, "addr", s.conn.RemoteAddr().String(), "err", err)
			}
			return
		}
		if fresh || s.readAt.IsZero() {
			// One clock reading per read burst: the commands it brought
			// all arrived then.
			s.readAt = time.Now()
			s.lastCmdAt.Store(s.readAt.UnixNano())
		}
		c := s.dispatch(cmd)
		if s.trk != nil && s.trk.caching != 0 && (s.tx == nil || !s.tx.multi) && !bytes.EqualFold(cmd.Args[0], []byte("client")) {
			s.trk.caching = 0 // CLIENT CACHING holds for one command, or a whole MULTI
		}
		s.dispatched++
		s.cmds.Store(s.dispatched)
		c.seq = s.dispatched
		if c.block || c.wait != nil {
			// Like Redis, read nothing more from a blocked client: later
			// commands wait until the blocking one returns. The client is
			// still watched, so that leaving releases the node connection.
			done := make(chan struct{})
			c.blockDone = done
			s.setFlag(flagBlocked, true)
			s.hand(c)
			ok := s.waitBlocked(rd, done)
			s.setFlag(flagBlocked, false)
			if !ok {
				return
			}
			// What arrived while blocked is timed from now, not from the
			// blocking command's arrival.
			s.readAt = time.Time{}
			continue
		}
		if !c.quit && c.gw == nil && rd.Buffered() == 0 && s.queued.Load() == 0 && s.subs == nil && !s.monitoring && s.trk == nil {
			// A client that sent one command and waits for its reply (no
			// pipeline behind it): answer it here, sparing the hand-off to
			// the writer goroutine. Commands that arrive together still go
			// through the writer, so they are dispatched concurrently, and so
			// do gateway commands, which may wait long (CACHE.GET WAIT): the
			// reader goes on reading, so a client that leaves cancels them.
			seq := c.seq
			if !s.answer(c) {
				return
			}
			s.finished.Store(seq) // the writer is idle: queued is zero
			continue
		}
		quit := c.quit // c belongs to the writer once queued
		s.hand(c)
		if quit {
			return
		}
		if s.monitoring && !s.monitorOn {
			// After MONITOR's +OK: the lines come after it.
			s.srv.monitors.add(s)
			s.monitorOn = true
			s.setFlag(flagMonitor, true)
		}
	}
}

// maxBufferedWhileBlocked bounds what a blocked client may send before the
// proxy stops reading from it until the blocking command returns.
const maxBufferedWhileBlocked = 1 << 20

// waitBlocked waits until done is closed, watching the client meanwhile.
// It reports false when the client went away or the server is stopping.
func (s *session) waitBlocked(rd *resp.Reader, done <-chan struct{}) bool {
	_ = s.conn.SetReadDeadline(time.Time{})
	for {
		if rd.Buffered() >= maxBufferedWhileBlocked {
			<-done
			break
		}
		err := rd.ReadMore()
		select {
		case <-done:
		default:
			if err == nil {
				continue
			}
			if t, ok := err.(interface{ Timeout() bool }); !ok || !t.Timeout() || s.stopped.Load() {
				return false
			}
			// The writer's wake-up: done is about to be closed.
			<-done
		}
		break
	}
	// The writer set the deadline before closing done, so this is final.
	if !s.stopped.Load() {
		_ = s.conn.SetReadDeadline(time.Time{})
	}
	return true
}

// hand gives c to the writer, waiting while MaxPipeline calls are already
// handed over and not yet written (backpressure on a client that sends
// faster than its replies go out).
func (s *session) hand(c *call) {
	s.startWriter()
	s.pending.waitRoom(&s.queued, int32(s.srv.cfg.MaxPipeline))
	s.queued.Add(1)
	s.pending.put(c)
}

func (s *session) writeLoop() {
	broken := false
	var batch []*call
	var last int64 // seq of the last command answered
	for {
		var ok bool
		if batch, ok = s.pending.take(batch[:0]); !ok {
			return
		}
		for i, c := range batch {
			done, quit := c.blockDone, c.quit // c is recycled by write
			if c.seq > 0 {
				last = c.seq
			}
			if broken {
				s.finish(c)
				s.srv.putCall(c)
			} else if !s.write(c, quit || s.queued.Load() == 1) || quit {
				// Flushed when no other call is handed over. The client is
				// gone or asked to quit: stop reading too, but keep waiting
				// for what was sent so every call is accounted for.
				broken = true
				s.conn.Close()
			}
			if i == len(batch)-1 {
				// Before queued can reach zero: the reader, answering
				// commands itself from then on, never sees it go back.
				s.finished.Store(last)
			}
			s.queued.Add(-1)
			s.pending.released()
			if done != nil {
				// Wake the reader watching the blocked client: deadline
				// first, then done (see waitBlocked).
				_ = s.conn.SetReadDeadline(time.Now())
				close(done)
			}
		}
		clear(batch)
	}
}

// answer finishes and writes c from the reader goroutine (nothing is queued
// for the writer). It reports whether the client is still there.
func (s *session) answer(c *call) bool {
	if s.write(c, true) {
		return true
	}
	s.conn.Close()
	return false
}

// finish waits for c's reply (following redirections) or merges its parts.
func (s *session) finish(c *call) {
	if c.wait != nil {
		s.runWait(c)
		return
	}
	if c.block {
		c.req.BlockedOn = &s.blockConn
		s.srv.router.Block(c.req, s.gone)
		return
	}
	if c.gw != nil {
		<-c.gw.done
		c.reply = c.gw.reply
		return
	}
	if c.confirm != nil {
		c.reply = c.confirm.wait(c.reply)
		return
	}
	if c.routed {
		s.srv.router.Wait(c.req)
		if c.hot != nil {
			c.nodeTime = nodeTime(c.req)
		}
		if c.evalsha != nil {
			s.healNoScript(c, c.evalsha)
		}
	} else if c.fan != nil {
		c.fan.finish(s.srv, c)
	}
	if len(c.sync) > 0 {
		s.syncReplicas(c)
	}
}

// mayWaitLong reports whether finishing c may take long beyond a node's
// answer: a blocking command or WAIT (run when finished), or a gateway
// command (CACHE.GET WAIT) or pub/sub confirmations not complete yet.
func (c *call) mayWaitLong() bool {
	switch {
	case c.block || c.wait != nil:
		return true
	case c.gw != nil:
		return !closed(c.gw.done)
	case c.confirm != nil:
		return !c.confirm.complete()
	}
	return false
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// write finishes c, writes its reply, flushes if asked, and recycles c. It
// reports whether the write succeeded.
func (s *session) write(c *call, flush bool) bool {
	if s.bw != nil && s.bw.Buffered() > 0 && c.mayWaitLong() {
		// The replies written before c go out before waiting for it, as
		// Redis sends a pipeline's replies up to a blocking command. An
		// error stays with bw, and the write below reports it.
		_ = s.bw.Flush()
	}
	s.finish(c)
	var err error
	var out []byte
	switch {
	case c.syncErr != nil:
		out = c.syncErr
	case !c.routed && !c.block:
		out = c.reply
	case c.req.Err != nil:
		out = errorReply(c.req.Err)
	default:
		out = c.req.Reply
	}
	if s.bw == nil {
		s.bw = s.srv.getWriter(s.cw)
	}
	if !c.mute || c.confirm != nil { // confirmations go out, as Redis sends them
		_, err = s.bw.Write(out)
	}
	if c.seq > 0 {
		s.wseq = c.seq
	}
	if c.hot != nil {
		n := len(out)
		if c.mute && c.confirm == nil {
			n = 0
		}
		c.hot.record(c.hotKeys, c.hotSampled, c.nodeTime, uint64(len(c.raw)+n))
	}
	if s.inv.pending.Load() {
		s.drainInvalidations() // those waiting for this reply go out after it
	}
	if c.name != "" {
		end := s.endTime(c)
		failed := resp.IsError(out)
		s.commandDone(c.name, failed, end.Sub(c.start))
		if s.srv.slow.slow(end.Sub(c.start)) && !c.block && c.wait == nil {
			s.srv.slow.record(s, c, end) // time spent blocked is not slowness
		}
		if t := s.srv.cfg.Tracer; t != nil {
			s.traceCall(t, c, failed, out, end)
		}
	}
	if err == nil && flush {
		if err = s.bw.Flush(); err == nil {
			s.srv.putWriter(s.bw)
			s.bw = nil
		}
	}
	s.srv.putCall(c)
	return err == nil
}

// lookup is Table.Lookup with a one-entry cache: clients mostly repeat the
// command they sent last, and a name compare is cheaper than a map lookup.
func (s *session) lookup(args [][]byte) *command.Spec {
	if last := s.lastSpec; last != nil && len(args) > 0 && foldEqual(args[0], last.Name) {
		return last
	}
	spec := s.srv.table.Lookup(args)
	if spec != nil && !spec.IsContainer() && !strings.Contains(spec.Name, "|") {
		s.lastSpec = spec // a container's or subcommand's depends on args[1]: not cached
	}
	return spec
}

// foldEqual reports whether b equals the lower-case ASCII name, ignoring
// case.
func foldEqual(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// commandDone reports an answered command to the observer, through the
// cached recorder of the last command name when the observer has them.
func (s *session) commandDone(name string, failed bool, d time.Duration) {
	if s.rec == nil || s.recName != name {
		ro, ok := s.srv.obs.(CommandRecorderObserver)
		if !ok {
			s.srv.obs.CommandDone(name, failed, d)
			return
		}
		s.recName, s.rec = name, ro.CommandRecorder(name)
	}
	s.rec(failed, d)
}

// endTime returns the time c's reply is written. A routed reply read from
// its node before the last clock reading was waiting when that reading was
// taken: it reuses it, so a burst of replies costs one reading, not one each.
func (s *session) endTime(c *call) time.Time {
	if c.routed && !c.req.RepliedAt.IsZero() && c.req.RepliedAt.Before(s.writeClock) {
		return s.writeClock
	}
	s.writeClock = time.Now()
	return s.writeClock
}

// fail sets c to answer with the error msg (which starts with its code).
func (c *call) fail(msg string) *call {
	c.reply = resp.AppendError(c.reply[:0], msg)
	return c
}

// dispatch turns one command into a call: answered here, or routed.
func (s *session) dispatch(cmd resp.Command) *call {
	c := s.srv.getCall()
	c.start = s.readAt
	c.name = "unknown"
	c.raw = cmd.Raw
	c.mute = s.replyOff || s.skipNext
	s.skipNext, s.readOnly = false, false
	args := cmd.Args
	name := args[0]
	if s.currentUser() == nil && !authExempt(name) {
		return c.fail("NOAUTH Authentication required.")
	}
	if bytes.EqualFold(name, []byte("client")) {
		c.name = "client"
		if spec := s.srv.table.Lookup(args); spec != nil {
			s.lastCmd.Store(&spec.Name)
			if msg := s.denied(spec, args); msg != "" {
				return c.fail(msg)
			}
			s.feedMonitors(spec, args)
		}
		return s.client(c, args)
	}
	spec := s.lookup(args)
	if spec != nil {
		c.name = spec.Name
		s.lastCmd.Store(&spec.Name)
	}
	if spec == nil {
		if s.tx != nil && s.tx.multi {
			s.tx.aborted = true
		}
		return c.fail(s.unknown(args))
	}
	if !arityOK(spec.Arity, len(args)) {
		if s.tx != nil && s.tx.multi {
			s.tx.aborted = true
		}
		return c.fail("ERR wrong number of arguments for '" + spec.Name + "' command")
	}
	if msg := s.denied(spec, args); msg != "" {
		if s.tx != nil && s.tx.multi {
			s.tx.aborted = true
		}
		return c.fail(msg)
	}
	if s.subs != nil && s.proto == resp.RESP2 && !pubsubAllowed(spec.Name) && s.subs.count() > 0 {
		return c.fail("ERR Can't execute '" + spec.Name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
	}
	if spec.Policy == command.Gateway && s.tx != nil && s.tx.multi {
		s.tx.aborted = true
		return c.fail("ERR '" + spec.Name + "' is a proxy gateway command and cannot run inside MULTI")
	}
	if s.srv.pause.on.Load() && spec.Name != "quit" && !s.heldByPause(spec) {
		return c.fail("ERR proxy: the connection is closing while clients are paused (CLIENT PAUSE): the command was not run")
	}
	if spec.Name == "reset" {
		s.stopMonitor() // a monitor does not see its own RESET, as with Redis
	}
	s.feedMonitors(spec, args)
	if s.trk != nil && s.trk.on {
		s.trackCommand(spec, args) // client-side caching: before the read is sent
	}
	if s.inTx(spec) {
		return s.transaction(c, spec, cmd)
	}
	switch spec.Policy {
	case command.Local:
		return s.local(c, spec, args)
	case command.Forward, command.Split:
		switch spec.Name {
		case "eval", "eval_ro":
			s.srv.scripts.remember(args[1])
		case "evalsha", "evalsha_ro":
			c.evalsha = args[1] // stable: a sub-slice of the request frame
		}
		return s.forward(c, spec, cmd)
	case command.Blocking:
		if !spec.Blocks(cmd.Args) {
			return s.forward(c, spec, cmd) // XREAD without BLOCK
		}
		return s.blocking(c, spec, cmd)
	case command.Scan:
		return s.scan(c, args)
	case command.PubSub:
		return s.pubsub(c, spec, args)
	case command.AllNodes:
		return s.toNodes(c, s.srv.router.Nodes(), cmd.Raw, spec.Merge, spec.Flags&command.ReadOnly != 0)
	case command.AllMasters:
		if spec.Name == "script|load" {
			s.srv.scripts.remember(args[2])
		}
		return s.allMasters(c, cmd.Raw, spec.Merge, spec.Flags&command.ReadOnly != 0)
	case command.Gateway:
		return s.gateway(c, spec, args)
	case command.Unsupported:
		s.srv.obs.Unsupported(spec.Name)
		return c.fail("ERR command '" + spec.Name + "' is not supported by the proxy: " + spec.Reason)
	default:
		return c.fail("ERR command '" + spec.Name + "' is not supported by the proxy yet")
	}
}

const crossSlot = "CROSSSLOT Keys in request don't hash to the same slot"

// slotOf finds the keys of a command and their common slot (-1 for a
// keyless command). errMsg is the error to answer: a malformed command, or
// crossSlot when the keys span slots (keys is set then too).
func (s *session) slotOf(spec *command.Spec, args [][]byte) (slot int, keys []int, errMsg string) {
	keys, err := spec.Keys(args, s.keys[:0])
	if err != nil {
		return -1, nil, "ERR " + err.Error()
	}
	slot = -1
	for _, i := range keys {
		sl := router.Slot(args[i])
		if slot >= 0 && sl != slot {
			return -1, keys, crossSlot
		}
		slot = sl
	}
	return slot, keys, ""
}

// forward routes a command whose keys all hash to one slot; a Split command
// whose keys span slots is fanned out by slot.
func (s *session) forward(c *call, spec *command.Spec, cmd resp.Command) *call {
	s.keepOrder()
	s.readOnly = spec.Flags&command.ReadOnly != 0 && (s.trk == nil || !s.trk.on)
	slot, keys, msg := s.slotOf(spec, cmd.Args)
	if h := s.srv.hot.cur.Load(); h != nil && (msg == "" || (msg == crossSlot && spec.Policy == command.Split)) && h.activeAt(s.readAt) {
		s.hotSample(c, h, spec, cmd.Args, keys)
	}
	switch {
	case msg == crossSlot && spec.Policy == command.Split:
		return s.split(c, spec, cmd.Args, keys)
	case msg != "":
		return c.fail(msg)
	}
	if slot >= 0 && spec.Flags&(command.Write|command.MayReplicate) != 0 { // scripts are may_replicate
		s.wrote.add(slot) // for WAIT
		if s.srv.cfg.WriteReplicas > 0 {
			c.sync = append(c.sync, slot) // wait for replication (sync.go)
		}
	}
	return s.send(c, cmd.Raw, slot, resendable(spec, cmd.Args))
}

// orderWait bounds how long keepOrder holds a command: past it (a client
// that pipelines a CACHE.GET WAIT before the command that fills it), the
// command goes on, as it would have without a layout change.
const orderWait = time.Second

// keepOrder keeps a pipeline in order across a change of the cluster
// layout. Commands are routed as they are read, so without it a command
// routed by the new layout (straight to a slot's new master) could run
// before an earlier one of the same client still on its way to the old
// master, which will redirect it there. So when the layout changed since
// this session last routed a command and earlier commands are unanswered,
// it waits for them first: one round trip per client per layout change.
func (s *session) keepOrder() {
	v := s.srv.router.LayoutVersion()
	if v == s.layout {
		return
	}
	s.layout = v
	if s.queued.Load() == 0 {
		return
	}
	room := s.pending.room
	t := time.NewTimer(orderWait)
	defer t.Stop()
	for s.queued.Load() > 0 {
		room.Want()
		if s.queued.Load() == 0 {
			return
		}
		select {
		case <-room.C():
		case <-t.C:
			return
		}
	}
}

// blocking prepares a command that may block; the writer runs it on a
// dedicated node connection.
func (s *session) blocking(c *call, spec *command.Spec, cmd resp.Command) *call {
	if spec.Name == "wait" || spec.Name == "waitaof" {
		return s.wait(c, spec.Name, cmd.Raw)
	}
	slot, keys, msg := s.slotOf(spec, cmd.Args)
	if msg != "" {
		return c.fail(msg)
	}
	if h := s.srv.hot.cur.Load(); h != nil && h.activeAt(s.readAt) {
		s.hotSample(c, h, spec, cmd.Args, keys)
	}
	req := c.req
	req.Frame = cmd.Raw
	req.Slot = slot
	req.Conn = int(s.id)
	req.Proto = s.proto
	c.block = true
	return c
}

// send routes frame to the master of slot (-1: any master); resend says
// whether it may be sent again after a connection broke mid-request.
func (s *session) send(c *call, frame []byte, slot int, resend bool) *call {
	c.routed = true
	s.sendRequest(c.req, frame, slot, resend)
	return c
}

// sendRequest routes frame for this session (slot -1: keyless, or req.Addr
// when set) on req.
func (s *session) sendRequest(req *router.Request, frame []byte, slot int, resend bool) {
	req.Frame = frame
	req.Slot = slot
	req.Conn = int(s.id)
	req.Proto = s.proto
	req.Resendable = resend
	req.ReadOnly = s.readOnly
	s.srv.router.Send(req)
}

func arityOK(arity, n int) bool {
	if arity >= 0 {
		return n == arity
	}
	return n >= -arity
}

func authExempt(name []byte) bool {
	return bytes.EqualFold(name, []byte("auth")) || bytes.EqualFold(name, []byte("hello")) ||
		bytes.EqualFold(name, []byte("quit"))
}

// unknown builds Redis's message for an unknown command or subcommand.
func (s *session) unknown(args [][]byte) string {
	if len(args) > 1 && s.srv.table.Lookup(args[:1]) != nil {
		return "ERR unknown subcommand '" + trunc(args[1], 128) + "'. Try " + string(bytes.ToUpper(args[0])) + " HELP."
	}
	msg := "ERR unknown command '" + trunc(args[0], 128) + "', with args beginning with: "
	for _, a := range args[1:] {
		if len(msg) > 256 {
			break
		}
		msg += "'" + trunc(a, 128) + "' "
	}
	return msg
}

func trunc(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
