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
// command's policy once all have answered.
type fanout struct {
	merge command.Merge
	subs  []*call
	pos   [][]int32 // ByPosition: for each part, the original ordinal of each key
	nkeys int
	// custom, when set, builds the reply from the parts' replies (none of
	// which is an error); used for INFO.
	custom func(replies [][]byte) []byte
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
	// Group the keys by slot, groups in first-seen order: gidx[ord] is the
	// group of key ord, slots[g] and counts[g] the group's slot and size.
	gidx := make([]int32, n)
	var slots []int
	var counts []int32
	var index map[int]int32
	size := 0
	for ord, ki := range keys {
		if ki+step > len(args) {
			return c.fail("ERR wrong number of arguments for '" + spec.Name + "' command")
		}
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
			counts = append(counts, 0)
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
		counts[g]++
		for _, a := range args[ki : ki+step] {
			size += len(a) + 16 // "$<len>\r\n" + payload + "\r\n"
		}
	}
	// Counting sort of the key ordinals by group: order[off[g]:off[g+1]] are
	// group g's keys, ascending, which is also its ByPosition map.
	off := make([]int32, len(slots)+1)
	for g, k := range counts {
		off[g+1] = off[g] + k
	}
	order := make([]int32, n)
	next := append([]int32(nil), off[:len(slots)]...)
	for ord, g := range gidx {
		order[next[g]] = int32(ord)
		next[g]++
	}
	buf := make([]byte, 0, size+len(slots)*(32+len(args[0])))
	f := &fanout{merge: spec.Merge, nkeys: n, subs: make([]*call, 0, len(slots))}
	if spec.Merge == command.ByPosition {
		f.pos = make([][]int32, len(slots))
	}
	resend := resendable(spec, args) // read-only, or MSET
	write := spec.Flags&command.Write != 0
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
		if f.pos != nil {
			f.pos[g] = ords
		}
		sub := s.srv.getCall()
		s.send(sub, frame, slot, resend)
		f.subs = append(f.subs, sub)
	}
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
	f := &fanout{merge: merge}
	for _, addr := range masters {
		sub := s.srv.getCall()
		sub.req.Addr = addr
		s.send(sub, frame, -1, readOnly)
		f.subs = append(f.subs, sub)
	}
	c.fan = f
	return c
}

var errMerge = resp.AppendError(nil, "ERR proxy: unexpected reply from a node while merging")

// finish waits for every part and merges their replies into c.reply.
func (f *fanout) finish(srv *Server, c *call) {
	replies := make([][]byte, len(f.subs))
	var firstErr []byte
	ok := 0
	for i, sub := range f.subs {
		srv.router.Wait(sub.req)
		r := sub.req.Reply
		if sub.req.Err != nil {
			r = errorReply(sub.req.Err)
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
	for _, sub := range f.subs {
		srv.putCall(sub)
	}
	c.fan = nil
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
		elems := make([][]byte, f.nkeys)
		for i, r := range replies {
			els, _, err := resp.Elements(r, nil)
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
	for _, r := range replies {
		text, ok := resp.BulkValue(r)
		if !ok {
			continue
		}
		for _, line := range bytes.Split(text, []byte("\r\n")) {
			db, rest, found := bytes.Cut(line, []byte(":"))
			if !found || !bytes.HasPrefix(db, []byte("db")) {
				continue
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
		}
	}
	return sums, order
}
