package proxy

import (
	"bytes"
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
// master of the channel's slot. Every frame a subscriber connection reads is
// forwarded to the client through the session's ordered queue.
type subs struct {
	s *session

	mu       sync.Mutex // guards everything below
	conns    map[string]*subConn
	channels map[string]bool // SUBSCRIBE
	patterns map[string]bool // PSUBSCRIBE
	shard    map[string]bool // SSUBSCRIBE
	closed   bool
	wg       sync.WaitGroup
}

// subConn is one subscriber connection; key is "" for the classic one, the
// node address for shard channels.
type subConn struct {
	key  string
	d    *router.Dedicated
	drop int // confirmations of a silent resubscription still to drop
}

// count is how many subscriptions the session holds.
func (p *subs) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.channels) + len(p.patterns) + len(p.shard)
}

// pubsubAllowed lists what a RESP2 client may send while subscribed.
func pubsubAllowed(name string) bool {
	switch name {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "ping", "quit", "reset":
		return true
	}
	return false
}

// pubsub handles the (P|S)(UN)SUBSCRIBE commands. Their replies come from
// the node, as push frames forwarded by the subscriber connection.
func (s *session) pubsub(c *call, spec *command.Spec, args [][]byte) *call {
	if s.subs == nil {
		s.subs = &subs{s: s, conns: map[string]*subConn{}, channels: map[string]bool{},
			patterns: map[string]bool{}, shard: map[string]bool{}}
	}
	p := s.subs
	names := args[1:]
	switch spec.Name {
	case "subscribe", "psubscribe", "unsubscribe", "punsubscribe":
		set := p.channels
		if spec.Name == "psubscribe" || spec.Name == "punsubscribe" {
			set = p.patterns
		}
		unsub := strings.HasPrefix(spec.Name, "un") || strings.HasPrefix(spec.Name, "pun")
		p.mu.Lock()
		sc := p.conns[""]
		p.mu.Unlock()
		if unsub && sc == nil {
			// Not subscribed anywhere: answer as Redis does.
			return s.unsubscribedReply(c, spec.Name, names)
		}
		if sc == nil {
			masters := s.srv.router.Masters()
			if len(masters) == 0 {
				return c.fail("CLUSTERDOWN proxy: cluster topology not loaded yet")
			}
			var err error
			if sc, err = p.dial("", masters[int(s.id)%len(masters)]); err != nil {
				return c.fail(string(resp.ErrorText(errorReply(err))))
			}
		}
		p.mu.Lock()
		for _, n := range names {
			if unsub {
				delete(set, string(n))
			} else {
				set[string(n)] = true
			}
		}
		if unsub && len(names) == 0 {
			clear(set)
		}
		p.mu.Unlock()
		return s.subSend(c, sc, args)
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
		if unsub && len(names) == 0 {
			// From every shard channel, on every connection holding one.
			p.mu.Lock()
			clear(p.shard)
			var conns []*subConn
			for k, sc := range p.conns {
				if k != "" {
					conns = append(conns, sc)
				}
			}
			p.mu.Unlock()
			if len(conns) == 0 {
				return s.unsubscribedReply(c, spec.Name, nil)
			}
			for _, sc := range conns {
				_ = sc.d.Send(resp.AppendCommand(nil, args...))
			}
			return s.noReply(c)
		}
		addr := s.srv.router.MasterOf(slot)
		if addr == "" {
			return c.fail("CLUSTERDOWN proxy: no reachable master serves this hash slot")
		}
		p.mu.Lock()
		sc := p.conns[addr]
		p.mu.Unlock()
		if sc == nil {
			if unsub {
				return s.unsubscribedReply(c, spec.Name, names)
			}
			var err error
			if sc, err = p.dial(addr, addr); err != nil {
				return c.fail(string(resp.ErrorText(errorReply(err))))
			}
		}
		p.mu.Lock()
		for _, n := range names {
			if unsub {
				delete(p.shard, string(n))
			} else {
				p.shard[string(n)] = true
			}
		}
		p.mu.Unlock()
		return s.subSend(c, sc, args)
	}
}

// subSend writes the command on the subscriber connection; the client's
// replies arrive through it, so c itself answers nothing.
func (s *session) subSend(c *call, sc *subConn, args [][]byte) *call {
	if err := sc.d.Send(resp.AppendCommand(nil, args...)); err != nil {
		return c.fail(string(resp.ErrorText(errorReply(err))))
	}
	return s.noReply(c)
}

// noReply makes c a call that writes nothing.
func (s *session) noReply(c *call) *call {
	c.reply = c.reply[:0]
	return c
}

// unsubscribedReply answers an unsubscribe from channels never subscribed.
func (s *session) unsubscribedReply(c *call, kind string, names [][]byte) *call {
	if len(names) == 0 {
		names = [][]byte{nil}
	}
	for _, n := range names {
		c.reply = resp.AppendPushHeader(c.reply, 3, s.proto)
		c.reply = resp.AppendBulkString(c.reply, kind)
		if n == nil {
			c.reply = resp.AppendNull(c.reply, s.proto)
		} else {
			c.reply = resp.AppendBulk(c.reply, n)
		}
		c.reply = resp.AppendInt(c.reply, int64(s.subs.count()))
	}
	return c
}

// dial opens the subscriber connection key to addr and starts its reader.
func (p *subs) dial(key, addr string) (*subConn, error) {
	d, err := p.s.srv.router.Dedicated(-1, addr, p.s.proto)
	if err != nil {
		return nil, err
	}
	sc := &subConn{key: key, d: d}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		d.Close()
		return nil, router.ErrClosed
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
			p.resubscribe(sc)
			return
		}
		p.mu.Lock()
		drop := sc.drop > 0 && isSubscribeConfirmation(frame)
		if drop {
			sc.drop--
		}
		p.mu.Unlock()
		if drop {
			continue
		}
		if !p.s.push(frame) {
			return
		}
	}
}

func isSubscribeConfirmation(frame []byte) bool {
	els, _, err := resp.Elements(frame, nil)
	if err != nil || len(els) != 3 {
		return false
	}
	kind, _ := resp.BulkValue(els[0])
	return bytes.Equal(kind, []byte("subscribe")) || bytes.Equal(kind, []byte("psubscribe")) || bytes.Equal(kind, []byte("ssubscribe"))
}

// resubscribe replaces a broken subscriber connection, retrying within the
// router's retry window, and subscribes it to what the session holds.
func (p *subs) resubscribe(old *subConn) {
	deadline := time.Now().Add(15 * time.Second)
	for wait := 50 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
		time.Sleep(wait)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		delete(p.conns, old.key)
		var frames [][]byte
		drop := 0
		var addr string
		if old.key == "" {
			if len(p.channels) > 0 {
				frames = append(frames, subFrame("SUBSCRIBE", p.channels))
				drop += len(p.channels)
			}
			if len(p.patterns) > 0 {
				frames = append(frames, subFrame("PSUBSCRIBE", p.patterns))
				drop += len(p.patterns)
			}
			if masters := p.s.srv.router.Masters(); len(masters) > 0 {
				addr = masters[int(p.s.id)%len(masters)]
			}
		} else {
			// Shard channels that lived on the old node: one SSUBSCRIBE per
			// channel, each on the current master of its slot.
			for ch := range p.shard {
				if p.s.srv.router.MasterOf(router.Slot([]byte(ch))) != "" {
					frames = append(frames, resp.AppendCommandStrings(nil, "SSUBSCRIBE", ch))
				}
			}
		}
		p.mu.Unlock()
		if len(frames) == 0 {
			return
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
				return
			}
			continue
		}
		if addr == "" {
			continue
		}
		sc, err := p.dial("", addr)
		if err != nil {
			continue
		}
		p.mu.Lock()
		sc.drop = drop
		p.mu.Unlock()
		for _, f := range frames {
			if sc.d.Send(f) != nil {
				break
			}
		}
		return
	}
	p.s.srv.log.Warn("pub/sub connection lost and not restored; closing the client", "client", p.s.id)
	p.s.conn.Close()
}

func subFrame(cmd string, set map[string]bool) []byte {
	args := []string{cmd}
	for k := range set {
		args = append(args, k)
	}
	return resp.AppendCommandStrings(nil, args...)
}

// close ends every subscriber connection and waits for their readers.
func (p *subs) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*subConn{}
	p.mu.Unlock()
	for _, sc := range conns {
		sc.d.Abort()
	}
	p.wg.Wait()
}

// push queues a frame from a subscriber connection for the client. The
// queue is bounded: a client that does not read its messages fast enough is
// disconnected rather than buffered without limit. It reports false then.
func (s *session) push(frame []byte) bool {
	if s.queued.Add(1) > int32(s.srv.cfg.MaxPipeline) {
		s.queued.Add(-1)
		s.srv.obs.SlowSubscriber()
		s.srv.log.Warn("disconnecting a slow pub/sub client: its output queue is full",
			"client", s.id, "addr", s.conn.RemoteAddr().String(), "limit", s.srv.cfg.MaxPipeline)
		s.conn.Close()
		return false
	}
	c := s.srv.getCall()
	c.reply = append(c.reply, frame...)
	s.startWriter()
	s.pending.put(c)
	return true
}
