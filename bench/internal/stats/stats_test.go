package stats

import (
	"math"
	"testing"
	"time"
)

func TestSummaryPercentiles(t *testing.T) {
	h := NewHist(3)
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	s := h.Summary()
	if s.Count != 1000 {
		t.Fatalf("count %d, want 1000", s.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", s.P50, 500}, {"p90", s.P90, 900}, {"p99", s.P99, 990}, {"p99.9", s.P999, 999}, {"max", s.Max, 1000}, {"mean", s.Mean, 500.5},
	} {
		if math.Abs(c.got-c.want)/c.want > 0.002 {
			t.Errorf("%s = %.3f ms, want %.0f within 0.2%%", c.name, c.got, c.want)
		}
	}
}

func TestMergeAndClamp(t *testing.T) {
	a, b := NewHist(2), NewHist(2)
	a.Record(0)                       // below the lowest value: clamped to 1 µs
	b.Record(2 * time.Hour)           // above the highest: clamped to a minute
	b.RecordN(3*time.Millisecond, 10) // ten at once
	a.Merge(b)
	a.Merge(nil)
	if a.Count() != 12 {
		t.Fatalf("count %d, want 12", a.Count())
	}
	s := a.Summary()
	if s.Max < 59_000 || s.Max > 61_000 {
		t.Errorf("max %.0f ms, want about one minute (clamped)", s.Max)
	}
	if s.P50 < 2.9 || s.P50 > 3.1 {
		t.Errorf("p50 %.3f ms, want 3", s.P50)
	}
}

func TestEmptyAndRate(t *testing.T) {
	if s := NewHist(3).Summary(); s != (Latency{}) {
		t.Errorf("empty summary %+v, want zero", s)
	}
	if r := Rate(500, 250*time.Millisecond); r != 2000 {
		t.Errorf("Rate = %v, want 2000", r)
	}
	if r := Rate(5, 0); r != 0 {
		t.Errorf("Rate over 0 = %v, want 0", r)
	}
}
