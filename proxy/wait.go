package proxy

import (
	"strconv"
	"sync"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// slotTags maps every slot to a short hash tag that hashes to it.
type slotTags struct {
	once sync.Once
	tags [router.SlotCount]string
}

func (t *slotTags) tag(slot int) string {
	t.once.Do(func() {
		left := router.SlotCount
		for i := 0; left > 0; i++ {
			s := strconv.Itoa(i)
			if sl := router.Slot([]byte(s)); t.tags[sl] == "" {
				t.tags[sl] = s
				left--
			}
		}
	})
	return t.tags[slot]
}

// waitCall is a WAIT or WAITAOF to run on every master the client wrote to
// since its previous WAIT.
type waitCall struct {
	frame []byte
	slots []int // one written slot per master
	aof   bool
}

// wait prepares WAIT numreplicas timeout / WAITAOF numlocal numreplicas
// timeout. Redis counts acknowledgements from the replication offset of
// the connection's last write; the proxy's node connections are shared, so
// for each master the client wrote to it takes a dedicated connection, moves
// that connection's offset past the client's writes (already acknowledged)
// with a transaction that leaves no trace (MULTI, SET and DEL of a proxy key
// in a written slot, EXEC), then runs the command there. The reply is the
// least count over those masters.
func (s *session) wait(c *call, name string, raw []byte) *call {
	w := &waitCall{frame: raw, aof: name == "waitaof", slots: s.slotPerMaster(s.wrote.slots())}
	s.wrote.clear()
	if len(w.slots) == 0 {
		w.slots = []int{-1} // nothing written: any master answers at once
	}
	c.wait = w
	return c
}

// runWait runs a prepared WAIT/WAITAOF (in the writer, like a blocking
// command) and sets c.reply.
func (s *session) runWait(c *call) {
	w := c.wait
	replies := s.waitOnAll(w.slots, w.frame)
	for _, r := range replies {
		if resp.IsError(r) {
			c.reply = append(c.reply[:0], r...)
			return
		}
	}
	if !w.aof {
		least := int64(-1)
		for _, r := range replies {
			if n, ok := resp.IntValue(r); ok && (least < 0 || n < least) {
				least = n
			}
		}
		c.reply = resp.AppendInt(c.reply[:0], max(least, 0))
		return
	}
	var local, repl int64 = -1, -1
	for _, r := range replies {
		els, _, err := resp.Elements(r, nil)
		if err != nil || len(els) != 2 {
			c.reply = append(c.reply[:0], errMerge...)
			return
		}
		l, _ := resp.IntValue(els[0])
		n, _ := resp.IntValue(els[1])
		if local < 0 || l < local {
			local = l
		}
		if repl < 0 || n < repl {
			repl = n
		}
	}
	c.reply = resp.AppendArrayHeader(c.reply[:0], 2)
	c.reply = resp.AppendInt(c.reply, local)
	c.reply = resp.AppendInt(c.reply, repl)
}

// slotPerMaster keeps one of slots per master that serves them.
func (s *session) slotPerMaster(slots []int) []int {
	var out []int
	seen := map[string]bool{}
	last := ""
	for _, slot := range slots {
		addr := s.srv.router.MasterOf(slot)
		if addr == "" || addr == last {
			continue // runs of slots share a master: skip the map
		}
		last = addr
		if !seen[addr] {
			seen[addr] = true
			out = append(out, slot)
		}
	}
	return out
}

// waitOnAll runs waitOn for each slot, concurrently, and returns the
// replies in the order of slots.
func (s *session) waitOnAll(slots []int, frame []byte) [][]byte {
	replies := make([][]byte, len(slots))
	if len(slots) == 1 {
		replies[0] = s.waitOn(slots[0], frame)
		return replies
	}
	var wg sync.WaitGroup
	for i, slot := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = s.waitOn(slot, frame)
		}()
	}
	wg.Wait()
	return replies
}

// waitOn runs frame on a dedicated connection to the master of slot, after
// advancing that connection's replication offset when slot >= 0.
func (s *session) waitOn(slot int, frame []byte) []byte {
	d, err := s.srv.router.Dedicated(slot, "", s.proto)
	if err != nil {
		return errorReply(err)
	}
	stop := d.Watch(s.gone)
	release := func() {
		stop()
		d.Release()
	}
	if slot >= 0 {
		// One round trip: MULTI, SET, DEL, EXEC, then the command.
		key := "{" + s.srv.tags.tag(slot) + "}clusterproxy:wait"
		buf := append([]byte(nil), "*1\r\n$5\r\nMULTI\r\n"...)
		buf = resp.AppendCommandStrings(buf, "SET", key, "1")
		buf = resp.AppendCommandStrings(buf, "DEL", key)
		buf = append(buf, "*1\r\n$4\r\nEXEC\r\n"...)
		buf = append(buf, frame...)
		replies, err := d.DoMany(buf, 5)
		release()
		if err != nil {
			return errorReply(err)
		}
		for _, r := range replies[:4] {
			if resp.IsError(r) {
				return r
			}
		}
		if els, _, err := resp.Elements(replies[3], nil); err != nil || len(els) != 2 {
			return append([]byte(nil), errMerge...) // EXEC aborted (nil) or odd
		}
		return replies[4]
	}
	r, err := d.Do(frame, false)
	release()
	if err != nil {
		return errorReply(err)
	}
	return r
}
