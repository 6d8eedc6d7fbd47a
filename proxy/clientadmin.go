package proxy

import (
	"bytes"
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// This file holds the CLIENT subcommands about the proxy's clients beyond
// the caller's own name and id: KILL, PAUSE/UNPAUSE, UNBLOCK, LIST and
// REPLY. They apply to this proxy instance's client connections, never to
// the shared node connections.

// actsOnOtherClients reports whether a command the proxy answers itself
// acts on other clients, sees their commands (MONITOR) or keys (HOTKEYS),
// or shows the users
// (ACL USERS, LIST, GETUSER, DRYRUN, LOG): a restricted default user may
// not run it, as it may not run the @admin commands sent to nodes.
func actsOnOtherClients(name string) bool {
	switch name {
	case "client|kill", "client|pause", "client|unpause", "client|unblock", "monitor",
		"acl|users", "acl|list", "acl|getuser", "acl|dryrun", "acl|log",
		"hotkeys|start", "hotkeys|stop", "hotkeys|get", "hotkeys|reset":
		return true
	}
	return false
}

// pauser holds client commands while a CLIENT PAUSE is in effect. Sessions
// check on before each command (one atomic load); a held reader waits on
// the current release channel, which is closed whenever the pause ends or
// changes, and then checks again.
type pauser struct {
	on atomic.Bool // a pause is set; it may have just expired

	mu      sync.Mutex
	until   time.Time
	all     bool          // ALL: every command waits; else WRITE: writes wait
	release chan struct{} // closed when the pause ends or changes
	timer   *time.Timer
}

// pause holds commands for d: every command when all is set, else those
// that write. Like Redis, a later end time already set is kept and the mode
// is replaced.
func (p *pauser) pause(d time.Duration, all bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := time.Now().Add(d); until.After(p.until) || !p.on.Load() {
		p.until = until
	}
	if p.on.Load() && p.all != all {
		p.kickLocked() // readers held by ALL may now go on
	}
	p.all = all
	if p.release == nil {
		p.release = make(chan struct{})
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer = time.AfterFunc(time.Until(p.until), p.expire)
	p.on.Store(true)
}

// expire ends the pause if its time has come (a later PAUSE may have moved
// it).
func (p *pauser) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on.Load() {
		return
	}
	if left := time.Until(p.until); left > 0 {
		p.timer = time.AfterFunc(left, p.expire)
		return
	}
	p.endLocked()
}

// unpause ends the pause at once.
func (p *pauser) unpause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on.Load() {
		p.endLocked()
	}
}

func (p *pauser) endLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.on.Store(false)
	p.until = time.Time{}
	if p.release != nil {
		close(p.release)
		p.release = nil
	}
}

// kick wakes every held reader to check again (its session may be
// closing).
func (p *pauser) kick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on.Load() {
		p.kickLocked()
	}
}

func (p *pauser) kickLocked() {
	if p.release != nil {
		close(p.release)
	}
	p.release = make(chan struct{})
}

// holds returns what a command must wait on before it runs (write: it
// writes or may replicate), or nil when it may run now.
func (p *pauser) holds(write bool) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on.Load() || (!p.all && !write) {
		return nil
	}
	return p.release
}

// state is the pause as INFO shows it: "none", "write" or "all", and the
// time left.
func (p *pauser) state() (string, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.on.Load():
		return "none", 0
	case p.all:
		return "all", max(time.Until(p.until), 0)
	default:
		return "write", max(time.Until(p.until), 0)
	}
}

// pauseWrites reports whether a WRITE pause holds a command: one that
// writes or may replicate (scripts, PUBLISH, PFCOUNT), WAIT, and EXEC of a
// transaction that queued such a command.
func (s *session) pauseWrites(spec *command.Spec) bool {
	switch spec.Name {
	case "wait", "waitaof":
		return true
	case "exec":
		return s.tx != nil && s.tx.writes
	}
	return spec.Flags&(command.Write|command.MayReplicate) != 0
}

// heldByPause waits while a CLIENT PAUSE holds the command of spec. It
// reports false when the session is closing meanwhile (CLIENT KILL, or
// the proxy shutting down): the command must not run then.
func (s *session) heldByPause(spec *command.Spec) bool {
	write := s.pauseWrites(spec)
	if s.tx != nil && s.tx.multi && spec.Name != "exec" && spec.Name != "discard" {
		write = false // a WRITE pause holds queued commands at EXEC, as Redis does
	}
	for {
		ch := s.srv.pause.holds(write)
		if ch == nil {
			return true
		}
		if s.stopped.Load() {
			return false
		}
		<-ch
	}
}

// kill closes the client connection of another session: its reader stops,
// and what it had sent is not answered.
func (s *session) kill() {
	s.stopped.Store(true)
	s.conn.Close()
	s.srv.pause.kick() // a reader held by a pause sees stopped
}

// killFilter is a CLIENT KILL filter; zero fields match every client.
type killFilter struct {
	id     int64
	addr   string
	laddr  string
	user   string
	typ    string // "normal" or "pubsub"; "none" matches nobody (master, replica)
	maxAge time.Duration
	skipMe bool
}

func (f *killFilter) matches(s, caller *session) bool {
	switch {
	case s.stopped.Load(), // killed already, or the proxy is stopping
		f.skipMe && s == caller,
		f.id != 0 && s.id != f.id,
		f.addr != "" && s.addr != f.addr,
		f.laddr != "" && s.conn.LocalAddr().String() != f.laddr,
		f.user != "" && s.userName() != f.user,
		f.maxAge > 0 && time.Since(s.created) <= f.maxAge:
		return false
	}
	switch f.typ {
	case "none":
		return false
	case "pubsub":
		return s.pubsubClient()
	case "normal":
		return !s.pubsubClient()
	}
	return true
}

// pubsubClient reports whether the client holds subscriptions (read by
// other sessions).
func (s *session) pubsubClient() bool {
	return s.subCounts[0].Load()+s.subCounts[1].Load()+s.subCounts[2].Load() > 0
}

// clientKill answers CLIENT KILL, in its old form (an address: +OK or an
// error) and its filter form (a count of clients closed). A client that
// kills itself gets its reply before the connection closes.
func (s *session) clientKill(c *call, args [][]byte) *call {
	if len(args) < 3 {
		return c.fail("ERR wrong number of arguments for 'client|kill' command")
	}
	f := killFilter{skipMe: true}
	old := len(args) == 3
	if old {
		f.addr, f.skipMe = string(args[2]), false
	} else {
		if len(args)%2 != 0 {
			return c.fail("ERR syntax error")
		}
		for i := 2; i < len(args); i += 2 {
			v := string(args[i+1])
			switch strings.ToLower(string(args[i])) {
			case "id":
				id, err := strconv.ParseInt(v, 10, 64)
				if err != nil || id <= 0 {
					return c.fail("ERR client-id should be greater than 0")
				}
				f.id = id
			case "addr":
				f.addr = v
			case "laddr":
				f.laddr = v
			case "user":
				if s.srv.users.Load().byName[v] == nil {
					return c.fail("ERR No such user '" + trunc(args[i+1], 128) + "'")
				}
				f.user = v
			case "type":
				switch t := strings.ToLower(v); t {
				case "normal", "pubsub":
					f.typ = t
				case "master", "slave", "replica":
					f.typ = "none" // the proxy has no replication clients
				default:
					return c.fail("ERR Unknown client type '" + trunc(args[i+1], 128) + "'")
				}
			case "skipme":
				switch strings.ToLower(v) {
				case "yes":
					f.skipMe = true
				case "no":
					f.skipMe = false
				default:
					return c.fail("ERR syntax error")
				}
			case "maxage":
				secs, err := strconv.ParseInt(v, 10, 64)
				if err != nil || secs < 0 {
					return c.fail("ERR maxage is not an integer or out of range")
				}
				f.maxAge = time.Duration(min(secs, int64(time.Duration(1<<62)/time.Second))) * time.Second
			default:
				return c.fail("ERR syntax error")
			}
		}
	}
	var victims []*session
	s.srv.mu.Lock()
	for other := range s.srv.sessions {
		if f.matches(other, s) {
			victims = append(victims, other)
		}
	}
	s.srv.mu.Unlock()
	self := false
	for _, v := range victims {
		if v == s {
			self = true // closed once the reply is written
			continue
		}
		v.kill()
	}
	if len(victims) > 0 {
		s.srv.log.Info("clients killed by CLIENT KILL", "client", s.id, "addr", s.addr, "user", s.userName(), "killed", len(victims))
	}
	c.quit = self
	if old {
		if len(victims) == 0 {
			return c.fail("ERR No such client")
		}
		c.reply = resp.AppendOK(c.reply)
		return c
	}
	c.reply = resp.AppendInt(c.reply, int64(len(victims)))
	return c
}

// clientPause answers CLIENT PAUSE timeout [WRITE|ALL].
func (s *session) clientPause(c *call, args [][]byte) *call {
	if len(args) != 3 && len(args) != 4 {
		return c.fail("ERR wrong number of arguments for 'client|pause' command")
	}
	ms, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		return c.fail("ERR timeout is not an integer or out of range")
	}
	if ms < 0 {
		return c.fail("ERR timeout is negative")
	}
	all := true
	if len(args) == 4 {
		switch strings.ToLower(string(args[3])) {
		case "all":
		case "write":
			all = false
		default:
			return c.fail("ERR CLIENT PAUSE mode must be WRITE or ALL")
		}
	}
	d := time.Duration(min(ms, int64(time.Duration(1<<62)/time.Millisecond))) * time.Millisecond
	s.srv.pause.pause(d, all)
	mode := "write"
	if all {
		mode = "all"
	}
	s.srv.log.Info("clients paused by CLIENT PAUSE", "client", s.id, "addr", s.addr, "user", s.userName(), "mode", mode, "for", d)
	c.reply = resp.AppendOK(c.reply)
	return c
}

// clientUnpause answers CLIENT UNPAUSE.
func (s *session) clientUnpause(c *call, args [][]byte) *call {
	if len(args) != 2 {
		return c.fail("ERR wrong number of arguments for 'client|unpause' command")
	}
	if mode, _ := s.srv.pause.state(); mode != "none" {
		s.srv.log.Info("clients unpaused by CLIENT UNPAUSE", "client", s.id, "addr", s.addr, "user", s.userName())
	}
	s.srv.pause.unpause()
	c.reply = resp.AppendOK(c.reply)
	return c
}

// clientReply answers CLIENT REPLY ON|OFF|SKIP: OFF mutes every later
// reply until ON, SKIP the next command's; neither is answered itself.
// Pub/sub messages and subscription confirmations still go out, as Redis
// sends them.
func (s *session) clientReply(c *call, args [][]byte) *call {
	if len(args) != 3 {
		return c.fail("ERR wrong number of arguments for 'client|reply' command")
	}
	switch strings.ToLower(string(args[2])) {
	case "on":
		s.replyOff, s.skipNext = false, false
		c.mute = false
		c.reply = resp.AppendOK(c.reply)
	case "off":
		s.replyOff = true
		c.mute = true
	case "skip":
		if !s.replyOff {
			s.skipNext = true
		}
		c.mute = true
	default:
		return c.fail("ERR syntax error")
	}
	return c
}

// Client state flags, as CLIENT LIST shows them.
const (
	flagBlocked  uint32 = 1 << iota // b: waiting in a blocking command
	flagMulti                       // x: inside MULTI
	flagMonitor                     // O: in MONITOR mode
	flagTracking                    // t: CLIENT TRACKING on
	flagBcast                       // B: tracking in BCAST mode
)

// setFlag sets or clears a state flag; only the session's reader calls it.
func (s *session) setFlag(f uint32, on bool) {
	v := s.flags.Load()
	if on {
		v |= f
	} else {
		v &^= f
	}
	s.flags.Store(v)
}

// setProto sets the client's protocol version.
func (s *session) setProto(proto int) {
	s.proto = proto
	s.protoShown.Store(int32(proto))
}

// flagLetters renders the state flags as Redis's CLIENT LIST does: O
// monitor, P pub/sub, x MULTI, b blocked, N none.
func (s *session) flagLetters() string {
	f := s.flags.Load()
	var b []byte
	if f&flagMonitor != 0 {
		b = append(b, 'O')
	}
	if s.pubsubClient() {
		b = append(b, 'P')
	}
	if f&flagMulti != 0 {
		b = append(b, 'x')
	}
	if f&flagBlocked != 0 {
		b = append(b, 'b')
	}
	if f&flagTracking != 0 {
		b = append(b, 't')
		if s.redirBroken.Load() {
			b = append(b, 'R')
		}
	}
	if f&flagBcast != 0 {
		b = append(b, 'B')
	}
	if len(b) == 0 {
		return "N"
	}
	return string(b)
}

// clientList answers CLIENT LIST [TYPE normal|master|replica|pubsub] or
// CLIENT LIST ID id [id ...], in id order.
func (s *session) clientList(c *call, args [][]byte) *call {
	typ := ""
	var ids map[int64]bool
	switch {
	case len(args) == 2:
	case len(args) == 4 && strings.EqualFold(string(args[2]), "type"):
		switch t := strings.ToLower(string(args[3])); t {
		case "normal", "pubsub":
			typ = t
		case "master", "slave", "replica":
			typ = "none"
		default:
			return c.fail("ERR Unknown client type '" + trunc(args[3], 128) + "'")
		}
	case len(args) > 3 && strings.EqualFold(string(args[2]), "id"):
		ids = map[int64]bool{}
		for _, a := range args[3:] {
			id, err := strconv.ParseInt(string(a), 10, 64)
			if err != nil || id <= 0 {
				return c.fail("ERR Invalid client ID")
			}
			ids[id] = true
		}
	default:
		return c.fail("ERR syntax error")
	}
	var list []*session
	s.srv.mu.Lock()
	for other := range s.srv.sessions {
		switch {
		case ids != nil && !ids[other.id],
			typ == "none",
			typ == "pubsub" && !other.pubsubClient(),
			typ == "normal" && other.pubsubClient():
			continue
		}
		list = append(list, other)
	}
	s.srv.mu.Unlock()
	slices.SortFunc(list, func(a, b *session) int { return cmp.Compare(a.id, b.id) })
	var sb strings.Builder
	for _, other := range list {
		sb.WriteString(other.clientLine())
	}
	c.reply = resp.AppendVerbatim(c.reply, sb.String(), s.proto)
	return c
}

// clientUnblock answers CLIENT UNBLOCK id [TIMEOUT|ERROR] for a proxy
// client blocked in BLPOP, XREAD BLOCK and the like: the node connection
// its command waits on is found on the node (CLIENT LIST, by the
// connection's address) and unblocked there, so the node answers the
// command as Redis does (a timeout's reply, or -UNBLOCKED). The connection
// is never pooled again, so the unblocking can only reach that command. A
// command still on its way to the node is waited for, up to unblockWait.
// It answers 1 when a command was unblocked, else 0.
func (s *session) clientUnblock(c *call, args [][]byte) *call {
	if len(args) != 3 && len(args) != 4 {
		return c.fail("ERR wrong number of arguments for 'client|unblock' command")
	}
	id, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		return c.fail("ERR value is not an integer or out of range")
	}
	mode := "TIMEOUT"
	if len(args) == 4 {
		switch strings.ToLower(string(args[3])) {
		case "timeout":
		case "error":
			mode = "ERROR"
		default:
			return c.fail("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
		}
	}
	var target *session
	s.srv.mu.Lock()
	for other := range s.srv.sessions {
		if other.id == id {
			target = other
			break
		}
	}
	s.srv.mu.Unlock()
	n, msg := s.unblock(target, mode)
	if msg != "" {
		return c.fail(msg)
	}
	c.reply = resp.AppendInt(c.reply, n)
	return c
}

// unblockWait bounds how long CLIENT UNBLOCK waits for a client's blocking
// command to reach its node: the client shows as blocked from the moment
// the proxy reads the command.
const unblockWait = time.Second

// unblock unblocks target's blocking command on its node; it returns 0
// when target runs none, or an error message.
func (s *session) unblock(target *session, mode string) (int64, string) {
	deadline := time.Now().Add(unblockWait)
	for {
		n, msg := s.unblockOnce(target, mode)
		if n > 0 || msg != "" || target == nil || target.flags.Load()&flagBlocked == 0 || time.Now().After(deadline) {
			if n > 0 {
				s.srv.log.Info("client unblocked by CLIENT UNBLOCK", "client", s.id, "addr", s.addr, "user", s.userName(), "unblocked", target.id, "mode", mode)
			}
			return n, msg
		}
		time.Sleep(5 * time.Millisecond) // on its way to the node
	}
}

func (s *session) unblockOnce(target *session, mode string) (int64, string) {
	if target == nil {
		return 0, ""
	}
	d := target.blockConn.Load()
	if d == nil {
		return 0, ""
	}
	d.NoReuse()
	if target.blockConn.Load() != d {
		return 0, "" // it ended meanwhile (d may be another client's now)
	}
	list, msg := s.nodeDo(d.Addr(), "CLIENT", "LIST", "TYPE", "normal")
	if msg != "" {
		return 0, msg
	}
	nodeID := ""
	want := " addr=" + d.LocalAddr() + " "
	for _, line := range strings.Split(string(list), "\n") {
		if strings.Contains(line, want) && strings.HasPrefix(line, "id=") {
			nodeID, _, _ = strings.Cut(strings.TrimPrefix(line, "id="), " ")
			break
		}
	}
	if nodeID == "" {
		return 0, "" // the connection is gone: the command ended
	}
	reply, msg := s.nodeDo(d.Addr(), "CLIENT", "UNBLOCK", nodeID, mode)
	if msg != "" {
		return 0, msg
	}
	n, err := strconv.ParseInt(string(reply), 10, 64)
	if err != nil {
		return 0, "ERR proxy: unexpected reply to CLIENT UNBLOCK from node " + d.Addr()
	}
	return n, ""
}

// nodeDo runs a command on the node at addr through the shared pipelines
// and returns its reply's value (a bulk string's or an integer's bytes),
// or an error message naming the node.
func (s *session) nodeDo(addr string, args ...string) ([]byte, string) {
	req := router.NewRequest()
	req.Frame = resp.AppendCommandStrings(nil, args...)
	req.Addr = addr
	req.Conn = int(s.id)
	req.Proto = resp.RESP2
	req.Resendable = true
	s.srv.router.Do(req)
	switch {
	case req.Err != nil:
		return nil, "ERR proxy: " + strings.ToLower(args[0]) + " on node " + addr + ": " + req.Err.Error()
	case resp.IsError(req.Reply):
		return nil, "ERR proxy: node " + addr + " refused " + args[0] + " " + args[1] + ": " + string(resp.ErrorText(req.Reply))
	}
	if v, ok := resp.BulkValue(req.Reply); ok {
		return v, ""
	}
	return bytes.TrimSpace(bytes.TrimPrefix(req.Reply, []byte(":"))), ""
}
