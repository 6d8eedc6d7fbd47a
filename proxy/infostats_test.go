package proxy

import (
	"testing"
	"time"
)

func TestOpsRate(t *testing.T) {
	var r opsRate
	t0 := time.Unix(1000, 0)
	if got := r.sample(t0, 100); got != 0 {
		t.Fatalf("first reading: rate %d, want 0", got)
	}
	// 50 ms later: too close to the first reading to give a rate.
	if got := r.sample(t0.Add(50*time.Millisecond), 150); got != 0 {
		t.Fatalf("after 50 ms: rate %d, want 0", got)
	}
	// One second after the first: 1000 commands in a second.
	if got := r.sample(t0.Add(time.Second), 1100); got != 1000 {
		t.Fatalf("after 1 s: rate %d, want 1000", got)
	}
	// Readings every 500 ms: the one a second old is used.
	r.sample(t0.Add(1500*time.Millisecond), 2100)
	if got := r.sample(t0.Add(2*time.Second), 2600); got != 1500 {
		t.Fatalf("after 2 s: rate %d, want 1500 (from the reading at 1 s)", got)
	}
	// Thirty seconds later: the newest reading, however old.
	if got := r.sample(t0.Add(32*time.Second), 2600+30000); got != 1000 {
		t.Fatalf("after a 30 s gap: rate %d, want 1000", got)
	}
	// Over a minute: no rate.
	if got := r.sample(t0.Add(100*time.Second), 1e6); got != 0 {
		t.Fatalf("after a 68 s gap: rate %d, want 0", got)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0B", 1023: "1023B", 1024: "1.00K", 1536: "1.50K",
		9793699: "9.34M", 3 << 30: "3.00G", 5 << 40: "5.00T",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %s, want %s", n, got, want)
		}
	}
}
