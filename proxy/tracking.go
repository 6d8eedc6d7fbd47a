package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	t.unregisterLocked(s.id)
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
	t.unregisterLocked(s.id)
	t.n.Store(int32(len(t.clients) + len(t.bcasts)))
}

// unregisterLocked forgets session id in either mode; t.regMu is held.
func (t *tracker) unregisterLocked(id int64) {
	if old := t.bcasts[id]; old != nil {
		t.prefixes.Add(-int64(len(old.prefixes)))
	}
	delete(t.clients, id)
	delete(t.bcasts, id)
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

// shard returns the index of the table part that holds key.
func (t *tracker) shard(key []byte) int {
	return int(maphash.Bytes(t.seed, key) % trackShards)
}

// remember records that session id read key. Beyond maxKeys it forgets
// another key, invalidating it for its readers, as Redis does at
// tracking-table-max-keys.
func (t *tracker) remember(key []byte, id int64) {
	part := t.shard(key)
	sh := &t.shards[part]
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
		t.evict(part, key)
	}
}

// evict forgets one key other than keep, starting with keep's part, and
// invalidates it for the sessions that read it.
func (t *tracker) evict(start int, keep []byte) {
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
		sh := &t.shards[t.shard(k)]
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

// TrackingStats returns the client-side caching figures: tracking
// clients, keys remembered, keys reported changed, and invalidations of
// every key.
func (srv *Server) TrackingStats() (clients, keys, sent, flushes int64) {
	t := srv.tracking
	return int64(t.n.Load()), t.nkeys.Load(), t.sent.Load(), t.flushes.Load()
}
