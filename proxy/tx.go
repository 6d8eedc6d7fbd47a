package proxy

import (
	"bytes"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// tx is a session's transaction state: WATCH and MULTI ... EXEC run on one
// dedicated node connection, pinned on the first keyed command (or WATCH)
// and released after EXEC, DISCARD or UNWATCH. The reader goroutine drives
// that connection synchronously; replies join the session's ordered queue.
type tx struct {
	conn    *router.Dedicated
	slot    int      // slot the connection was pinned for; -1 before a keyed command
	multi   bool     // between MULTI and EXEC/DISCARD
	queued  bool     // MULTI has been sent on conn
	aborted bool     // an error while queuing: EXEC answers EXECABORT
	held    [][]byte // keyless commands queued before the node was known
	lost    bool     // the connection broke inside MULTI: only EXEC/DISCARD end it
	writes  bool     // a queued command writes: a CLIENT PAUSE WRITE holds EXEC
}

const txLost = "ERR proxy: the transaction was aborted: the connection to the node was lost"

const execAbort = "EXECABORT Transaction discarded because of previous errors."

// inTx reports whether cmd must go through the transaction path.
func (s *session) inTx(spec *command.Spec) bool {
	return spec.Policy == command.Transaction || (s.tx != nil && s.tx.multi)
}

// transaction handles MULTI, EXEC, DISCARD, WATCH, UNWATCH and every command
// sent between MULTI and EXEC.
func (s *session) transaction(c *call, spec *command.Spec, cmd resp.Command) *call {
	if s.tx == nil {
		s.tx = &tx{slot: -1}
	}
	t := s.tx
	if t.lost && spec.Name != "exec" && spec.Name != "discard" {
		return c.fail(txLost)
	}
	switch spec.Name {
	case "multi":
		if t.multi {
			return c.fail("ERR MULTI calls can not be nested")
		}
		t.multi = true
		s.setFlag(flagMulti, true)
		c.reply = resp.AppendOK(c.reply)
		return c
	case "exec":
		return s.exec(c)
	case "discard":
		if !t.multi {
			return c.fail("ERR DISCARD without MULTI")
		}
		if t.queued && !t.lost {
			s.txDo(c, cmd.Raw) // DISCARD on the node also forgets WATCH
		} else {
			c.reply = resp.AppendOK(c.reply)
		}
		s.endTx(t.queued)
		return c
	case "unwatch":
		if t.multi {
			break // queued like any command
		}
		if t.conn != nil {
			s.txDo(c, cmd.Raw)
		} else {
			c.reply = resp.AppendOK(c.reply)
		}
		s.endTx(true)
		return c
	case "watch":
		if t.multi {
			return s.queueError(c, "ERR WATCH inside MULTI is not allowed")
		}
	}
	if t.multi && spec.Flags&(command.Write|command.MayReplicate) != 0 {
		t.writes = true
	}
	// A keyed (or keyless) command for the pinned connection.
	slot, _, msg := s.slotOf(spec, cmd.Args)
	if msg != "" {
		return s.queueError(c, msg)
	}
	switch spec.Policy {
	case command.Forward, command.Split, command.Blocking, command.Transaction:
	case command.Local:
		if spec.Name != "ping" && spec.Name != "echo" {
			return s.queueError(c, "ERR command '"+spec.Name+"' cannot be used inside a transaction through the proxy")
		}
	default:
		return s.queueError(c, "ERR command '"+spec.Name+"' cannot be used inside a transaction through the proxy")
	}
	if slot >= 0 && t.slot >= 0 && slot != t.slot {
		return s.queueError(c, crossSlot)
	}
	if t.conn == nil && slot < 0 {
		// No key yet: hold the command until one names the node.
		t.held = append(t.held, cmd.Raw)
		c.reply = resp.AppendSimple(c.reply, "QUEUED")
		return c
	}
	if !s.txPin(c, slot) {
		return c
	}
	if !s.txDo(c, cmd.Raw) {
		return c
	}
	if t.multi && resp.IsError(c.reply) {
		msg := resp.ErrorText(c.reply)
		if bytes.HasPrefix(msg, []byte("CROSSSLOT")) {
			c.reply = c.reply[:0]
			return s.queueError(c, crossSlot)
		}
		if bytes.HasPrefix(msg, []byte("MOVED ")) || bytes.HasPrefix(msg, []byte("ASK ")) {
			c.reply = c.reply[:0]
			return s.queueError(c, "TRYAGAIN proxy: the slot moved during the transaction, which is aborted")
		}
		t.aborted = true // the node also flags the transaction; EXEC says EXECABORT
	}
	return c
}

// exec runs EXEC on the pinned connection.
func (s *session) exec(c *call) *call {
	t := s.tx
	if !t.multi {
		return c.fail("ERR EXEC without MULTI")
	}
	switch {
	case t.aborted:
		if t.queued && !t.lost {
			d := s.srv.getCall()
			s.txDo(d, []byte("*1\r\n$7\r\nDISCARD\r\n"))
			s.srv.putCall(d)
		}
		s.endTx(t.queued)
		return c.fail(execAbort)
	case !t.queued && len(t.held) > 0:
		if !s.txPin(c, -1) {
			return c
		}
		if t.aborted {
			return s.exec(c)
		}
	case !t.queued:
		// Nothing was queued: an empty transaction (WATCH state, if any,
		// ends with it).
		if t.conn != nil {
			d := s.srv.getCall()
			s.txDo(d, []byte("*1\r\n$7\r\nUNWATCH\r\n"))
			s.srv.putCall(d)
		}
		s.endTx(true)
		c.reply = resp.AppendArrayHeader(c.reply, 0)
		return c
	}
	if s.txDo(c, []byte("*1\r\n$4\r\nEXEC\r\n")) && t.slot >= 0 && s.srv.cfg.WriteReplicas > 0 {
		c.sync = append(c.sync, t.slot) // wait for replication (sync.go)
	}
	s.endTx(true)
	return c
}

// txDo sends frame on the pinned connection and puts the reply in c. On a
// connection error c answers why and it returns false: outside MULTI the
// state ends (WATCH is lost with the connection); inside MULTI the session
// stays in an aborted transaction, so that the commands the client still
// believes queued are refused rather than run, until EXEC or DISCARD.
func (s *session) txDo(c *call, frame []byte) bool {
	t := s.tx
	reply, err := t.conn.Do(frame, false)
	if err != nil {
		c.reply = append(c.reply[:0], errorReply(err)...)
		t.conn.Close()
		t.conn = nil
		if t.multi {
			t.aborted, t.lost = true, true
		} else {
			s.endTx(false)
		}
		return false
	}
	c.reply = append(c.reply[:0], reply...)
	return true
}

// queueError answers c with msg; inside MULTI it also dooms the transaction.
func (s *session) queueError(c *call, msg string) *call {
	if s.tx != nil && s.tx.multi {
		s.tx.aborted = true
	}
	return c.fail(msg)
}

// endTx ends the transaction state; the connection goes back to the pool
// when clean, else it is closed.
func (s *session) endTx(clean bool) {
	t := s.tx
	if t == nil {
		return
	}
	if t.conn != nil {
		if clean {
			t.conn.Release()
		} else {
			t.conn.Close()
		}
	}
	s.tx = nil
	s.setFlag(flagMulti, false)
}

// txPin makes sure the transaction has its connection (to the master of
// slot, any master for -1) and, inside MULTI, that MULTI and the held
// commands were sent on it. On failure c holds the error and it returns false.
func (s *session) txPin(c *call, slot int) bool {
	t := s.tx
	if t.conn == nil {
		d, err := s.srv.router.Dedicated(slot, "", s.proto)
		if err != nil {
			s.queueError(c, string(resp.ErrorText(errorReply(err))))
			return false
		}
		t.conn, t.slot = d, slot
	}
	if !t.multi || t.queued {
		return true
	}
	t.queued = true
	for _, frame := range append([][]byte{[]byte("*1\r\n$5\r\nMULTI\r\n")}, t.held...) {
		if !s.txDo(c, frame) {
			return false
		}
		if resp.IsError(c.reply) {
			t.aborted = true
		}
	}
	t.held = nil
	c.reply = c.reply[:0]
	return true
}
