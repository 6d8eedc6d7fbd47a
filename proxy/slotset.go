package proxy

import (
	"math/bits"

	"github.com/clusterproxy/clusterproxy/router"
)

// slotSet is a set of hash slots: the slots a session wrote to since its
// last WAIT. Adding is a bit test on the write path; the 2 KiB bitmap is
// allocated on the first add.
type slotSet struct {
	bits *[router.SlotCount / 64]uint64
	n    int
}

// add puts slot in the set.
func (s *slotSet) add(slot int) {
	if s.bits == nil {
		s.bits = new([router.SlotCount / 64]uint64)
	}
	w, b := slot>>6, uint64(1)<<(slot&63)
	if s.bits[w]&b == 0 {
		s.bits[w] |= b
		s.n++
	}
}

// slots returns the slots in the set, ascending.
func (s *slotSet) slots() []int {
	if s.n == 0 {
		return nil
	}
	out := make([]int, 0, s.n)
	for w, word := range s.bits {
		for word != 0 {
			i := bits.TrailingZeros64(word)
			out = append(out, w<<6|i)
			word &= word - 1
		}
	}
	return out
}

// clear empties the set.
func (s *slotSet) clear() {
	if s.n > 0 {
		clear(s.bits[:])
		s.n = 0
	}
}
