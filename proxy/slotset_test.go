package proxy

import (
	"slices"
	"testing"
)

func TestSlotSetRanges(t *testing.T) {
	var s slotSet
	if got := s.slots(); len(got) != 0 {
		t.Fatalf("empty set has slots %v", got)
	}
	s.add(0)
	s.add(63) // same range as 0
	s.add(5461)
	s.add(16383)
	got := s.slots()
	var want []int
	for _, r := range []int{0, 5461 / slotRange, 16383 / slotRange} {
		for slot := r * slotRange; slot < (r+1)*slotRange; slot++ {
			want = append(want, slot)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("slots = %d slots from %v, want %d from %v", len(got), got[:1], len(want), want[:1])
	}
	for _, slot := range []int{0, 63, 5461, 16383} {
		if !slices.Contains(got, slot) {
			t.Fatalf("slot %d written but not in %v", slot, got)
		}
	}
	s.clear()
	if got := s.slots(); len(got) != 0 {
		t.Fatalf("cleared set has %d slots", len(got))
	}
}

func TestFoldEqual(t *testing.T) {
	for _, tc := range []struct {
		b    string
		name string
		want bool
	}{
		{"GET", "get", true}, {"get", "get", true}, {"GeT", "get", true},
		{"GETX", "get", false}, {"GE", "get", false}, {"SET", "get", false},
		{"G\x00T", "get", false},
	} {
		if got := foldEqual([]byte(tc.b), tc.name); got != tc.want {
			t.Errorf("foldEqual(%q, %q) = %v, want %v", tc.b, tc.name, got, tc.want)
		}
	}
}
