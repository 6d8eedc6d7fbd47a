package proxy

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
)

// monitors are the sessions in MONITOR mode. Each command the proxy runs
// is shown to them in Redis's MONITOR format, with the client's address as
// the proxy sees it. Sessions check n before each command (one atomic
// load); the list changes under mu's write lock and is read under its read
// lock, so no line reaches a session after it left the list.
type monitors struct {
	n    atomic.Int32
	mu   sync.RWMutex
	list []*session
}

func (m *monitors) add(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list = append(m.list, s)
	m.n.Store(int32(len(m.list)))
}

func (m *monitors) remove(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, o := range m.list {
		if o == s {
			m.list = append(m.list[:i], m.list[i+1:]...)
			break
		}
	}
	m.n.Store(int32(len(m.list)))
}

// feedMonitors shows a command about to run to the monitors. Like Redis,
// it leaves out admin commands and those flagged skip_monitor, and redacts
// credentials (AUTH, HELLO ... AUTH).
func (s *session) feedMonitors(spec *command.Spec, args [][]byte) {
	if s.srv.monitors.n.Load() == 0 || spec.Flags&(command.Admin|command.SkipMonitor) != 0 {
		return
	}
	line := monitorLine(time.Now(), s.addr, spec.Name, args)
	m := &s.srv.monitors
	m.mu.RLock()
	defer m.mu.RUnlock()
	limit := int32(monitorQueue * s.srv.cfg.MaxPipeline)
	for _, o := range m.list {
		o.push(line, limit) // a monitor that cannot keep up is disconnected
	}
}

// monitorQueue is how many MaxPipelines of lines a monitor may have queued
// before it is disconnected: more than a subscriber, as a burst of
// pipelined commands from many clients reaches it at once. Lines are short
// (arguments are cut as in the slow log), so this is a few megabytes at
// most.
const monitorQueue = 4

// monitorLine formats one MONITOR line:
// +1700000000.123456 [0 127.0.0.1:50000] "SET" "k" "v". Unlike a node,
// the proxy cuts long arguments and long commands as its slow log does, so
// that a monitor's queue stays small.
func monitorLine(t time.Time, addr, name string, args [][]byte) []byte {
	b := make([]byte, 0, 64+len(addr)+16*len(args))
	b = append(b, '+')
	b = strconv.AppendInt(b, t.Unix(), 10)
	b = append(b, '.')
	us := strconv.AppendInt(nil, int64(t.Nanosecond()/1000), 10)
	b = append(b, "000000"[len(us):]...)
	b = append(b, us...)
	b = append(b, " [0 "...)
	b = append(b, addr...)
	b = append(b, ']')
	lo, hi := len(args), len(args) // the arguments redacted
	switch name {
	case "auth":
		lo = 1
	case "hello":
		for i := 1; i < len(args); i++ {
			if strings.EqualFold(string(args[i]), "auth") {
				lo, hi = i+1, min(i+3, len(args))
				break
			}
		}
	}
	for i, a := range args {
		b = append(b, ' ')
		switch {
		case i == slowlogMaxArgs-1 && len(args) > slowlogMaxArgs:
			b = append(b, `"... (`...)
			b = strconv.AppendInt(b, int64(len(args)-i), 10)
			b = append(b, ` more arguments)"`...)
			return append(b, '\r', '\n')
		case i >= lo && i < hi:
			b = append(b, `"(redacted)"`...)
		case len(a) > slowlogMaxArgLen:
			b = appendQuoted(b, a[:slowlogMaxArgLen])
			b = append(b[:len(b)-1], "... ("...)
			b = strconv.AppendInt(b, int64(len(a)-slowlogMaxArgLen), 10)
			b = append(b, ` more bytes)"`...)
		default:
			b = appendQuoted(b, a)
		}
	}
	return append(b, '\r', '\n')
}

// appendQuoted appends a quoted as Redis's sdscatrepr does: printable
// ASCII as is, quotes and backslashes escaped, control characters as \n,
// \r, \t, \a, \b or \xhh.
func appendQuoted(b, a []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range a {
		switch {
		case c == '\\' || c == '"':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\r':
			b = append(b, `\r`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c == '\a':
			b = append(b, `\a`...)
		case c == '\b':
			b = append(b, `\b`...)
		case c >= ' ' && c <= '~':
			b = append(b, c)
		default:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
		}
	}
	return append(b, '"')
}

// monitor answers MONITOR: +OK, then every command the proxy runs, until
// the client leaves or sends RESET. The session joins the monitors once
// the +OK is queued (see readLoop), so no line comes before it.
func (s *session) monitor(c *call) *call {
	s.monitoring = true
	c.reply = append(c.reply, "+OK\r\n"...)
	return c
}

// stopMonitor takes the session out of MONITOR mode.
func (s *session) stopMonitor() {
	if s.monitorOn {
		s.srv.monitors.remove(s)
		s.setFlag(flagMonitor, false)
	}
	s.monitoring, s.monitorOn = false, false
}
