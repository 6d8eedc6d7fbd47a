package proxy

import (
	"math/bits"

	"github.com/clusterproxy/clusterproxy/router"
)

// slotRange is how many consecutive hash slots one bit of a slotSet covers.
const slotRange = 64

// slotSet records where a session wrote since its last WAIT, by ranges of
// 64 consecutive slots: 32 bytes held inline, so the bit set on every write
// stays in the session's cache line instead of missing in a 2 KiB bitmap.
// slots returns every slot of the ranges written; a WAIT so runs on each
// master serving one of them, which is at most one master more than exact
// tracking where a range straddles two masters (masters own long runs of
// slots).
type slotSet struct {
	bits [router.SlotCount / slotRange / 64]uint64
}

// add puts slot's range in the set.
func (s *slotSet) add(slot int) {
	r := (slot / slotRange) & (router.SlotCount/slotRange - 1)
	s.bits[r>>6] |= uint64(1) << (r & 63)
}

// slots returns the slots of the ranges in the set, ascending.
func (s *slotSet) slots() []int {
	var out []int
	for w, word := range s.bits {
		for word != 0 {
			r := w<<6 | bits.TrailingZeros64(word)
			for slot := r * slotRange; slot < (r+1)*slotRange; slot++ {
				out = append(out, slot)
			}
			word &= word - 1
		}
	}
	return out
}

// clear empties the set.
func (s *slotSet) clear() { s.bits = [len(s.bits)]uint64{} }
