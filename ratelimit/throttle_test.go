package ratelimit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/ratelimit"
)

// TestThrottleCellExample runs redis-cell's documented example,
// CL.THROTTLE user123 15 30 60: 16 allowed in a burst, then limited.
func TestThrottleCellExample(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, ratelimit.Options{})
	key := "cellexample:user123"
	start := time.Now()
	for k := int64(1); k <= 16; k++ {
		r, err := l.Throttle(ctx, key, 15, 30, 60, 1)
		if err != nil {
			t.Fatal(err)
		}
		got := r.Values()
		if k == 1 && got != [5]int64{0, 16, 15, -1, 2} {
			t.Fatalf("first call = %v, want redis-cell's [0 16 15 -1 2]", got)
		}
		// One unit per 2 s: reset grows by 2 s per request; rounding up
		// keeps it at 2k while the calls take under a second.
		wantReset := 2 * k
		if time.Since(start) > 900*time.Millisecond && got[4] == wantReset-1 {
			wantReset--
		}
		if want := [5]int64{0, 16, 16 - k, -1, wantReset}; got != want {
			t.Fatalf("call %d = %v, want %v", k, got, want)
		}
	}
	r, err := l.Throttle(ctx, key, 15, 30, 60, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Values()
	want := [5]int64{1, 16, 0, 2, 32}
	if time.Since(start) > 900*time.Millisecond {
		// A slow machine: the bucket has drained a little.
		if got[3] == 1 {
			want[3] = 1
		}
		if got[4] == 31 {
			want[4] = 31
		}
	}
	if got != want {
		t.Fatalf("17th call = %v, want %v", got, want)
	}
	// A peek changes nothing.
	p, err := l.Throttle(ctx, key, 15, 30, 60, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Limited || p.Remaining != 0 || p.RetryAfter != -1 {
		t.Fatalf("peek = %+v, want allowed with 0 remaining", p)
	}
}

// TestThrottleCellCases follows redis-cell's own test sequence (limit 5,
// one per second) where it does not need a fake clock.
func TestThrottleCellCases(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, ratelimit.Options{})
	key := "cellcases"
	// A request larger than the bucket is never allowed: retry after -1.
	r, err := l.Throttle(ctx, key, 4, 1, 1, 6)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Values(); got != [5]int64{1, 5, 5, -1, 0} {
		t.Fatalf("oversized = %v, want [1 5 5 -1 0]", got)
	}
	for k := int64(1); k <= 5; k++ {
		r, err := l.Throttle(ctx, key, 4, 1, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Values(); got[0] != 0 || got[2] != 5-k || got[3] != -1 || got[4] != k {
			t.Fatalf("call %d = %v, want [0 5 %d -1 %d]", k, got, 5-k, k)
		}
	}
	r, err = l.Throttle(ctx, key, 4, 1, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Values(); got != [5]int64{1, 5, 0, 1, 5} {
		t.Fatalf("sixth = %v, want [1 5 0 1 5]", got)
	}
	if r.RetryAfter <= 0 || r.RetryAfter > time.Second {
		t.Fatalf("retry after %v, want within (0, 1s]", r.RetryAfter)
	}
	// A large request is limited while a small one would pass later; after
	// 1.2 s one unit is back.
	time.Sleep(1200 * time.Millisecond)
	r, err = l.Throttle(ctx, key, 4, 1, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Limited || r.Remaining != 1 {
		t.Fatalf("after 1.2s: %+v, want 1 remaining", r)
	}
	r, err = l.Throttle(ctx, key, 4, 1, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Limited || r.Remaining != 1 || r.RetryAfter <= 0 || r.RetryAfter > time.Second {
		t.Fatalf("2 units with 1 left: %+v, want limited, retry within 1s", r)
	}
	r, err = l.Throttle(ctx, key, 4, 1, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Limited || r.Remaining != 0 {
		t.Fatalf("1 unit with 1 left: %+v, want allowed, 0 left", r)
	}
}

func TestThrottleErrors(t *testing.T) {
	ctx := context.Background()
	cc := testcluster.NewClusterClient(t, shared)
	l, err := ratelimit.New(cc, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name                           string
		key                            string
		burst, count, period, quantity int64
		want                           string
	}{
		{"empty key", "", 1, 1, 1, 1, "empty key"},
		{"long key", strings.Repeat("k", ratelimit.MaxKeyLen+1), 1, 1, 1, 1, "above the maximum"},
		{"negative burst", "k", -1, 1, 1, 1, "max_burst -1 is negative"},
		{"zero count", "k", 1, 0, 1, 1, "count per period 0"},
		{"negative count", "k", 1, -3, 1, 1, "count per period -3"},
		{"zero period", "k", 1, 1, 0, 1, "period 0"},
		{"negative period", "k", 1, 1, -1, 1, "period -1"},
		{"negative quantity", "k", 1, 1, 1, -1, "quantity -1 is negative"},
		{"overflow burst", "k", 1 << 62, 1, 1, 1, "overflow"},
		{"overflow period", "k", 1, 1, 1 << 62, 1, "overflow"},
		{"overflow product", "k", 1 << 20, 1, 1 << 20, 1, "overflow"},
		{"rate too high", "k", 1, 2_000_001, 2, 1, "rate too high"},
	} {
		_, err := l.Throttle(ctx, c.key, c.burst, c.count, c.period, c.quantity)
		if !errors.Is(err, ratelimit.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrInvalid with %q", c.name, err, c.want)
		}
	}
	// A key of another type.
	if err := cc.HSet(ctx, "rl:{throttle-wrongtype}", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = l.Throttle(ctx, "throttle-wrongtype", 1, 1, 1, 1)
	if !errors.Is(err, ratelimit.ErrWrongType) || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("wrong type: err = %v, want ErrWrongType naming the hash", err)
	}
	// A string that is not a state.
	if err := cc.Set(ctx, "rl:{throttle-garbage}", "abc", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = l.Throttle(ctx, "throttle-garbage", 1, 1, 1, 1)
	if !errors.Is(err, ratelimit.ErrWrongType) {
		t.Fatalf("garbage value: err = %v, want ErrWrongType", err)
	}
	if _, err := ratelimit.New(cc, ratelimit.Options{Prefix: "a{b"}); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Fatalf("prefix with brace: err = %v", err)
	}
	if _, err := ratelimit.New(nil, ratelimit.Options{}); err == nil {
		t.Fatal("nil scripter accepted")
	}
}
