package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// subs is a session's pub/sub state. Classic subscriptions (SUBSCRIBE,
// PSUBSCRIBE) live on one connection to a master: PUBLISH reaches every node
// of a cluster. Shard channels (SSUBSCRIBE) live on a connection to the
// master of the channel's slot, and keyspace notifications on a connection
// to every master (isKeyspace). The messages a subscriber connection reads
// are forwarded to the client through the session's ordered queue; its
// confirmations answer the commands that asked for them (confirmation).
type subs struct {
	s *session

	// view is what the nodes have confirmed, as the client has been told
	// so far: the writer keeps it, in request order, to give each
	// confirmation the client's subscription count (see
	// confirmation.wait). Only the writer touches it.
	view subView

	// sendMu serialises what writes subscription commands to the
	// subscriber connections and changes which of them exist: the reader's
	// (P|S)(UN)SUBSCRIBE, a resubscription after a broken connection, and
	// the keyspace connections' reconciliation with the masters. So two of
	// them never write to one connection at once, and a keyspace name the
	// client adds reaches every master's connection, a new one included.
	// Taken before mu, never while holding it.
	sendMu sync.Mutex

	mu    sync.Mutex // guards everything below
	conns map[string]*subConn
	// sets are the client's subscriptions as sent: changed when a command
	// is dispatched (and undone if the node refuses it), they decide at
	// once what a RESP2 client may send next.
	sets   subView
	closed bool
	wg     sync.WaitGroup
	// watchStop stops watchLayout; nil until the first keyspace
	// subscription starts it.
	watchStop chan struct{}
}

// subView is a set of subscriptions: channels (SUBSCRIBE), patterns
// (PSUBSCRIBE) and shard channels (SSUBSCRIBE).
type subView struct {
	chans, pats, shard map[string]bool
}

// newSubView returns an empty subView.
func newSubView() subView {
	return subView{chans: map[string]bool{}, pats: map[string]bool{}, shard: map[string]bool{}}
}

// of returns the set a (P|S)(UN)SUBSCRIBE changes.
func (v *subView) of(kind string) map[string]bool {
	switch kind {
	case "psubscribe", "punsubscribe":
		return v.pats
	case "ssubscribe", "sunsubscribe":
		return v.shard
	}
	return v.chans
}

// note applies a confirmation of kind for name (nil: none).
func (v *subView) note(kind string, name []byte) {
	if strings.HasSuffix(kind, "unsubscribe") {
		delete(v.of(kind), string(name))
	} else if name != nil {
		v.of(kind)[string(name)] = true
	}
}

// count is the subscription count a confirmation of kind reports, as Redis
// counts: channels and patterns together, shard channels apart.
func (v *subView) count(kind string) int {
	if kind == "ssubscribe" || kind == "sunsubscribe" {
		return len(v.shard)
	}
	return len(v.chans) + len(v.pats)
}

// subConn is one subscriber connection; key is "" for the classic one, the
// node address for shard channels, "ks:" and the address for keyspace
// notifications.
type subConn struct {
	key  string
	d    *router.Dedicated
	log  *slog.Logger
	drop int // confirmations of a silent resubscription still to drop
	// waiting are the client's commands sent on this connection whose
	// confirmations are still to come, oldest first.
	waiting []*confirmation
	// held is what the node has confirmed so far, as its confirmations
	// come in: what an unsubscribe from everything will be answered for.
	held subView
	// retired is set (under subs.mu) before the connection is closed on
	// purpose, so that its reader does not subscribe again elsewhere.
	retired bool
}

// confirmWait bounds how long a (P|S)(UN)SUBSCRIBE waits for the frames
// that confirm it. Past it (a node that does not answer, a count that does
// not match the node's), it is answered as if the node had confirmed it,
// the replies behind it go on, and confirmations that come later are
// dropped.
const confirmWait = 10 * time.Second

// confirmation gathers the frames a node sends to confirm one
// (P|S)(UN)SUBSCRIBE (one per channel or pattern), so that they reach the
// client as that command's reply, in request order: a PING, a refused
// command or a shared connection's reply sent after it cannot overtake
// them.
type confirmation struct {
	p    *subs
	sc   *subConn
	want int // frames still expected; guarded by p.mu
	// frames are the node's answer: its confirmations, or the error that
	// refused the command (guarded by p.mu until done is closed).
	frames [][]byte
	done   chan struct{}
	proto  int // the client's protocol when it sent the command
	// kind and names are the command, to answer for what the node did
	// not confirm (a broken connection, confirmWait).
	kind  string
	names [][]byte
	// all is an unsubscribe from every channel ("unsubscribe"), pattern
	// ("punsubscribe") or shard channel ("sunsubscribe"): the node answers
	// once per one it held then, or once if none, so want is counted when
	// its first frame comes.
	all     string
	counted bool
	// next is the confirmation awaited on the next connection, when the
	// command went to several (see subPart); silent ones are waited for
	// but do not answer.
	next   *confirmation
	silent bool
	// added are the names the command put in the session's sets: if the
	// node refuses the command, they are taken out again, so that the sets
	// stay what the node holds.
	added []string
}

// subscribed reports whether the client holds a subscription. Only the
// reader calls it.
func (s *session) subscribed() bool {
	return s.subs != nil && s.subs.count() > 0
}

// count is how many subscriptions the session holds.
func (p *subs) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sets.chans) + len(p.sets.pats) + len(p.sets.shard)
}

// pubsubAllowed lists what a RESP2 client may send while subscribed.
func pubsubAllowed(name string) bool {
	switch name {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "ping", "quit", "reset":
		return true
	}
	return false
}

// pubsub handles the (P|S)(UN)SUBSCRIBE commands. They go to a subscriber
// connection, and the call waits for the node's confirmations (see
// confirmation); one that no connection has to answer (an unsubscribe from
// what is not held) is answered at once.
func (s *session) pubsub(c *call, spec *command.Spec, args [][]byte) *call {
	if s.subs == nil {
		s.subs = &subs{s: s, conns: map[string]*subConn{}, sets: newSubView(), view: newSubView()}
		s.setForeign(true) // invalidations redirected here may come now (tracking.go)
	}
	p := s.subs
	names := args[1:]
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	switch spec.Name {
	case "subscribe", "psubscribe", "unsubscribe", "punsubscribe":
		unsub := strings.HasPrefix(spec.Name, "un") || strings.HasPrefix(spec.Name, "pun")
		var plain, ks [][]byte
		for _, n := range names {
			if isKeyspace(n) {
				ks = append(ks, n)
			} else {
				plain = append(plain, n)
			}
		}
		layout := s.srv.router.LayoutVersion() // before the connections match it
		ksc, err := p.keyspaceConns(!unsub && len(ks) > 0)
		if errors.Is(err, errPartialCoverage) {
			return c.fail("CLUSTERDOWN proxy: keyspace notifications need a master for every slot, and a slot has none now")
		} else if err != nil {
			return c.fail(string(resp.ErrorText(errorReply(err))))
		}
		if !unsub && len(ks) > 0 {
			p.watchKeyspace(layout)
		}
		p.mu.Lock()
		sc := p.conns[""]
		p.mu.Unlock()
		if sc == nil && !unsub && len(plain) > 0 {
			masters := s.srv.router.Masters()
			if len(masters) == 0 {
				return c.fail("CLUSTERDOWN proxy: cluster topology not loaded yet")
			}
			if sc, err = p.dial("", masters[int(s.id)%len(masters)]); err != nil {
				return c.fail(string(resp.ErrorText(errorReply(err))))
			}
		}
		// Where the command goes: plain names to the classic connection,
		// keyspace names to every master's (answered by the first); a
		// name unsubscribed from with no connection of its kind goes to
		// another, as any node answers for what it does not hold.
		var parts []subPart
		if unsub && len(names) == 0 {
			if sc != nil {
				parts = append(parts, subPart{sc: sc})
			}
			for i, k := range ksc {
				parts = append(parts, subPart{sc: k, silent: i > 0})
			}
		} else {
			if len(plain) > 0 {
				if to := cmp.Or(sc, first(ksc)); to != nil {
					parts = append(parts, subPart{sc: to, names: plain})
				}
			}
			if len(ks) > 0 && len(ksc) == 0 && sc != nil {
				parts = append(parts, subPart{sc: sc, names: ks})
			}
			for i, k := range ksc {
				if len(ks) > 0 {
					parts = append(parts, subPart{sc: k, names: ks, silent: i > 0})
				}
			}
		}
		return s.sendParts(c, spec.Name, parts, names)
	default: // ssubscribe, sunsubscribe
		slot := -1
		for _, n := range names {
			sl := router.Slot(n)
			if slot >= 0 && sl != slot {
				return c.fail(crossSlot)
			}
			slot = sl
		}
		unsub := spec.Name == "sunsubscribe"
		var parts []subPart
		if unsub && len(names) == 0 {
			// From every shard channel, on every connection holding one.
			p.mu.Lock()
			for _, k := range slices.Sorted(maps.Keys(p.conns)) {
				if isShardConn(k) {
					parts = append(parts, subPart{sc: p.conns[k]})
				}
			}
			p.mu.Unlock()
			return s.sendParts(c, spec.Name, parts, nil)
		}
		addr := s.srv.router.MasterOf(slot)
		if addr == "" {
			return c.fail("CLUSTERDOWN proxy: no reachable master serves this hash slot")
		}
		p.mu.Lock()
		sc := p.conns[addr]
		p.mu.Unlock()
		if sc == nil && !unsub {
			var err error
			if sc, err = p.dial(addr, addr); err != nil {
				return c.fail(string(resp.ErrorText(errorReply(err))))
			}
		}
		if sc != nil {
			parts = append(parts, subPart{sc: sc, names: names})
		}
		return s.sendParts(c, spec.Name, parts, names)
	}
}

// subPart is the part of a (P)(UN)SUBSCRIBE that goes to one subscriber
// connection: names (none for an unsubscribe from everything), and whether
// its confirmations are only waited for, the same ones coming from another
// connection (keyspace notifications, subscribed on every master).
type subPart struct {
	sc     *subConn
	names  [][]byte
	silent bool
}

// sendParts applies the command kind with names to the session's sets and
// sends each part on its connection; the call waits for all their
// confirmations, and its reply is theirs in turn. With no part (an
// unsubscribe from what no connection holds), it answers at once, as Redis
// does.
func (s *session) sendParts(c *call, kind string, parts []subPart, names [][]byte) *call {
	p := s.subs
	p.mu.Lock()
	if len(parts) == 0 {
		c.reply = c.reply[:0]
		p.apply(&c.reply, kind, names, s.proto)
		p.mu.Unlock()
		return c
	}
	added := p.apply(nil, kind, names, s.proto)
	p.mu.Unlock()
	cfs := make([]*confirmation, len(parts))
	for i, pt := range parts {
		cfs[i] = &confirmation{want: len(pt.names), silent: pt.silent, added: added}
		if len(pt.names) == 0 {
			cfs[i].all = kind
		}
		if i > 0 {
			cfs[i-1].next = cfs[i]
		}
	}
	for i, pt := range parts {
		args := append([][]byte{[]byte(kind)}, pt.names...)
		if err := s.sendAwaited(pt.sc, args, cfs[i]); err != nil {
			for _, cf := range cfs[:i] {
				cf.abandon()
			}
			return c.fail(string(resp.ErrorText(errorReply(err))))
		}
	}
	c.confirm = cfs[0]
	return s.noReply(c)
}

// first returns the first connection of conns, or nil.
func first(conns []*subConn) *subConn {
	if len(conns) == 0 {
		return nil
	}
	return conns[0]
}

// isKeyspace reports whether a channel or pattern is meant for Redis's
// keyspace notifications (__keyspace@<db>__:<key>, __keyevent@<db>__:<event>,
// or a pattern starting like them): each node publishes them only for its
// own keys, so the proxy subscribes to them on every master.
func isKeyspace(name []byte) bool {
	return bytes.HasPrefix(name, []byte("__key"))
}

// keyspaceKey is the key in subs.conns of the keyspace connection to addr.
func keyspaceKey(addr string) string { return "ks:" + addr }

// isShardConn reports whether the connection key names a shard channels'
// connection.
func isShardConn(key string) bool { return key != "" && !strings.HasPrefix(key, "ks:") }

// errPartialCoverage refuses a keyspace subscription while a slot has no
// master (a failover in progress): its notifications could not be heard.
var errPartialCoverage = errors.New("a slot has no master")

// keyspaceConns returns the session's keyspace connections, ordered by
// address. With dial, it first makes them match the masters (see
// reconcileKeyspace; the caller holds sendMu).
func (p *subs) keyspaceConns(dial bool) ([]*subConn, error) {
	if dial {
		if err := p.reconcileKeyspace(); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var conns []*subConn
	for _, k := range slices.Sorted(maps.Keys(p.conns)) {
		if strings.HasPrefix(k, "ks:") {
			conns = append(conns, p.conns[k])
		}
	}
	return conns, nil
}

// sendAwaited writes the command on sc, cf awaiting its confirmations.
func (s *session) sendAwaited(sc *subConn, args [][]byte, cf *confirmation) error {
	cf.p, cf.sc, cf.done, cf.proto = s.subs, sc, make(chan struct{}), s.proto
	cf.kind = strings.ToLower(string(args[0]))
	for _, n := range args[1:] {
		cf.names = append(cf.names, append([]byte(nil), n...))
	}
	s.subs.mu.Lock()
	sc.waiting = append(sc.waiting, cf) // before sending: the reader may see the reply at once
	s.subs.mu.Unlock()
	if err := sc.d.Send(resp.AppendCommand(nil, args...)); err != nil {
		cf.abandon()
		s.subs.mu.Lock()
		cf.unadd()
		s.subs.mu.Unlock()
		return err
	}
	return nil
}

// wait waits for the confirmation and those chained to it (at most
// confirmWait in all) and appends the command's reply to reply: the node's
// refusal, or its confirmations, each with the client's subscription count
// (channels and patterns, or shard channels) after it, as Redis counts.
// A node counts only what its own connection holds: the shard channels of
// a client are spread over several. Only the writer calls wait.
func (cf *confirmation) wait(reply []byte) []byte {
	t := time.NewTimer(confirmWait)
	defer t.Stop()
	var frames [][]byte
	first, late := cf, false
	for ; cf != nil; cf = cf.next {
		if !late {
			select {
			case <-cf.done:
			case <-t.C:
				late = true
			}
		}
		if late {
			cf.abandon()
		}
		for _, f := range cf.frames {
			if resp.IsError(f) {
				return append(reply, f...)
			}
		}
		if cf.silent {
			continue
		}
		frames = append(frames, cf.frames...)
		if cf.all == "" && len(cf.frames) < len(cf.names) {
			// The node did not confirm them all (its connection broke, or
			// it did not answer in time): the client is answered for every
			// name as if it had, which is what the proxy holds and
			// subscribes again.
			for _, n := range cf.names[len(cf.frames):] {
				frames = append(frames, appendConfirmation(nil, cf.kind, n, false, 0, cf.proto))
			}
		}
	}
	p, proto := first.p, first.proto
	if first.all != "" {
		// An unsubscribe from everything, answered by one connection or
		// several: the names they dropped, or one null name if none
		// dropped any.
		named := slices.DeleteFunc(slices.Clone(frames), func(f []byte) bool {
			_, name := pubsubFrame(f)
			return name == nil
		})
		switch {
		case len(named) > 0:
			frames = named
		case len(frames) > 0:
			frames = frames[:1]
		default:
			frames = [][]byte{appendConfirmation(nil, first.all, nil, true, 0, proto)}
		}
	}
	for _, f := range frames {
		kind, name := pubsubFrame(f)
		p.view.note(string(kind), name)
		reply = appendConfirmation(reply, string(kind), name, name == nil, p.view.count(string(kind)), proto)
	}
	return reply
}

// complete reports whether cf and those chained to it have their answers.
func (cf *confirmation) complete() bool {
	for ; cf != nil; cf = cf.next {
		if !closed(cf.done) {
			return false
		}
	}
	return true
}

// abandon stops waiting for cf.
func (cf *confirmation) abandon() {
	cf.p.mu.Lock()
	defer cf.p.mu.Unlock()
	if i := slices.Index(cf.sc.waiting, cf); i >= 0 {
		cf.sc.waiting = slices.Delete(cf.sc.waiting, i, i+1)
		close(cf.done)
	}
}

// unadd takes the names the command added out of the session's sets
// again: the node did not take the command. p.mu is held.
func (cf *confirmation) unadd() {
	for _, n := range cf.added {
		delete(cf.p.sets.of(cf.kind), n)
	}
	cf.p.showCounts()
}

// showCounts publishes the sizes of the session's sets for CLIENT LIST.
// p.mu is held.
func (p *subs) showCounts() {
	p.s.subCounts[0].Store(int32(len(p.sets.chans)))
	p.s.subCounts[1].Store(int32(len(p.sets.pats)))
	p.s.subCounts[2].Store(int32(len(p.sets.shard)))
}

// received accounts for a confirmation (kind, name) or an error read from
// sc: a confirmation updates what the node holds and counts towards the
// oldest command awaiting one; an error answers that command as a whole
// (the node refused it: -MOVED during a migration, -NOPERM). Neither is
// forwarded: the command's reply is built by the proxy (see confirmation),
// and one that comes with no command awaiting it confirms a silent
// resubscription or a command given up on. p.mu is held.
func (sc *subConn) received(frame []byte, failed bool, kind, name []byte) {
	var head *confirmation
	if len(sc.waiting) > 0 {
		head = sc.waiting[0]
	}
	held := 0 // what an unsubscribe from everything is answered for
	if head != nil && head.all != "" && !head.counted {
		held = len(sc.held.of(head.all))
	}
	if !failed {
		sc.held.note(string(kind), name)
	}
	if !failed && sc.drop > 0 && isSubscribe(kind) {
		sc.drop--
		return
	}
	if head == nil {
		if failed {
			sc.log.Warn("a subscriber connection's node refused a resubscription", "node", sc.d.Addr(), "err", string(resp.ErrorText(frame)))
		}
		return
	}
	if head.all != "" && !head.counted {
		// Its first frame: every command before it is answered, so what
		// the node held until this frame is what it answers for.
		head.counted = true
		head.want = max(1, held)
	}
	head.frames = append(head.frames, append([]byte(nil), frame...))
	if failed {
		head.unadd()
	}
	if head.want--; head.want <= 0 || failed {
		sc.waiting[0] = nil
		sc.waiting = sc.waiting[1:]
		close(head.done)
	}
}

// release ends every confirmation awaited on sc: the connection broke, so
// no more will come, and what the session holds is subscribed again on a
// new one (resubscribe). p.mu is held.
func (sc *subConn) release() {
	for _, cf := range sc.waiting {
		close(cf.done)
	}
	sc.waiting = nil
}

// noReply makes c a call that writes nothing.
func (s *session) noReply(c *call) *call {
	c.reply = c.reply[:0]
	return c
}

// appendConfirmation appends a confirmation frame: kind, the channel or
// pattern (or a null one), and the subscription count.
func appendConfirmation(reply []byte, kind string, name []byte, null bool, count, proto int) []byte {
	reply = resp.AppendPushHeader(reply, 3, proto)
	reply = resp.AppendBulkString(reply, kind)
	if null {
		reply = resp.AppendNull(reply, proto)
	} else {
		reply = resp.AppendBulk(reply, name)
	}
	return resp.AppendInt(reply, int64(count))
}

// apply changes the session's sets as the command kind with names does, and
// returns the names it added. If answer is not nil, it appends the frames
// Redis answers the command with: one per name or, for an unsubscribe
// without names, one per name held (one with a null name when none was),
// each with the client's subscription count after it. p.mu is held.
func (p *subs) apply(answer *[]byte, kind string, names [][]byte, proto int) []string {
	set := p.sets.of(kind)
	defer p.showCounts()
	frame := func(name []byte, null bool) {
		if answer != nil {
			*answer = appendConfirmation(*answer, kind, name, null, p.sets.count(kind), proto)
		}
	}
	unsub := strings.HasSuffix(kind, "unsubscribe")
	if unsub && len(names) == 0 {
		if len(set) == 0 {
			frame(nil, true)
		}
		for _, n := range slices.Sorted(maps.Keys(set)) {
			delete(set, n)
			frame([]byte(n), false)
		}
		return nil
	}
	var added []string
	for _, n := range names {
		if unsub {
			delete(set, string(n))
		} else if !set[string(n)] {
			set[string(n)] = true
			added = append(added, string(n))
		}
		frame(n, false)
	}
	return added
}

// dial opens the subscriber connection key to addr and starts its reader.
func (p *subs) dial(key, addr string) (*subConn, error) {
	d, err := p.s.srv.router.Dedicated(-1, addr, p.s.proto)
	if err != nil {
		return nil, err
	}
	sc := &subConn{key: key, d: d, log: p.s.srv.log, held: newSubView()}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		d.Close()
		return nil, router.ErrClosed
	}
	if cur := p.conns[key]; cur != nil {
		// Opened meanwhile by the session or by a resubscription.
		p.mu.Unlock()
		d.Close()
		return cur, nil
	}
	p.conns[key] = sc
	p.wg.Add(1)
	p.mu.Unlock()
	go p.read(sc)
	return sc, nil
}

// read forwards what the subscriber connection receives. When the
// connection breaks while the session lives, it subscribes again on a new
// one (after a failover or a node restart), silently.
func (p *subs) read(sc *subConn) {
	defer p.wg.Done()
	for {
		frame, err := sc.d.Receive()
		if err != nil {
			sc.d.Close()
			p.mu.Lock()
			sc.release()
			retired := sc.retired
			p.mu.Unlock()
			if !retired {
				p.resubscribe(sc)
			}
			return
		}
		failed := resp.IsError(frame)
		kind, name := pubsubFrame(frame)
		if !failed && !isConfirmation(kind) {
			// A message: nothing to account for, forwarded as it is.
			if !p.s.push(frame, int32(p.s.srv.cfg.MaxPipeline)) {
				return
			}
			continue
		}
		p.mu.Lock()
		sc.received(frame, failed, kind, name)
		p.mu.Unlock()
	}
}

// isSubscribe reports whether kind is a subscription's confirmation.
func isSubscribe(kind []byte) bool {
	switch string(kind) {
	case "subscribe", "psubscribe", "ssubscribe":
		return true
	}
	return false
}

// isConfirmation reports whether kind is a confirmation of a
// (P|S)(UN)SUBSCRIBE, as opposed to a message.
func isConfirmation(kind []byte) bool {
	switch string(kind) {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
		return true
	}
	return false
}

// pubsubFrame returns the kind and the channel (or pattern) of a
// three-element pub/sub frame, or nils.
func pubsubFrame(frame []byte) (kind, name []byte) {
	var buf [4][]byte
	els, _, err := resp.Elements(frame, buf[:0])
	if err != nil || len(els) != 3 {
		return nil, nil
	}
	kind, _ = resp.BulkValue(els[0])
	name, _ = resp.BulkValue(els[1])
	return kind, name
}

// resubscribe replaces a broken subscriber connection, retrying within the
// router's retry window, and subscribes it to what the session holds.
func (p *subs) resubscribe(old *subConn) {
	deadline := time.Now().Add(15 * time.Second)
	for wait := 50 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
		time.Sleep(wait)
		p.sendMu.Lock()
		done := p.resubscribeOnce(old)
		p.sendMu.Unlock()
		if done {
			return
		}
	}
	p.s.srv.log.Warn("pub/sub connection lost and not restored; closing the client", "client", p.s.id)
	p.s.conn.Close()
}

// resubscribeOnce makes one attempt of resubscribe, holding sendMu. It
// reports whether nothing is left to do.
func (p *subs) resubscribeOnce(old *subConn) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return true
	}
	if p.conns[old.key] == old {
		delete(p.conns, old.key)
	}
	if strings.HasPrefix(old.key, "ks:") {
		held := len(keysWhere(p.sets.chans, true)) + len(keysWhere(p.sets.pats, true))
		p.mu.Unlock()
		if held == 0 {
			return true
		}
		p.s.srv.router.Refresh("pubsub")
		if p.reconcileKeyspace() == nil {
			return true
		}
		return false
	}
	var frames [][]byte
	drop := 0
	var addr string
	if old.key == "" {
		// Keyspace names live on the keyspace connections.
		chans, pats := keysWhere(p.sets.chans, false), keysWhere(p.sets.pats, false)
		frames, drop = subscribeFrames(chans, pats), len(chans)+len(pats)
		if masters := p.s.srv.router.Masters(); len(masters) > 0 {
			addr = masters[int(p.s.id)%len(masters)]
		}
	} else {
		// Shard channels that lived on the old node: one SSUBSCRIBE per
		// channel, each on the current master of its slot.
		for ch := range p.sets.shard {
			if p.s.srv.router.MasterOf(router.Slot([]byte(ch))) != "" {
				frames = append(frames, resp.AppendCommandStrings(nil, "SSUBSCRIBE", ch))
			}
		}
	}
	p.mu.Unlock()
	if len(frames) == 0 {
		return true
	}
	p.s.srv.router.Refresh("pubsub")
	if old.key != "" {
		// Re-home every shard channel by its slot.
		ok := true
		for _, f := range frames {
			els, _, _ := resp.Elements(append([]byte(nil), f...), nil)
			ch, _ := resp.BulkValue(els[1])
			a := p.s.srv.router.MasterOf(router.Slot(ch))
			p.mu.Lock()
			sc := p.conns[a]
			p.mu.Unlock()
			if sc == nil {
				var err error
				if sc, err = p.dial(a, a); err != nil {
					ok = false
					break
				}
			}
			p.mu.Lock()
			sc.drop++
			p.mu.Unlock()
			if sc.d.Send(f) != nil {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		return false
	}
	if addr == "" {
		return false
	}
	sc, err := p.dial("", addr)
	if err != nil {
		return false
	}
	p.mu.Lock()
	sc.drop += drop
	p.mu.Unlock()
	for _, f := range frames {
		if sc.d.Send(f) != nil {
			break
		}
	}
	return true
}

// keysWhere returns the names of set that are keyspace names (or are not).
func keysWhere(set map[string]bool, keyspace bool) []string {
	var names []string
	for n := range set {
		if isKeyspace([]byte(n)) == keyspace {
			names = append(names, n)
		}
	}
	return names
}

// reconcileKeyspace gives every master serving slots a keyspace
// connection, subscribed silently to the session's keyspace channels and
// patterns (a master promoted by a failover, a master added), then closes
// those to nodes that serve none (after a manual failover the old master,
// now a replica, would repeat its master's notifications): a notification
// may come twice meanwhile, never not at all. It fails while a slot has no
// master, leaving the old connections. The caller holds sendMu.
func (p *subs) reconcileKeyspace() error {
	masters := p.s.srv.router.MastersBySlot()
	if len(masters) == 0 {
		return router.ErrNoTopology
	}
	if p.s.srv.router.SlotsCovered() < router.SlotCount {
		return errPartialCoverage
	}
	p.mu.Lock()
	chans, pats := keysWhere(p.sets.chans, true), keysWhere(p.sets.pats, true)
	p.mu.Unlock()
	for _, m := range masters {
		p.mu.Lock()
		sc := p.conns[keyspaceKey(m)]
		p.mu.Unlock()
		if sc != nil {
			continue
		}
		sc, err := p.dial(keyspaceKey(m), m)
		if err != nil {
			return err
		}
		p.mu.Lock()
		sc.drop += len(chans) + len(pats)
		p.mu.Unlock()
		for _, f := range subscribeFrames(chans, pats) {
			if err := sc.d.Send(f); err != nil {
				return err
			}
		}
	}
	p.mu.Lock()
	var stale []*subConn
	for k, sc := range p.conns {
		if strings.HasPrefix(k, "ks:") && !slices.Contains(masters, strings.TrimPrefix(k, "ks:")) {
			delete(p.conns, k)
			sc.retired = true // closed on purpose: not to be subscribed again
			stale = append(stale, sc)
		}
	}
	p.mu.Unlock()
	for _, sc := range stale {
		sc.d.Abort()
	}
	return nil
}

// layoutPoll is how often a keyspace subscriber's session checks the
// cluster layout (one atomic load).
const layoutPoll = 250 * time.Millisecond

// watchKeyspace starts, once per session, watchLayout; layout is the
// router's LayoutVersion read before the session's keyspace connections
// were last made to match the masters.
func (p *subs) watchKeyspace(layout uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watchStop != nil || p.closed {
		return
	}
	p.watchStop = make(chan struct{})
	p.wg.Add(1)
	go p.watchLayout(p.watchStop, layout)
}

// watchLayout keeps the keyspace connections on the masters when the
// cluster layout changes without any of them breaking: a master added
// (its keys' notifications would go unheard), a manual failover (the old
// master, a replica now, would relay the new one's). It runs until the
// session's subscriptions close; while the client holds no keyspace
// subscription it only notes the layout.
func (p *subs) watchLayout(stop <-chan struct{}, seen uint64) {
	defer p.wg.Done()
	r := p.s.srv.router
	tick := time.NewTicker(layoutPoll)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		v := r.LayoutVersion()
		if v == seen {
			continue
		}
		p.sendMu.Lock()
		p.mu.Lock()
		held := len(keysWhere(p.sets.chans, true)) + len(keysWhere(p.sets.pats, true))
		closed := p.closed
		p.mu.Unlock()
		// A failed reconcile (a slot without a master, mid-failover) is
		// tried again at the next tick.
		if closed || held == 0 || p.reconcileKeyspace() == nil {
			seen = v
		}
		p.sendMu.Unlock()
	}
}

// subscribeFrames returns the SUBSCRIBE of chans and the PSUBSCRIBE of
// pats, leaving out an empty one.
func subscribeFrames(chans, pats []string) [][]byte {
	var frames [][]byte
	if len(chans) > 0 {
		frames = append(frames, resp.AppendCommandStrings(nil, append([]string{"SUBSCRIBE"}, chans...)...))
	}
	if len(pats) > 0 {
		frames = append(frames, resp.AppendCommandStrings(nil, append([]string{"PSUBSCRIBE"}, pats...)...))
	}
	return frames
}

// close ends every subscriber connection and waits for their readers.
func (p *subs) close() {
	p.mu.Lock()
	p.closed = true
	if p.watchStop != nil {
		close(p.watchStop)
	}
	conns := p.conns
	p.conns = map[string]*subConn{}
	p.mu.Unlock()
	for _, sc := range conns {
		sc.d.Abort()
	}
	p.wg.Wait()
}

// push queues a frame from a subscriber connection (or a MONITOR line)
// for the client. The queue is bounded by limit frames: a client that does
// not read fast enough is disconnected rather than buffered without limit.
// It reports false then.
func (s *session) push(frame []byte, limit int32) bool {
	if s.queued.Add(1) > limit {
		s.queued.Add(-1)
		s.srv.obs.SlowSubscriber()
		s.srv.log.Warn("disconnecting a slow pub/sub or MONITOR client: its output queue is full",
			"client", s.id, "addr", s.conn.RemoteAddr().String(), "limit", limit)
		s.conn.Close()
		return false
	}
	c := s.srv.getCall()
	c.reply = append(c.reply, frame...)
	s.startWriter()
	s.pending.put(c)
	return true
}
