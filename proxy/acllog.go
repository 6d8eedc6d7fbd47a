package proxy

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// aclLog is ACL LOG: the latest refusals of the proxy's users (a command,
// key or channel a user may not use, and failed authentications), newest
// first. A refusal like one first logged less than aclLogGroup ago counts
// on that entry, as Redis groups them.
type aclLog struct {
	mu      sync.Mutex
	entries []*aclEntry
}

type aclEntry struct {
	count                         int64
	reason, context, object, user string
	clientInfo                    string
	created                       time.Time
}

const (
	aclLogMax   = 128 // Redis's acllog-max-len default
	aclLogGroup = time.Minute
)

// add logs one refusal: reason is "command", "key", "channel" or "auth";
// context "toplevel" or "multi"; object the command, key, channel or
// "AUTH" (at most 128 bytes); clientInfo the client's CLIENT INFO line.
func (l *aclLog) add(reason, context, object, user, clientInfo string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.entries {
		if e.reason == reason && e.context == context && e.object == object && e.user == user && now.Sub(e.created) < aclLogGroup {
			e.count++
			e.clientInfo = clientInfo
			copy(l.entries[1:i+1], l.entries[:i]) // to the front
			l.entries[0] = e
			return
		}
	}
	e := &aclEntry{count: 1, reason: reason, context: context, object: object, user: user, clientInfo: clientInfo, created: now}
	if len(l.entries) < aclLogMax {
		l.entries = append(l.entries, nil)
	}
	copy(l.entries[1:], l.entries)
	l.entries[0] = e
}

func (l *aclLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = nil
}

// appendReply appends ACL LOG's reply: the newest count entries (none for
// a negative count, as Redis answers), with Redis 7.0's fields.
func (l *aclLog) appendReply(b []byte, count int, proto int, now time.Time) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(max(count, 0), len(l.entries))
	b = resp.AppendArrayHeader(b, n)
	for _, e := range l.entries[:n] {
		b = resp.AppendMapHeader(b, 7, proto)
		b = resp.AppendBulkString(b, "count")
		b = resp.AppendInt(b, e.count)
		for _, kv := range [...][2]string{{"reason", e.reason}, {"context", e.context}, {"object", e.object}, {"username", e.user}} {
			b = resp.AppendBulkString(b, kv[0])
			b = resp.AppendBulkString(b, kv[1])
		}
		b = resp.AppendBulkString(b, "age-seconds")
		b = resp.AppendDouble(b, now.Sub(e.created).Seconds(), proto)
		b = resp.AppendBulkString(b, "client-info")
		b = resp.AppendBulkString(b, e.clientInfo)
	}
	return b
}

// logRefusal adds a refused command, key or channel of user u to the ACL
// log.
func (s *session) logRefusal(u *aclUser, spec *command.Spec, kind int, what []byte) {
	reason, object := "command", spec.Name
	switch kind {
	case deniedKey:
		reason, object = "key", trunc(what, 128)
	case deniedChannel:
		reason, object = "channel", trunc(what, 128)
	}
	context := "toplevel"
	if s.tx != nil && s.tx.multi {
		context = "multi"
	}
	s.srv.acllog.add(reason, context, object, u.name, s.clientInfo(), time.Now())
}

// logAuthFailure adds a failed AUTH or HELLO AUTH as user to the ACL log.
func (s *session) logAuthFailure(user []byte, now time.Time) {
	s.srv.acllog.add("auth", "toplevel", "AUTH", trunc(user, 128), s.clientInfo(), now)
}

// clientInfo is the session's CLIENT INFO line without its newline.
func (s *session) clientInfo() string {
	return strings.TrimSuffix(s.clientLine(), "\n")
}

// aclLogCmd answers ACL LOG [count | RESET] (count 10 by default).
func (s *session) aclLogCmd(c *call, args [][]byte) *call {
	count := 10
	if len(args) == 3 {
		if strings.EqualFold(string(args[2]), "reset") {
			s.srv.acllog.reset()
			c.reply = resp.AppendOK(c.reply)
			return c
		}
		n, err := strconv.Atoi(string(args[2]))
		if err != nil {
			return c.fail("ERR value is not an integer or out of range")
		}
		count = n
	} else if len(args) > 3 {
		return c.fail("ERR syntax error")
	}
	c.reply = s.srv.acllog.appendReply(c.reply, count, s.proto, time.Now())
	return c
}
