package proxy

import (
	"bytes"
	"strconv"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// fanout is a command answered by several sub-commands: a multi-key command
// split by slot (keys keep their order inside each part) or a command sent
// to every master. The parts are sent concurrently and merged by the
// command's policy once all have answered. Fanouts are pooled per Server
// with their scratch space, so a split allocates nothing once warm.
type fanout struct {
	merge command.Merge
	// parts are the sub-requests, in order, held by value: a split
	// command's parts sit together in memory, and their storage is reused.
	parts []router.Request
	pos   [][]int32 // ByPosition: for each part, the original ordinal of each key
	nkeys int
	// custom, when set, builds the reply from the parts' replies (none of
	// which is an error); used for INFO.
	custom func(replies [][]byte) []byte

	// Scratch reused from one command to the next.
	buf     []byte  // the parts' frames
	slots   []int   // slot of each group
	ints    []int32 // split's per-key and per-group indexes
	replies [][]byte
	elems   [][]byte
	// group wakes finish once, when the last part has answered.
	group router.Group
}

// maxPooledFanout bounds the frame buffer a pooled fanout keeps, and
// maxPooledParts its parts.
const (
	maxPooledFanout = 64 << 10
	maxPooledParts  = 1024
)

func (s *Server) getFanout() *fanout {
	if f, ok := s.fans.Get().(*fanout); ok {
		return f
	}
	return &fanout{}
}

func (s *Server) putFanout(f *fanout) {
	if cap(f.buf) > maxPooledFanout || cap(f.ints) > maxPooledFanout || cap(f.elems) > maxPooledFanout ||
		cap(f.parts) > maxPooledParts {
		return
	}
	for i := range f.parts {
		f.parts[i].Reset() // drop the frames and replies; keeps the wake-up channel
	}
	clear(f.pos)
	clear(f.replies)
	clear(f.elems)
	f.merge, f.nkeys, f.custom = 0, 0, nil
	f.parts, f.pos, f.buf, f.slots = f.parts[:0], f.pos[:0], f.buf[:0], f.slots[:0]
	f.ints, f.replies, f.elems = f.ints[:0], f.replies[:0], f.elems[:0]
	s.fans.Put(f)
}

// setParts makes room for n parts, reset, reusing the storage when it is
// large enough, and readies the group for them. Parts must not move once
// sent: it is called before any is.
func (f *fanout) setParts(n int) {
	if cap(f.parts) < n {
		f.parts = make([]router.Request, n)
	} else {
		f.parts = f.parts[:n]
	}
	for i := range f.parts {
		f.parts[i].Slot = -1
	}
	f.group.Reset()
}

// sendPart sends part i (its Addr set for a given node) for session s.
func (f *fanout) sendPart(s *session, i int, frame []byte, slot int, resend bool) {
	part := &f.parts[i]
	f.group.Add(part)
	s.sendRequest(part, frame, slot, resend)
}

// maxLinearGroups is how many slot groups split finds by a linear scan
// before it builds a map.
const maxLinearGroups = 16

// split fans a multi-slot command out by slot. keys are the arg indexes of
// its keys; spec.KeyStep args form one key group (MSET: 2). Parts keep the
// keys' order, and all their frames share one buffer.
func (s *session) split(c *call, spec *command.Spec, args [][]byte, keys []int) *call {
	step := max(spec.KeyStep, 1)
	n := len(keys)
	for _, ki := range keys {
		if ki+step > len(args) {
			return c.fail("ERR wrong number of arguments for '" + spec.Name + "' command")
		}
	}
	f := s.srv.getFanout()
	f.merge, f.nkeys = spec.Merge, n
	// Group the keys by slot, groups in first-seen order: gidx[ord] is the
	// group of key ord, slots[g] the group's slot.
	// ints holds gidx, order, off and next: at most 4n+1 (groups <= n).
	if cap(f.ints) < 4*n+1 {
		f.ints = make([]int32, 4*n+1)
	}
	ints := f.ints[:4*n+1]
	gidx := ints[:n]
	slots := f.slots[:0]
	var index map[int]int32
	size := 0
	for ord, ki := range keys {
		slot := router.Slot(args[ki])
		g := int32(-1)
		if index != nil {
			if v, ok := index[slot]; ok {
				g = v
			}
		} else {
			for i, sl := range slots {
				if sl == slot {
					g = int32(i)
					break
				}
			}
		}
		if g < 0 {
			g = int32(len(slots))
			slots = append(slots, slot)
			if index != nil {
				index[slot] = g
			} else if len(slots) > maxLinearGroups {
				index = make(map[int]int32, 2*len(slots))
				for i, sl := range slots {
					index[sl] = int32(i)
				}
			}
		}
		gidx[ord] = g
		for _, a := range args[ki : ki+step] {
			size += len(a) + 16 // "$<len>\r\n" + payload + "\r\n"
		}
	}
	f.slots = slots
	groups := len(slots)
	// Counting sort of the key ordinals by group: order[off[g]:off[g+1]] are
	// group g's keys, ascending, which is also its ByPosition map.
	order := ints[n : 2*n]
	off := ints[2*n : 2*n+groups+1]
	next := ints[2*n+groups+1 : 2*n+2*groups+1]
	clear(off)
	for _, g := range gidx {
		off[g+1]++
	}
	for g := 0; g < groups; g++ {
		off[g+1] += off[g]
	}
	copy(next, off[:groups])
	for ord, g := range gidx {
		order[next[g]] = int32(ord)
		next[g]++
	}
	need := size + groups*(32+len(args[0]))
	if cap(f.buf) < need {
		f.buf = make([]byte, 0, need)
	}
	buf := f.buf[:0]
	resend := resendable(spec, args) // read-only, or MSET
	write := spec.Flags&command.Write != 0
	f.setParts(groups)
	for g, slot := range slots {
		if write {
			s.wrote.add(slot) // for WAIT
			if s.srv.cfg.WriteReplicas > 0 {
				c.sync = append(c.sync, slot) // wait for replication (sync.go)
			}
		}
		ords := order[off[g]:off[g+1]]
		start := len(buf)
		buf = resp.AppendArrayHeader(buf, 1+len(ords)*step)
		buf = resp.AppendBulk(buf, args[0])
		for _, ord := range ords {
			ki := keys[ord]
			for _, a := range args[ki : ki+step] {
				buf = resp.AppendBulk(buf, a)
			}
		}
		frame := buf[start:len(buf):len(buf)]
		if spec.Merge == command.ByPosition {
			f.pos = append(f.pos, ords)
		}
		f.sendPart(s, g, frame, slot, resend)
	}
	f.buf = buf
	c.fan = f
	return c
}

// allMasters sends frame to every master and merges the replies.
func (s *session) allMasters(c *call, frame []byte, merge command.Merge, readOnly bool) *call {
	return s.toNodes(c, s.srv.router.Masters(), frame, merge, readOnly)
}

// toNodes sends frame to each of the nodes and merges the replies.
func (s *session) toNodes(c *call, masters []string, frame []byte, merge command.Merge, readOnly bool) *call {
	if len(masters) == 0 {
		return c.fail("CLUSTERDOWN proxy: cluster topology not loaded yet")
	}
	f := s.srv.getFanout()
	f.merge = merge
	f.setParts(len(masters))
	for i, addr := range masters {
		f.parts[i].Addr = addr
		f.sendPart(s, i, frame, -1, readOnly)
	}
	c.fan = f
	return c
}

var errMerge = resp.AppendError(nil, "ERR proxy: unexpected reply from a node while merging")

// finish waits for every part and merges their replies into c.reply.
func (f *fanout) finish(srv *Server, c *call) {
	replies := f.replies[:0]
	for range f.parts {
		replies = append(replies, nil)
	}
	f.replies = replies
	var firstErr []byte
	ok := 0
	f.group.Wait()
	for i := range f.parts {
		part := &f.parts[i]
		srv.router.Wait(part)
		if c.hot != nil {
			c.nodeTime += nodeTime(part)
		}
		r := part.Reply
		if part.Err != nil {
			r = errorReply(part.Err)
		}
		replies[i] = r
		if resp.IsError(r) {
			if firstErr == nil {
				firstErr = r
			}
		} else {
			ok++
		}
	}
	b := c.reply[:0]
	switch {
	case f.merge == command.AnyOK:
		if ok > 0 {
			b = resp.AppendOK(b)
		} else {
			b = append(b, firstErr...)
		}
	case firstErr != nil:
		b = append(b, firstErr...)
	case f.custom != nil:
		b = append(b, f.custom(replies)...)
	default:
		b = f.merged(b, replies)
	}
	c.reply = b
	c.fan = nil
	srv.putFanout(f)
}

// merged combines error-free replies by the merge kind.
func (f *fanout) merged(b []byte, replies [][]byte) []byte {
	switch f.merge {
	case command.Sum:
		var sum int64
		for _, r := range replies {
			n, ok := resp.IntValue(r)
			if !ok {
				return append(b, errMerge...)
			}
			sum += n
		}
		return resp.AppendInt(b, sum)
	case command.ByPosition:
		elems := f.elems[:0]
		for range f.nkeys {
			elems = append(elems, nil)
		}
		f.elems = elems
		var els [][]byte
		for i, r := range replies {
			var err error
			els, _, err = resp.Elements(r, els[:0])
			if err != nil || len(els) != len(f.pos[i]) {
				return append(b, errMerge...)
			}
			for j, e := range els {
				elems[f.pos[i][j]] = e
			}
		}
		return appendArray(b, elems)
	case command.Concat, command.Union:
		var all [][]byte
		seen := map[string]bool{}
		for _, r := range replies {
			els, _, err := resp.Elements(r, nil)
			if err != nil {
				return append(b, errMerge...)
			}
			for _, e := range els {
				if f.merge == command.Union {
					if seen[string(e)] {
						continue
					}
					seen[string(e)] = true
				}
				all = append(all, e)
			}
		}
		return appendArray(b, all)
	case command.AndArrays:
		var acc []int64
		for i, r := range replies {
			els, _, err := resp.Elements(r, nil)
			if err != nil || (i > 0 && len(els) != len(acc)) {
				return append(b, errMerge...)
			}
			if i == 0 {
				acc = make([]int64, len(els))
				for j := range acc {
					acc[j] = 1
				}
			}
			for j, e := range els {
				if n, ok := resp.IntValue(e); !ok || n == 0 {
					acc[j] = 0
				}
			}
		}
		b = resp.AppendArrayHeader(b, len(acc))
		for _, n := range acc {
			b = resp.AppendInt(b, n)
		}
		return b
	case command.FirstNonNil:
		for _, r := range replies {
			if !isNull(r) {
				return append(b, r...)
			}
		}
		return append(b, replies[0]...)
	case command.SumPairs:
		var names [][]byte
		counts := map[string]int64{}
		for _, r := range replies {
			els, _, err := resp.Elements(r, nil)
			if err != nil || len(els)%2 != 0 {
				return append(b, errMerge...)
			}
			for j := 0; j < len(els); j += 2 {
				n, _ := resp.IntValue(els[j+1])
				k := string(els[j])
				if _, ok := counts[k]; !ok {
					names = append(names, els[j])
				}
				counts[k] += n
			}
		}
		b = resp.AppendArrayHeader(b, 2*len(names))
		for _, name := range names {
			b = append(b, name...)
			b = resp.AppendInt(b, counts[string(name)])
		}
		return b
	case command.FirstReply, command.NoMerge:
		return append(b, replies[0]...)
	default: // AllOK
		return resp.AppendOK(b)
	}
}

func appendArray(b []byte, elems [][]byte) []byte {
	b = resp.AppendArrayHeader(b, len(elems))
	for _, e := range elems {
		b = append(b, e...)
	}
	return b
}

func isNull(frame []byte) bool {
	return bytes.Equal(frame, []byte("$-1\r\n")) || bytes.Equal(frame, []byte("*-1\r\n")) || bytes.Equal(frame, []byte("_\r\n"))
}

// sumKeyspace merges the "# Keyspace" sections of INFO replies from every
// master: keys and expires add up per database.
func sumKeyspace(replies [][]byte) (map[string][2]int64, []string) {
	sums := map[string][2]int64{}
	var order []string
	eachInfoField(replies, func(db, rest []byte) {
		if !bytes.HasPrefix(db, []byte("db")) {
			return
		}
		var v [2]int64
		for _, kv := range bytes.Split(rest, []byte(",")) {
			k, val, _ := bytes.Cut(kv, []byte("="))
			n, _ := strconv.ParseInt(string(val), 10, 64)
			switch string(k) {
			case "keys":
				v[0] = n
			case "expires":
				v[1] = n
			}
		}
		name := string(db)
		if _, seen := sums[name]; !seen {
			order = append(order, name)
		}
		s := sums[name]
		sums[name] = [2]int64{s[0] + v[0], s[1] + v[1]}
	})
	return sums, order
}
