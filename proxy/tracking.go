package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// Client-side caching (CLIENT TRACKING) through the proxy.
//
// A node remembers the keys each of its connections read and tells that
// connection when one changes. Through the proxy, the reads of many clients
// share node connections, so the proxy keeps that table itself: it
// remembers which of its clients read which key, before the read is sent to
// its node, and it hears about every key modified on every master over one
// listener connection per master, in Redis's broadcast tracking mode
// (CLIENT TRACKING ON BCAST, RESP3). A modified key that a client read is
// sent to that client as a node sends it: an "invalidate" push (RESP3), or
// a message on __redis__:invalidate to the client it redirects to (RESP2).
// Clients in BCAST mode hear every modified key under their prefixes.
//
// An invalidation is written after the replies of the client's reads that
// were sent before it arrived (see session.queueInvalidation), so a client
// never caches a value read before a change it was already told about.
// Whenever modifications may have gone unheard (a listener connection
// broke, a new master appeared, a node ran FLUSHALL), every tracking client
// is told to drop its whole cache (an invalidation of all keys, as Redis
// sends after FLUSHALL).
//
// The listeners run while any client tracks, and stop trackLinger after the
// last one stopped.

// trackShards is the number of independently locked parts of the table of
// tracked keys.
const trackShards = 64

// trackTick is how often the listeners are checked against the topology.
const trackTick = 200 * time.Millisecond

// trackLinger is how long the listeners stay after the last tracking client
// left (a client that reconnects keeps them).
const trackLinger = 30 * time.Second

// trackPingAfter and trackPingTimeout find a listener whose node went
// silent: without any frame for trackPingAfter it is sent a PING, and
// without an answer for trackPingTimeout after that it is dropped.
const (
	trackPingAfter   = 3 * time.Second
	trackPingTimeout = 5 * time.Second
)

// maxQueuedInvalidations bounds the keys waiting in one session's
// invalidation outbox; beyond it they are replaced by one invalidation of
// every key, which is always correct.
const maxQueuedInvalidations = 8192

// trackShard is one part of the tracked-key table: key → ids of the
// sessions that read it since it last changed.
type trackShard struct {
	mu   sync.Mutex
	keys map[string][]int64
}

// bcastClient is a session in BCAST mode and its prefixes ("" for every
// key).
type bcastClient struct {
	s        *session
	prefixes []string
}

// tracker is the server's part of client-side caching: the tracked keys,
// the tracking sessions, and the invalidation listeners.
type tracker struct {
	srv     *Server
	maxKeys int64

	// regMu guards clients and bcasts. Invalidations are delivered under
	// its read lock, so none reaches a session after disable returned.
	regMu   sync.RWMutex
	clients map[int64]*session
	bcasts  map[int64]*bcastClient
	n       atomic.Int32 // len(clients) + len(bcasts)

	shards   [trackShards]trackShard
	seed     maphash.Seed // spreads keys over the shards
	nkeys    atomic.Int64 // keys in the table
	nitems   atomic.Int64 // (key, session) pairs in the table
	prefixes atomic.Int64 // prefixes of the BCAST sessions
	// sent counts keys reported changed to sessions; flushes the
	// invalidations of every key (flushAll).
	sent, flushes atomic.Int64

	// mu guards running, listeners, retryAt and stop. It is taken before
	// regMu, never after.
	mu        sync.Mutex
	running   bool
	listeners map[string]*invListener
	retryAt   map[string]time.Time
	stop      chan struct{} // closed to end the loop
	loopDone  chan struct{}
}

// invListener is one master's listener connection.
type invListener struct {
	addr      string
	d         *router.Dedicated
	lastFrame atomic.Int64 // unix nanoseconds of the last frame read
	pingAt    time.Time    // when the loop last sent a PING (loop-owned)
	closing   atomic.Bool  // closed on purpose: no flush
}

func newTracker(srv *Server, maxKeys int) *tracker {
	return &tracker{
		srv:     srv,
		maxKeys: int64(maxKeys),
		seed:    maphash.MakeSeed(),
		clients: map[int64]*session{},
		bcasts:  map[int64]*bcastClient{},
	}
}

// enable registers s as a tracking session (replacing its earlier mode),
// starting the listeners first if none run. It fails only when no master's
// listener could be started.
func (t *tracker) enable(s *session, bcast bool, prefixes []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.running {
		if err := t.start(); err != nil {
			return err
		}
	}
	t.regMu.Lock()
	defer t.regMu.Unlock()
	if old := t.bcasts[s.id]; old != nil {
		t.prefixes.Add(-int64(len(old.prefixes)))
	}
	delete(t.clients, s.id)
	delete(t.bcasts, s.id)
	if bcast {
		t.bcasts[s.id] = &bcastClient{s: s, prefixes: prefixes}
		t.prefixes.Add(int64(len(prefixes)))
	} else {
		t.clients[s.id] = s
	}
	t.n.Store(int32(len(t.clients) + len(t.bcasts)))
	return nil
}

// disable unregisters s; once it returns, no invalidation reaches s.
func (t *tracker) disable(s *session) {
	t.regMu.Lock()
	defer t.regMu.Unlock()
	if old := t.bcasts[s.id]; old != nil {
		t.prefixes.Add(-int64(len(old.prefixes)))
	}
	delete(t.clients, s.id)
	delete(t.bcasts, s.id)
	t.n.Store(int32(len(t.clients) + len(t.bcasts)))
}

// start opens a listener on every current master and starts the loop that
// keeps them. t.mu is held.
func (t *tracker) start() error {
	masters := t.srv.router.Masters()
	if len(masters) == 0 {
		return errors.New("no master is known")
	}
	t.listeners = map[string]*invListener{}
	t.retryAt = map[string]time.Time{}
	var firstErr error
	for _, addr := range masters {
		l, err := t.dial(addr)
		if err != nil {
			t.srv.log.Warn("client-side caching: cannot listen for invalidations on a master; retrying", "node", addr, "err", err)
			firstErr = cmp.Or(firstErr, err)
			t.retryAt[addr] = time.Now().Add(time.Second)
			continue
		}
		t.listeners[addr] = l
		go t.read(l)
	}
	if len(t.listeners) == 0 {
		return firstErr
	}
	t.running = true
	t.stop, t.loopDone = make(chan struct{}), make(chan struct{})
	go t.loop(t.stop, t.loopDone)
	t.srv.log.Info("client-side caching: listening for invalidations", "masters", len(t.listeners))
	return nil
}

// trackingOnFrame turns a listener connection into a broadcast listener of
// every modified key.
var trackingOnFrame = resp.AppendCommandStrings(nil, "CLIENT", "TRACKING", "ON", "BCAST")

// pingFrame is the listener's health check.
var pingFrame = resp.AppendCommandStrings(nil, "PING")

// dial opens a listener connection to the master at addr.
func (t *tracker) dial(addr string) (*invListener, error) {
	d, err := t.srv.router.Dedicated(-1, addr, resp.RESP3)
	if err != nil {
		return nil, err
	}
	reply, err := d.Do(trackingOnFrame, false)
	if err != nil {
		d.Close()
		return nil, err
	}
	if resp.IsError(reply) {
		d.Close()
		return nil, fmt.Errorf("node %s refused CLIENT TRACKING ON BCAST: %s", addr, resp.ErrorText(reply))
	}
	l := &invListener{addr: addr, d: d}
	l.lastFrame.Store(time.Now().UnixNano())
	return l, nil
}

// loop keeps a listener on every master until the tracker stops: it opens
// one for each new master (then drops every client's cache, as writes there
// may have gone unheard), closes those of nodes that are no longer
// masters, checks that the listeners' nodes still answer, and stops
// everything trackLinger after the last tracking session left.
func (t *tracker) loop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(trackTick)
	defer tick.Stop()
	var idleSince time.Time
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		if t.n.Load() == 0 {
			if idleSince.IsZero() {
				idleSince = now
			} else if now.Sub(idleSince) >= trackLinger {
				t.mu.Lock()
				if t.n.Load() == 0 && t.running {
					t.shutdownLocked()
					t.mu.Unlock()
					t.srv.log.Info("client-side caching: no tracking client left; invalidation listeners closed")
					return
				}
				t.mu.Unlock()
			}
			continue
		}
		idleSince = time.Time{}
		t.maintain(now)
	}
}

// maintain brings the listeners in line with the current masters.
func (t *tracker) maintain(now time.Time) {
	masters := t.srv.router.Masters()
	t.mu.Lock()
	if !t.running {
		t.mu.Unlock()
		return
	}
	for addr, l := range t.listeners {
		if !slices.Contains(masters, addr) {
			// Demoted or gone. A demoted master relays its new master's
			// changes, but the new master gets its own listener.
			l.close()
			delete(t.listeners, addr)
			continue
		}
		last := time.Unix(0, l.lastFrame.Load())
		switch {
		case l.pingAt.After(last) && now.Sub(l.pingAt) > trackPingTimeout:
			t.srv.log.Warn("client-side caching: a master's invalidation listener got no answer; reconnecting", "node", addr)
			l.d.Abort() // its reader flushes and removes it
		case now.Sub(last) > trackPingAfter && !l.pingAt.After(last):
			l.pingAt = now
			_ = l.d.Send(pingFrame) // a failure shows in the reader
		}
	}
	var missing []string
	for _, addr := range masters {
		if t.listeners[addr] == nil && !now.Before(t.retryAt[addr]) {
			missing = append(missing, addr)
		}
	}
	t.mu.Unlock()
	for _, addr := range missing {
		l, err := t.dial(addr)
		t.mu.Lock()
		if err != nil {
			t.retryAt[addr] = time.Now().Add(time.Second)
			t.mu.Unlock()
			t.srv.log.Debug("client-side caching: cannot listen for invalidations on a master yet", "node", addr, "err", err)
			continue
		}
		if !t.running || t.listeners[addr] != nil {
			t.mu.Unlock()
			l.close()
			continue
		}
		t.listeners[addr] = l
		delete(t.retryAt, addr)
		t.mu.Unlock()
		go t.read(l)
		// Changes on this master before its listener started were not heard.
		t.flushAll()
		t.srv.log.Info("client-side caching: listening for invalidations on a new master; clients told to drop their caches", "node", addr)
	}
}

// shutdownLocked closes every listener and forgets the tracked keys. t.mu
// is held.
func (t *tracker) shutdownLocked() {
	for _, l := range t.listeners {
		l.close()
	}
	t.listeners = nil
	t.running = false
	t.clearKeys()
}

// close stops the tracker for good (server shutdown).
func (t *tracker) close() {
	t.mu.Lock()
	if !t.running {
		t.mu.Unlock()
		return
	}
	t.shutdownLocked()
	stop, done := t.stop, t.loopDone
	t.mu.Unlock()
	close(stop)
	<-done
}

func (l *invListener) close() {
	l.closing.Store(true)
	l.d.Close()
}

// read handles what a listener receives: invalidation pushes and the
// answers to its PINGs. When the connection breaks, every tracking client
// drops its cache (changes may go unheard until the loop reconnects).
func (t *tracker) read(l *invListener) {
	var buf [2][]byte
	var keys [][]byte
	for {
		frame, err := l.d.Receive()
		if err != nil {
			l.d.Close()
			if l.closing.Load() {
				return
			}
			t.mu.Lock()
			if t.listeners[l.addr] == l {
				delete(t.listeners, l.addr)
			}
			t.mu.Unlock()
			t.srv.log.Warn("client-side caching: lost a master's invalidation listener; clients told to drop their caches", "node", l.addr, "err", err)
			t.flushAll()
			return
		}
		l.lastFrame.Store(time.Now().UnixNano())
		if len(frame) == 0 || frame[0] != '>' {
			continue // +PONG
		}
		els, _, err := resp.Elements(frame, buf[:0])
		if err != nil || len(els) != 2 {
			continue
		}
		if kind, _ := resp.BulkValue(els[0]); string(kind) != "invalidate" {
			continue
		}
		var null bool
		keys, null, err = resp.Elements(els[1], keys[:0])
		if err == resp.ErrNotAggregate || null {
			t.flushAll() // FLUSHALL or FLUSHDB on that master
			continue
		}
		if err != nil {
			continue
		}
		for i, k := range keys {
			keys[i], _ = resp.BulkValue(k) // a key's frame → the key
		}
		t.invalidate(keys)
	}
}

// shard returns the table part that holds key.
func (t *tracker) shard(key []byte) *trackShard {
	return &t.shards[maphash.Bytes(t.seed, key)%trackShards]
}

// remember records that session id read key. Beyond maxKeys it forgets
// another key, invalidating it for its readers, as Redis does at
// tracking-table-max-keys.
func (t *tracker) remember(key []byte, id int64) {
	sh := t.shard(key)
	sh.mu.Lock()
	ids, ok := sh.keys[string(key)]
	if ok && slices.Contains(ids, id) {
		sh.mu.Unlock()
		return
	}
	if sh.keys == nil {
		sh.keys = map[string][]int64{}
	}
	if !ok {
		t.nkeys.Add(1)
	}
	sh.keys[string(key)] = append(ids, id)
	t.nitems.Add(1)
	sh.mu.Unlock()
	if t.nkeys.Load() > t.maxKeys {
		t.evict(sh, key)
	}
}

// evict forgets one key other than keep, starting with keep's part, and
// invalidates it for the sessions that read it.
func (t *tracker) evict(from *trackShard, keep []byte) {
	start := 0
	for i := range t.shards {
		if &t.shards[i] == from {
			start = i
		}
	}
	for i := range trackShards {
		sh := &t.shards[(start+i)%trackShards]
		sh.mu.Lock()
		for k, ids := range sh.keys {
			if k == string(keep) {
				continue
			}
			delete(sh.keys, k)
			t.nkeys.Add(-1)
			t.nitems.Add(-int64(len(ids)))
			sh.mu.Unlock()
			t.regMu.RLock()
			for _, id := range ids {
				if s := t.clients[id]; s != nil {
					s.queueInvalidation([]string{k}, false)
					t.sent.Add(1)
				}
			}
			t.regMu.RUnlock()
			return
		}
		sh.mu.Unlock()
	}
}

// invalidate tells the sessions that read keys, and the BCAST sessions
// whose prefixes match them, that they changed; the keys leave the table.
func (t *tracker) invalidate(keys [][]byte) {
	var per map[int64][]string
	for _, k := range keys {
		sh := t.shard(k)
		sh.mu.Lock()
		ids, ok := sh.keys[string(k)]
		if ok {
			delete(sh.keys, string(k))
			t.nkeys.Add(-1)
			t.nitems.Add(-int64(len(ids)))
		}
		sh.mu.Unlock()
		if !ok {
			continue
		}
		if per == nil {
			per = map[int64][]string{}
		}
		ks := string(k)
		for _, id := range ids {
			per[id] = append(per[id], ks)
		}
	}
	t.regMu.RLock()
	defer t.regMu.RUnlock()
	for id, ks := range per {
		if s := t.clients[id]; s != nil {
			s.queueInvalidation(ks, false)
			t.sent.Add(int64(len(ks)))
		}
	}
	for _, b := range t.bcasts {
		var ks []string
		for _, k := range keys {
			for _, p := range b.prefixes {
				if bytes.HasPrefix(k, []byte(p)) {
					ks = append(ks, string(k))
					break
				}
			}
		}
		if len(ks) > 0 {
			b.s.queueInvalidation(ks, false)
			t.sent.Add(int64(len(ks)))
		}
	}
}

// flushAll tells every tracking session to drop every key and forgets the
// table, as Redis does on FLUSHALL.
func (t *tracker) flushAll() {
	t.flushes.Add(1)
	t.clearKeys()
	t.regMu.RLock()
	defer t.regMu.RUnlock()
	for _, s := range t.clients {
		s.queueInvalidation(nil, true)
	}
	for _, b := range t.bcasts {
		b.s.queueInvalidation(nil, true)
	}
}

func (t *tracker) clearKeys() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, ids := range sh.keys {
			t.nkeys.Add(-1)
			t.nitems.Add(-int64(len(ids)))
		}
		sh.keys = nil
		sh.mu.Unlock()
	}
}

// tracking is a session's CLIENT TRACKING state, owned by its reader.
type tracking struct {
	on, bcast, optin, optout, noloop bool
	// caching is CLIENT CACHING's answer for the next command: 1 yes, -1
	// no, 0 not given.
	caching  int8
	prefixes []string
	// txKeys are the keys read by the commands queued in MULTI, registered
	// at EXEC; past maxQueuedInvalidations of them, txOverflow makes EXEC
	// invalidate every key after its reply instead.
	txKeys     []string
	txOverflow bool
}

// invOutbox holds the invalidations on their way to a session's client,
// in arrival order. The writer sends each once the replies of the reads
// before it are written (barrier).
type invOutbox struct {
	mu      sync.Mutex
	items   []invItem
	nkeys   int
	marked  bool        // a marker call is queued to wake the writer
	pending atomic.Bool // items is not empty
}

// invItem is one invalidation: keys, or every key (all).
type invItem struct {
	barrier int64 // the seq of the last read registered before it arrived
	keys    []string
	all     bool
}

// queueInvalidation queues an invalidation for the client (any goroutine;
// the tracker calls it under its registry lock). It is sent after the
// replies of every read this session registered so far: a read sent to its
// node before the change may carry the old value, and the client must see
// that reply before it is told the value changed.
func (s *session) queueInvalidation(keys []string, all bool) {
	o := &s.inv
	barrier := s.regSeq.Load()
	o.mu.Lock()
	if all || o.nkeys+len(keys) > maxQueuedInvalidations {
		o.items = append(o.items[:0], invItem{barrier: barrier, all: true})
		o.nkeys = 0
	} else {
		o.items = append(o.items, invItem{barrier: barrier, keys: keys})
		o.nkeys += len(keys)
	}
	o.pending.Store(true)
	wake := !o.marked
	o.marked = true
	o.mu.Unlock()
	if wake {
		// An empty call wakes the writer, which sends what is due after
		// writing it (see drainInvalidations). At most one is queued.
		c := s.srv.getCall()
		s.queued.Add(1)
		s.startWriter()
		s.pending.put(c)
	}
}

// drainInvalidations sends the invalidations whose reads are answered (the
// writer, after each reply, while any is queued).
func (s *session) drainInvalidations() {
	o := &s.inv
	o.mu.Lock()
	o.marked = false
	n := 0
	for n < len(o.items) && o.items[n].barrier <= s.wseq {
		n++
	}
	due := slices.Clone(o.items[:n])
	rest := copy(o.items, o.items[n:])
	clear(o.items[rest:])
	o.items = o.items[:rest]
	o.nkeys = 0
	for _, it := range o.items {
		o.nkeys += len(it.keys)
	}
	o.pending.Store(len(o.items) > 0)
	o.mu.Unlock()
	for _, it := range due {
		s.sendInvalidation(it)
	}
}

// sendInvalidation writes one invalidation to the client, or passes it to
// the client it redirects to, as a node does: a RESP3 client gets an
// "invalidate" push; a client redirected to gets it as a push (RESP3) or a
// __redis__:invalidate message (RESP2) while it is in pub/sub mode; a RESP2
// client without redirection cannot be told (RESP2 has no push).
func (s *session) sendInvalidation(it invItem) {
	proto := int(s.protoShown.Load())
	if redir := s.redirID.Load(); redir > 0 {
		target := s.redirect.Load()
		if target == nil || closed(target.gone) {
			s.redirBroken.Store(true)
			if proto >= resp.RESP3 {
				b := resp.AppendPushHeader(nil, 2, proto)
				b = resp.AppendBulkString(b, "tracking-redir-broken")
				b = resp.AppendInt(b, redir)
				_, _ = s.bw.Write(b)
			}
			return
		}
		target.pushForeign(invalidationFrame(it, int(target.protoShown.Load())))
		return
	}
	if proto < resp.RESP3 {
		return
	}
	_, _ = s.bw.Write(invalidationFrame(it, proto))
}

// invalidationFrame formats an invalidation as a node does for a client of
// protocol proto: a push in RESP3, a __redis__:invalidate message in RESP2.
// Every key is a null.
func invalidationFrame(it invItem, proto int) []byte {
	var b []byte
	if proto >= resp.RESP3 {
		b = resp.AppendPushHeader(b, 2, proto)
		b = resp.AppendBulkString(b, "invalidate")
	} else {
		b = resp.AppendArrayHeader(b, 3)
		b = resp.AppendBulkString(b, "message")
		b = resp.AppendBulkString(b, "__redis__:invalidate")
	}
	if it.all {
		return resp.AppendNull(b, proto)
	}
	b = resp.AppendArrayHeader(b, len(it.keys))
	for _, k := range it.keys {
		b = resp.AppendBulkString(b, k)
	}
	return b
}

// pushForeign queues a frame from another session (an invalidation for the
// client that redirects here), if this client is in pub/sub mode (holds a
// subscription, as Redis requires), and its reader leaves every reply to
// the writer (foreignOK).
func (s *session) pushForeign(frame []byte) {
	s.foreignMu.Lock()
	defer s.foreignMu.Unlock()
	if s.foreignOK && s.pubsubClient() {
		s.push(frame, int32(s.srv.cfg.MaxPipeline))
	}
}

// setForeign allows or stops frames from other sessions (the reader, as it
// enters or leaves pub/sub mode).
func (s *session) setForeign(ok bool) {
	s.foreignMu.Lock()
	s.foreignOK = ok
	s.foreignMu.Unlock()
}

// trackCommand registers the keys a command reads for the client's cache,
// before it is sent, honouring OPTIN and OPTOUT. Scripts count as reads of
// their keys: the proxy cannot see which of them they read. Blocking reads
// (XREAD BLOCK) are not tracked: invalidations wait for the replies before
// them, and a blocked reply may come much later.
//
// Inside MULTI, reads run at EXEC, whose reply carries their values: their
// keys are kept and registered when EXEC is dispatched, so that their
// invalidations follow EXEC's reply.
func (s *session) trackCommand(spec *command.Spec, args [][]byte) {
	t := s.trk
	inMulti := s.tx != nil && s.tx.multi
	switch spec.Name {
	case "exec":
		if inMulti && (len(t.txKeys) > 0 || t.txOverflow) {
			s.regSeq.Store(s.dispatched + 1) // EXEC's seq (see readLoop)
			if t.txOverflow {
				// Too many to keep: the client drops every key after
				// EXEC's reply instead.
				s.queueInvalidation(nil, true)
			}
			for _, k := range t.txKeys {
				s.srv.tracking.remember([]byte(k), s.id)
			}
		}
		t.txKeys, t.txOverflow = t.txKeys[:0], false
		return
	case "discard":
		t.txKeys, t.txOverflow = t.txKeys[:0], false
		return
	}
	if spec.Flags&command.ReadOnly == 0 && !isScript(spec.Name) {
		return
	}
	if t.bcast || (t.optin && t.caching != 1) || (t.optout && t.caching == -1) ||
		(spec.Policy == command.Blocking && spec.Blocks(args)) {
		return
	}
	keys, err := spec.Keys(args, s.keys[:0])
	if err != nil || len(keys) == 0 {
		return
	}
	if inMulti {
		if len(t.txKeys)+len(keys) > maxQueuedInvalidations {
			t.txOverflow = true
			t.txKeys = t.txKeys[:0]
		} else if !t.txOverflow {
			for _, i := range keys {
				t.txKeys = append(t.txKeys, string(args[i]))
			}
		}
		return
	}
	s.regSeq.Store(s.dispatched + 1) // this command's seq (see readLoop)
	for _, i := range keys {
		s.srv.tracking.remember(args[i], s.id)
	}
}

// isScript reports whether name runs a script or function (EVAL, EVALSHA,
// FCALL and their _RO forms).
func isScript(name string) bool {
	return strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "fcall")
}

// untrack turns tracking off for the session (CLIENT TRACKING OFF, RESET,
// disconnection).
func (s *session) untrack() {
	if s.trk == nil || !s.trk.on {
		return
	}
	s.srv.tracking.disable(s)
	*s.trk = tracking{}
	s.redirID.Store(0)
	s.redirect.Store(nil)
	s.redirBroken.Store(false)
	s.setFlag(flagTracking|flagBcast, false)
}

// clientTracking answers CLIENT TRACKING ON|OFF [REDIRECT id] [BCAST]
// [PREFIX p ...] [OPTIN] [OPTOUT] [NOLOOP] with Redis's checks and errors.
func (s *session) clientTracking(c *call, args [][]byte) *call {
	if len(args) < 3 {
		return c.fail("ERR wrong number of arguments for 'client|tracking' command")
	}
	var redir int64
	var target *session
	var bcast, optin, optout, noloop bool
	var prefixes []string
	for j := 3; j < len(args); j++ {
		more := j < len(args)-1
		switch opt := strings.ToLower(string(args[j])); {
		case opt == "redirect" && more:
			j++
			if redir != 0 {
				return c.fail("ERR A client can only redirect to a single other client")
			}
			id, ok := resp.ParseInt(args[j])
			if !ok {
				return c.fail("ERR value is not an integer or out of range")
			}
			if target = s.srv.sessionByID(id); target == nil {
				return c.fail("ERR The client ID you want redirect to does not exist")
			}
			redir = id
		case opt == "bcast":
			bcast = true
		case opt == "optin":
			optin = true
		case opt == "optout":
			optout = true
		case opt == "noloop":
			noloop = true
		case opt == "prefix" && more:
			j++
			prefixes = append(prefixes, string(args[j]))
		default:
			return c.fail("ERR syntax error")
		}
	}
	switch strings.ToLower(string(args[2])) {
	case "off":
		s.untrack()
		c.reply = resp.AppendOK(c.reply)
		return c
	case "on":
	default:
		return c.fail("ERR syntax error")
	}
	t := s.trk
	if t == nil {
		t = &tracking{}
	}
	switch {
	case !bcast && len(prefixes) > 0:
		return c.fail("ERR PREFIX option requires BCAST mode to be enabled")
	case t.on && t.bcast != bcast:
		return c.fail("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.")
	case bcast && (optin || optout):
		return c.fail("ERR OPTIN and OPTOUT are not compatible with BCAST")
	case optin && optout:
		return c.fail("ERR You can't specify both OPTIN mode and OPTOUT mode")
	case (optin && t.optout) || (optout && t.optin):
		return c.fail("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.")
	}
	all := t.prefixes
	if bcast {
		if msg := prefixCollision(t.prefixes, prefixes); msg != "" {
			return c.fail(msg)
		}
		if len(prefixes) == 0 {
			prefixes = []string{""} // every key
		}
		all = append(slices.Clone(t.prefixes), prefixes...)
	}
	if err := s.srv.tracking.enable(s, bcast, all); err != nil {
		return c.fail("ERR proxy: client-side caching is unavailable: cannot listen for invalidations: " + err.Error())
	}
	t.on = true
	t.bcast = bcast
	t.optin = t.optin || optin
	t.optout = t.optout || optout
	t.noloop = t.noloop || noloop
	t.prefixes = all
	s.trk = t
	s.redirect.Store(target)
	s.redirID.Store(redir)
	s.redirBroken.Store(false)
	s.setFlag(flagTracking, true)
	s.setFlag(flagBcast, bcast)
	c.reply = resp.AppendOK(c.reply)
	return c
}

// prefixCollision returns Redis's error when a new BCAST prefix overlaps
// an existing one or another new one (one is a prefix of the other).
func prefixCollision(existing, added []string) string {
	overlap := func(a, b string) bool { return strings.HasPrefix(a, b) || strings.HasPrefix(b, a) }
	for i, p := range added {
		for _, e := range existing {
			if overlap(p, e) {
				return "ERR Prefix '" + p + "' overlaps with an existing prefix '" + e + "'. Prefixes for a single client must not overlap."
			}
		}
		for _, q := range added[i+1:] {
			if overlap(p, q) {
				return "ERR Prefix '" + p + "' overlaps with another provided prefix '" + q + "'. Prefixes for a single client must not overlap."
			}
		}
	}
	return ""
}

// clientCaching answers CLIENT CACHING YES|NO for the next command.
func (s *session) clientCaching(c *call, args [][]byte) *call {
	if len(args) != 3 {
		return c.fail("ERR wrong number of arguments for 'client|caching' command")
	}
	t := s.trk
	if t == nil || !t.on || (!t.optin && !t.optout) {
		return c.fail("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled")
	}
	switch strings.ToLower(string(args[2])) {
	case "yes":
		if !t.optin {
			return c.fail("ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")
		}
		t.caching = 1
	case "no":
		if !t.optout {
			return c.fail("ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
		}
		t.caching = -1
	default:
		return c.fail("ERR syntax error")
	}
	c.reply = resp.AppendOK(c.reply)
	return c
}

// clientTrackingInfo answers CLIENT TRACKINGINFO as a node does.
func (s *session) clientTrackingInfo(c *call) *call {
	t := s.trk
	var flags []string
	redir := int64(-1)
	var prefixes []string
	if t == nil || !t.on {
		flags = []string{"off"}
	} else {
		flags = []string{"on"}
		switch {
		case t.bcast:
			flags = append(flags, "bcast")
		case t.optin:
			flags = append(flags, "optin")
			if t.caching == 1 {
				flags = append(flags, "caching-yes")
			}
		case t.optout:
			flags = append(flags, "optout")
			if t.caching == -1 {
				flags = append(flags, "caching-no")
			}
		}
		if t.noloop {
			flags = append(flags, "noloop")
		}
		if s.redirBroken.Load() {
			flags = append(flags, "broken_redirect")
		}
		redir = s.redirID.Load()
		prefixes = t.prefixes
	}
	b := resp.AppendMapHeader(c.reply, 3, s.proto)
	b = resp.AppendBulkString(b, "flags")
	b = resp.AppendSetHeader(b, len(flags), s.proto)
	for _, f := range flags {
		b = resp.AppendBulkString(b, f)
	}
	b = resp.AppendBulkString(b, "redirect")
	b = resp.AppendInt(b, redir)
	b = resp.AppendBulkString(b, "prefixes")
	b = resp.AppendArrayHeader(b, len(prefixes))
	for _, p := range prefixes {
		b = resp.AppendBulkString(b, p)
	}
	c.reply = b
	return c
}

// clientGetRedir answers CLIENT GETREDIR: -1 when not tracking, 0 without
// redirection.
func (s *session) clientGetRedir(c *call) *call {
	if s.trk == nil || !s.trk.on {
		c.reply = resp.AppendInt(c.reply, -1)
	} else {
		c.reply = resp.AppendInt(c.reply, s.redirID.Load())
	}
	return c
}

// redirShown is CLIENT LIST's redir field: -1 when not tracking, 0
// without redirection (other sessions read it).
func (s *session) redirShown() int64 {
	if s.flags.Load()&flagTracking == 0 {
		return -1
	}
	return s.redirID.Load()
}

// TrackingStats returns the client-side caching figures: tracking
// clients, keys remembered, keys reported changed, and invalidations of
// every key.
func (srv *Server) TrackingStats() (clients, keys, sent, flushes int64) {
	t := srv.tracking
	return int64(t.n.Load()), t.nkeys.Load(), t.sent.Load(), t.flushes.Load()
}

// sessionByID returns the live session with that id, or nil.
func (srv *Server) sessionByID(id int64) *session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for s := range srv.sessions {
		if s.id == id {
			return s
		}
	}
	return nil
}
