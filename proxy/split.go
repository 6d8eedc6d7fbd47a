package proxy

import (
	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// splitCall is a multi-key command whose keys span several slots: one
// sub-command per slot (keys keep their order inside each), sent
// concurrently, merged by the command's policy once all have answered.
type splitCall struct {
	merge command.Merge
	subs  []*call   // one per slot, in order of first appearance
	pos   [][]int32 // ByPosition: for each sub, the original ordinal of each key
	nkeys int
}

// group is one slot's part of a split command, being built.
type group struct {
	slot  int
	parts int // key groups (key, or key+value for MSET)
	args  [][]byte
	pos   []int32
}

// split fans a multi-slot command out by slot. keys are the arg indexes of
// its keys, step the args per key group (MSET: 2).
func (s *session) split(c *call, spec *command.Spec, args [][]byte, keys []int) *call {
	step := max(spec.KeyStep, 1)
	var groups []group
	index := make(map[int]int, 8) // slot → groups index
	for ord, ki := range keys {
		if ki+step > len(args) {
			return c.fail("ERR wrong number of arguments for '" + spec.Name + "' command")
		}
		slot := router.Slot(args[ki])
		gi, ok := index[slot]
		if !ok {
			gi = len(groups)
			index[slot] = gi
			groups = append(groups, group{slot: slot})
		}
		g := &groups[gi]
		g.args = append(g.args, args[ki:ki+step]...)
		g.pos = append(g.pos, int32(ord))
		g.parts++
	}
	sc := &splitCall{merge: spec.Merge, nkeys: len(keys)}
	readOnly := spec.Flags&command.ReadOnly != 0
	for i := range groups {
		g := &groups[i]
		frame := resp.AppendArrayHeader(make([]byte, 0, 32+16*len(g.args)), 1+len(g.args))
		frame = resp.AppendBulk(frame, args[0])
		for _, a := range g.args {
			frame = resp.AppendBulk(frame, a)
		}
		sub := s.srv.getCall()
		s.send(sub, frame, g.slot, readOnly)
		sc.subs = append(sc.subs, sub)
		sc.pos = append(sc.pos, g.pos)
	}
	c.split = sc
	return c
}

// finish waits for every part and merges their replies into c.reply.
func (sc *splitCall) finish(srv *Server, c *call) {
	var firstErr []byte
	var sum int64
	var elems [][]byte
	if sc.merge == command.ByPosition {
		elems = make([][]byte, sc.nkeys)
	}
	for i, sub := range sc.subs {
		srv.router.Wait(sub.req)
		reply := sub.req.Reply
		if sub.req.Err != nil {
			reply = errorReply(sub.req.Err)
		}
		if firstErr != nil {
			continue
		}
		if resp.IsError(reply) {
			firstErr = append([]byte(nil), reply...)
			continue
		}
		switch sc.merge {
		case command.Sum:
			n, ok := resp.IntValue(reply)
			if !ok {
				firstErr = resp.AppendError(nil, "ERR proxy: unexpected reply from a node while merging")
				continue
			}
			sum += n
		case command.ByPosition:
			els, _, err := resp.Elements(reply, nil)
			if err != nil || len(els) != len(sc.pos[i]) {
				firstErr = resp.AppendError(nil, "ERR proxy: unexpected reply from a node while merging")
				continue
			}
			for j, e := range els {
				elems[sc.pos[i][j]] = e
			}
		}
	}
	switch {
	case firstErr != nil:
		c.reply = append(c.reply[:0], firstErr...)
	case sc.merge == command.Sum:
		c.reply = resp.AppendInt(c.reply[:0], sum)
	case sc.merge == command.ByPosition:
		c.reply = resp.AppendArrayHeader(c.reply[:0], len(elems))
		for _, e := range elems {
			c.reply = append(c.reply, e...)
		}
	default: // AllOK
		c.reply = resp.AppendOK(c.reply[:0])
	}
	for _, sub := range sc.subs {
		srv.putCall(sub)
	}
	c.split = nil
}
