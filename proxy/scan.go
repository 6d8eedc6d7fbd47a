package proxy

import (
	"strconv"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// scanNodeBits is how many low bits of a proxy SCAN cursor hold the index
// of the master being scanned; the node's own cursor is in the bits above.
const scanNodeBits = 10

// scan walks every master in turn: the cursor the client sees encodes the
// master's position (masters ordered by their lowest slot) and that node's
// cursor. On a stable cluster a full scan returns every key; like Redis's
// SCAN, a key may be returned more than once, and keys written during the
// scan may or may not be.
func (s *session) scan(c *call, args [][]byte) *call {
	cursor, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		return c.fail("ERR invalid cursor")
	}
	masters := s.srv.router.MastersBySlot()
	if len(masters) == 0 {
		return c.fail("CLUSTERDOWN proxy: cluster topology not loaded yet")
	}
	idx := int(cursor & (1<<scanNodeBits - 1))
	nodeCursor := cursor >> scanNodeBits
	if idx >= len(masters) {
		return c.fail("ERR invalid cursor")
	}
	frame := resp.AppendArrayHeader(nil, len(args))
	frame = resp.AppendBulk(frame, args[0])
	frame = resp.AppendBulkString(frame, strconv.FormatUint(nodeCursor, 10))
	for _, a := range args[2:] {
		frame = resp.AppendBulk(frame, a)
	}
	f := s.srv.getFanout()
	f.setParts(1)
	f.parts[0].Addr = masters[idx]
	f.sendPart(s, 0, frame, -1, true)
	f.custom = func(replies [][]byte) []byte {
		els, _, err := resp.Elements(replies[0], nil)
		if err != nil || len(els) != 2 {
			return errMerge
		}
		nb, ok := resp.BulkValue(els[0])
		next, perr := strconv.ParseUint(string(nb), 10, 64)
		if !ok || perr != nil || next >= 1<<(64-scanNodeBits) {
			return errMerge
		}
		var out uint64
		switch {
		case next != 0:
			out = next<<scanNodeBits | uint64(idx)
		case idx+1 < len(masters):
			out = uint64(idx + 1) // the next master, from its cursor 0
		}
		b := resp.AppendArrayHeader(nil, 2)
		b = resp.AppendBulkString(b, strconv.FormatUint(out, 10))
		return append(b, els[1]...)
	}
	c.fan = f
	return c
}
