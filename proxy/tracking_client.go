package proxy

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// The session's side of client-side caching (see tracking.go for the
// tracker): the CLIENT TRACKING state and commands, the registration of
// reads, and the outbox that writes invalidations in order with the
// replies.

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
