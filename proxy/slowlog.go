package proxy

import (
	"bytes"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// Slow log defaults, as in Redis (slowlog-log-slower-than, slowlog-max-len).
const (
	DefaultSlowlogThreshold = 10 * time.Millisecond
	DefaultSlowlogMaxLen    = 128
)

// Like Redis, an entry keeps at most slowlogMaxArgs arguments (the last one
// says how many more there were) and slowlogMaxArgLen bytes of each.
const (
	slowlogMaxArgs   = 32
	slowlogMaxArgLen = 128
)

// slowlog is the proxy's own slow log: commands whose time from being read
// to their reply being written reached the threshold. The hot path reads one
// atomic; entries are built only for slow commands.
type slowlog struct {
	threshold atomic.Int64 // nanoseconds; negative: off
	maxLen    atomic.Int64

	mu      sync.Mutex // guards nextID and entries
	nextID  int64
	entries []slowEntry // oldest first, at most maxLen
}

// slowEntry is one logged command.
type slowEntry struct {
	id       int64
	start    time.Time
	duration time.Duration
	args     [][]byte // truncated copies
	argc     int      // the command's real argument count
	addr     string
	name     string
	// staged reports whether the stage times are known (a command routed to
	// one node); queued is read → written to the node, node is written →
	// reply read, reply is reply read → reply written to the client.
	staged              bool
	queued, node, reply time.Duration
}

// set applies a threshold and length; see Settings for their meaning.
func (l *slowlog) set(threshold time.Duration, maxLen int) {
	switch {
	case threshold == 0:
		threshold = DefaultSlowlogThreshold
	case threshold < 0:
		threshold = -1
	}
	if maxLen <= 0 {
		maxLen = DefaultSlowlogMaxLen
	}
	l.threshold.Store(int64(threshold))
	l.maxLen.Store(int64(maxLen))
	l.mu.Lock()
	if over := len(l.entries) - maxLen; over > 0 {
		l.entries = append(l.entries[:0], l.entries[over:]...)
	}
	l.mu.Unlock()
}

// slow reports whether a command that took d belongs in the log.
func (l *slowlog) slow(d time.Duration) bool {
	t := l.threshold.Load()
	return t >= 0 && int64(d) >= t
}

// record logs c, a command of sess that took from c.start to end.
func (l *slowlog) record(sess *session, c *call, end time.Time) {
	e := slowEntry{start: c.start, duration: end.Sub(c.start), addr: sess.conn.RemoteAddr().String()}
	if n := sess.name.Load(); n != nil {
		e.name = *n
	}
	e.args, e.argc = slowArgs(c.raw, c.name)
	if c.routed && !c.block && !c.req.WrittenAt.IsZero() && !c.req.RepliedAt.IsZero() {
		e.staged = true
		e.queued = c.req.WrittenAt.Sub(c.start)
		e.node = c.req.RepliedAt.Sub(c.req.WrittenAt)
		e.reply = end.Sub(c.req.RepliedAt)
	}
	maxLen := int(l.maxLen.Load())
	l.mu.Lock()
	e.id = l.nextID
	l.nextID++
	if len(l.entries) >= maxLen {
		l.entries = append(l.entries[:0], l.entries[len(l.entries)-maxLen+1:]...)
	}
	l.entries = append(l.entries, e)
	l.mu.Unlock()
}

// slowArgs copies the arguments of the raw command for the log, truncated as
// Redis does; AUTH and HELLO arguments are redacted.
func slowArgs(raw []byte, name string) ([][]byte, int) {
	args := splitRaw(raw)
	if len(args) == 0 {
		return [][]byte{[]byte(name)}, 1
	}
	argc := len(args)
	redact := name == "auth" || name == "hello"
	n := min(argc, slowlogMaxArgs)
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		if i == slowlogMaxArgs-1 && argc > slowlogMaxArgs {
			out = append(out, []byte("... ("+strconv.Itoa(argc-slowlogMaxArgs+1)+" more arguments)"))
			break
		}
		a := args[i]
		switch {
		case redact && i > 0:
			a = []byte("(redacted)")
		case len(a) > slowlogMaxArgLen:
			a = append(bytes.Clone(a[:slowlogMaxArgLen]), "... ("+strconv.Itoa(len(a)-slowlogMaxArgLen)+" more bytes)"...)
		default:
			a = bytes.Clone(a)
		}
		out = append(out, a)
	}
	return out, argc
}

// splitRaw returns the arguments of a RESP array of bulk strings (a
// resp.Command's Raw), or nil if raw is not one.
func splitRaw(raw []byte) [][]byte {
	if len(raw) < 4 || raw[0] != '*' {
		return nil
	}
	line := func(p int) (int64, int, bool) {
		e := bytes.Index(raw[p:], []byte("\r\n"))
		if e < 0 {
			return 0, 0, false
		}
		n, ok := resp.ParseInt(raw[p+1 : p+e])
		return n, p + e + 2, ok
	}
	n, p, ok := line(0)
	if !ok || n < 0 {
		return nil
	}
	args := make([][]byte, 0, min(n, slowlogMaxArgs+1))
	for i := int64(0); i < n; i++ {
		if p >= len(raw) || raw[p] != '$' {
			return nil
		}
		var size int64
		if size, p, ok = line(p); !ok || size < 0 || int64(len(raw)-p) < size {
			return nil
		}
		args = append(args, raw[p:p+int(size)])
		p += int(size) + 2
	}
	return args
}

// slowlogCmd answers SLOWLOG GET [count], LEN and RESET from the proxy's log.
func (s *session) slowlogCmd(c *call, name string, args [][]byte) *call {
	l := &s.srv.slow
	switch name {
	case "slowlog|len":
		l.mu.Lock()
		n := len(l.entries)
		l.mu.Unlock()
		c.reply = resp.AppendInt(c.reply, int64(n))
	case "slowlog|reset":
		l.mu.Lock()
		l.entries = l.entries[:0]
		l.mu.Unlock()
		c.reply = resp.AppendOK(c.reply)
	case "slowlog|get":
		count := 10
		if len(args) > 3 {
			return c.fail("ERR wrong number of arguments for 'slowlog|get' command")
		}
		if len(args) == 3 {
			n, err := strconv.ParseInt(string(args[2]), 10, 64)
			if err != nil || n < -1 {
				return c.fail("ERR count should be greater than or equal to -1")
			}
			count = int(min(n, 1<<30))
			if n == -1 {
				count = 1 << 30
			}
		}
		l.mu.Lock()
		count = min(count, len(l.entries))
		c.reply = resp.AppendArrayHeader(c.reply, count)
		for i := len(l.entries) - 1; i >= len(l.entries)-count; i-- {
			c.reply = appendSlowEntry(c.reply, &l.entries[i])
		}
		l.mu.Unlock()
	}
	return c
}

// appendSlowEntry encodes e as Redis does (id, unix time, microseconds,
// arguments, client address, client name), then the argument count (as
// Redis 8.10 adds) and the proxy's stage times in microseconds: an array of
// "queued", n, "node", n, "reply", n (empty when unknown).
func appendSlowEntry(b []byte, e *slowEntry) []byte {
	b = resp.AppendArrayHeader(b, 8)
	b = resp.AppendInt(b, e.id)
	b = resp.AppendInt(b, e.start.Unix())
	b = resp.AppendInt(b, e.duration.Microseconds())
	b = resp.AppendArrayHeader(b, len(e.args))
	for _, a := range e.args {
		b = resp.AppendBulk(b, a)
	}
	b = resp.AppendBulkString(b, e.addr)
	b = resp.AppendBulkString(b, e.name)
	b = resp.AppendInt(b, int64(e.argc))
	if !e.staged {
		return resp.AppendArrayHeader(b, 0)
	}
	b = resp.AppendArrayHeader(b, 6)
	b = resp.AppendBulkString(b, "queued")
	b = resp.AppendInt(b, e.queued.Microseconds())
	b = resp.AppendBulkString(b, "node")
	b = resp.AppendInt(b, e.node.Microseconds())
	b = resp.AppendBulkString(b, "reply")
	return resp.AppendInt(b, e.reply.Microseconds())
}
