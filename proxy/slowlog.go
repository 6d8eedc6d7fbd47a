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
// atomic; entries are built only for slow commands, into a ring whose slots
// keep their buffers, so an overloaded proxy logging every command does not
// also churn memory.
type slowlog struct {
	threshold atomic.Int64 // nanoseconds; negative: off
	maxLen    atomic.Int64

	mu      sync.Mutex // guards nextID, entries and next
	nextID  int64
	entries []slowEntry // a ring of at most maxLen
	next    int         // where the next entry goes: the oldest once full
}

// slowEntry is one logged command.
type slowEntry struct {
	id       int64
	start    time.Time
	duration time.Duration
	argc     int // the command's real argument count
	addr     string
	name     string
	// buf holds the kept arguments, truncated, one after the other; ends
	// the end offset of each in buf.
	buf  []byte
	ends []int32
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
	// Lay the ring out oldest first, keeping the newest maxLen.
	n := min(len(l.entries), maxLen)
	kept := make([]slowEntry, n)
	for i := 0; i < n; i++ {
		kept[n-1-i] = *l.at(i)
	}
	l.entries = kept
	l.next = n % maxLen
	l.mu.Unlock()
}

// at returns the i-th newest entry (0: the newest); l.mu is held.
func (l *slowlog) at(i int) *slowEntry {
	n := len(l.entries)
	return &l.entries[((l.next-1-i)%n+n)%n]
}

// slow reports whether a command that took d belongs in the log.
func (l *slowlog) slow(d time.Duration) bool {
	t := l.threshold.Load()
	return t >= 0 && int64(d) >= t
}

// record logs c, a command of sess that took from c.start to end.
func (l *slowlog) record(sess *session, c *call, end time.Time) {
	e := slowEntry{start: c.start, duration: end.Sub(c.start), addr: sess.addr}
	if n := sess.name.Load(); n != nil {
		e.name = *n
	}
	if c.routed && !c.block && !c.req.WrittenAt.IsZero() && !c.req.RepliedAt.IsZero() {
		e.staged = true
		e.queued = c.req.WrittenAt.Sub(c.start)
		e.node = c.req.RepliedAt.Sub(c.req.WrittenAt)
		e.reply = end.Sub(c.req.RepliedAt)
	}
	maxLen := int(l.maxLen.Load())
	l.mu.Lock()
	defer l.mu.Unlock()
	e.id = l.nextID
	l.nextID++
	var slot *slowEntry
	if len(l.entries) < maxLen {
		l.entries = append(l.entries, slowEntry{})
		slot = &l.entries[len(l.entries)-1]
		l.next = len(l.entries) % maxLen
	} else {
		slot = &l.entries[l.next] // the oldest: overwritten, buffers reused
		l.next = (l.next + 1) % len(l.entries)
	}
	e.buf, e.ends, e.argc = appendSlowArgs(slot.buf[:0], slot.ends[:0], c.raw, c.name)
	*slot = e
}

// appendSlowArgs appends the arguments of the raw command for the log to buf
// (their ends to ends), truncated as Redis does; AUTH and HELLO arguments
// are redacted. It returns them and the command's argument count. It reads
// no further than the arguments it keeps: a slow command may be large, and
// under overload most commands are slow.
func appendSlowArgs(buf []byte, ends []int32, raw []byte, name string) ([]byte, []int32, int) {
	argc, p, ok := rawLine(raw, 0, '*')
	if !ok || argc <= 0 {
		buf = append(buf, name...)
		return buf, append(ends, int32(len(buf))), 1
	}
	redact := name == "auth" || name == "hello"
	for i := 0; i < argc; i++ {
		if i == slowlogMaxArgs-1 && argc > slowlogMaxArgs {
			buf = append(buf, "... ("...)
			buf = strconv.AppendInt(buf, int64(argc-slowlogMaxArgs+1), 10)
			buf = append(buf, " more arguments)"...)
			ends = append(ends, int32(len(buf)))
			break
		}
		size, start, ok := rawLine(raw, p, '$')
		if !ok || size < 0 || len(raw)-start < size {
			break // not a well-formed command: keep what was read
		}
		a := raw[start : start+size]
		p = start + size + 2
		switch {
		case redact && i > 0:
			buf = append(buf, "(redacted)"...)
		case len(a) > slowlogMaxArgLen:
			buf = append(buf, a[:slowlogMaxArgLen]...)
			buf = append(buf, "... ("...)
			buf = strconv.AppendInt(buf, int64(len(a)-slowlogMaxArgLen), 10)
			buf = append(buf, " more bytes)"...)
		default:
			buf = append(buf, a...)
		}
		ends = append(ends, int32(len(buf)))
	}
	return buf, ends, argc
}

// rawLine parses the header line at p of raw ("*3\r\n", "$5\r\n"), which
// must start with kind, and returns its integer and where the next line
// starts.
func rawLine(raw []byte, p int, kind byte) (int, int, bool) {
	if p >= len(raw) || raw[p] != kind {
		return 0, 0, false
	}
	e := bytes.IndexByte(raw[p:], '\n')
	if e < 2 || raw[p+e-1] != '\r' {
		return 0, 0, false
	}
	n, ok := resp.ParseInt(raw[p+1 : p+e-1])
	if !ok || n > 1<<31 {
		return 0, 0, false
	}
	return int(n), p + e + 1, true
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
		l.entries, l.next = l.entries[:0], 0
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
		for i := 0; i < count; i++ {
			c.reply = appendSlowEntry(c.reply, l.at(i))
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
	b = resp.AppendArrayHeader(b, len(e.ends))
	start := int32(0)
	for _, end := range e.ends {
		b = resp.AppendBulk(b, e.buf[start:end])
		start = end
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
