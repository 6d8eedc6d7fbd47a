package ratelimit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/ratelimit"
)

func state(t *testing.T, states []ratelimit.LimitState, name string) ratelimit.LimitState {
	t.Helper()
	for _, s := range states {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no %s limit in %+v", name, states)
	return ratelimit.LimitState{}
}

// refill is how much of a per-minute limit can come back in d, rounded up.
func refill(perMinute int64, d time.Duration) int64 {
	return int64(float64(perMinute)*d.Seconds()/60) + 1
}

// TestAcquireConcurrentExact: 200 concurrent acquires against a
// concurrency limit of 50 admit exactly 50, and against 50 RPM admit 50
// (plus what refills while they run).
func TestAcquireConcurrentExact(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, ratelimit.Options{})
	for _, c := range []struct {
		tenant string
		limits ratelimit.Limits
	}{
		{"exact-conc", ratelimit.Limits{Concurrency: 50}},
		{"exact-rpm", ratelimit.Limits{RPM: 50}},
		{"exact-tpm", ratelimit.Limits{TPM: 5000}},
	} {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		start := time.Now()
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, err := l.Acquire(ctx, c.tenant, ratelimit.Request{Limits: c.limits, Tokens: 100, LeaseTTL: time.Minute})
				if err != nil {
					errs <- err
					return
				}
				if g.Allowed {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		n := allowed.Load()
		switch {
		case c.limits.Concurrency > 0:
			if n != 50 {
				t.Fatalf("%s: %d allowed, want exactly 50", c.tenant, n)
			}
		case c.limits.RPM > 0:
			if n < 50 || n > 50+refill(50, elapsed)-1 {
				t.Fatalf("%s: %d allowed in %v, want 50 (plus refill)", c.tenant, n, elapsed)
			}
		default:
			if n < 50 || n > 50+refill(5000, elapsed)/100 {
				t.Fatalf("%s: %d allowed in %v, want 50 (plus refill)", c.tenant, n, elapsed)
			}
		}
		t.Logf("%s: %d allowed in %v", c.tenant, n, elapsed)
	}
}

// TestAcquireAllOrNothing: a request refused by one limit charges none.
func TestAcquireAllOrNothing(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, ratelimit.Options{})
	tenant := "allornothing"
	lim := ratelimit.Limits{RPM: 100, TPM: 6000, Concurrency: 1}
	start := time.Now()
	g, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !g.Allowed || len(g.Lease) != 32 || len(g.Limits) != 3 {
		t.Fatalf("first acquire = %+v, want allowed with a lease and 3 limits", g)
	}
	if s := state(t, g.Limits, "rpm"); s.Remaining != 99 || s.Limit != 100 || s.Limited || s.RetryAfter != -1 {
		t.Fatalf("rpm = %+v", s)
	}
	if s := state(t, g.Limits, "tpm"); s.Remaining != 5000 || s.ResetAfter <= 9*time.Second || s.ResetAfter > 10*time.Second {
		t.Fatalf("tpm = %+v, want 5000 left, reset ~10s", s)
	}
	if s := state(t, g.Limits, "concurrency"); s.Remaining != 0 || s.Limited {
		t.Fatalf("concurrency = %+v", s)
	}
	// Refused by concurrency: neither rpm nor tpm is charged.
	g2, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if g2.Allowed || g2.Lease != "" {
		t.Fatalf("second acquire = %+v, want refused", g2)
	}
	c := state(t, g2.Limits, "concurrency")
	if !c.Limited || c.RetryAfter <= 0 || c.RetryAfter > 5*time.Minute {
		t.Fatalf("concurrency = %+v, want limited with retry within the lease TTL", c)
	}
	if s := state(t, g2.Limits, "rpm"); s.Remaining != 99 || s.Limited || s.RetryAfter != -1 {
		t.Fatalf("rpm after refusal = %+v, want 99 left (not charged)", s)
	}
	slack := refill(6000, time.Since(start))
	if s := state(t, g2.Limits, "tpm"); s.Remaining < 5000 || s.Remaining > 5000+slack || s.Limited {
		t.Fatalf("tpm after refusal = %+v, want 5000 left (not charged)", s)
	}
	// Refused by tpm (more tokens than left): concurrency is not taken.
	if _, err := l.Release(ctx, tenant, g.Lease); err != nil {
		t.Fatal(err)
	}
	g3, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 5500})
	if err != nil {
		t.Fatal(err)
	}
	tp := state(t, g3.Limits, "tpm")
	if g3.Allowed || !tp.Limited || tp.Never || tp.RetryAfter <= 0 || tp.RetryAfter > 6*time.Second {
		t.Fatalf("acquire over tpm = %+v, want refused by tpm, retry within ~5s", g3)
	}
	if g3.RetryAfter() != tp.RetryAfter {
		t.Fatalf("grant retry after %v, want tpm's %v", g3.RetryAfter(), tp.RetryAfter)
	}
	ps, err := l.Peek(ctx, tenant, lim)
	if err != nil {
		t.Fatal(err)
	}
	if s := state(t, ps, "concurrency"); s.Remaining != 1 {
		t.Fatalf("concurrency after tpm refusal = %+v, want the slot free", s)
	}
	if s := state(t, ps, "rpm"); s.Remaining != 99 {
		t.Fatalf("rpm after tpm refusal = %+v, want 99", s)
	}
	// Never: more tokens than the TPM limit can ever grant.
	g4, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 6001})
	if err != nil {
		t.Fatal(err)
	}
	if tp := state(t, g4.Limits, "tpm"); g4.Allowed || !tp.Never || tp.RetryAfter != -1 || g4.RetryAfter() != -1 {
		t.Fatalf("acquire above TPM = %+v, want never allowed, retry -1", g4)
	}
}

// TestSettle: settle refunds and charges the difference once.
func TestSettle(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, ratelimit.Options{})
	tenant := "settle"
	lim := ratelimit.Limits{TPM: 6000, Concurrency: 5}
	tpmLeft := func() int64 {
		ps, err := l.Peek(ctx, tenant, lim)
		if err != nil {
			t.Fatal(err)
		}
		return state(t, ps, "tpm").Remaining
	}
	start := time.Now()
	g, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 3000})
	if err != nil || !g.Allowed {
		t.Fatalf("acquire: %+v %v", g, err)
	}
	// Refund: 3000 estimated, 1000 used.
	r, err := l.Settle(ctx, tenant, g.Lease, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r != (ratelimit.SettleResult{Settled: true, Delta: -2000, Tokens: 1000}) {
		t.Fatalf("settle = %+v", r)
	}
	left := tpmLeft()
	if slack := refill(6000, time.Since(start)); left < 5000 || left > 5000+slack {
		t.Fatalf("tpm left after refund = %d, want 5000", left)
	}
	// Twice: nothing changes, and it says so.
	r, err = l.Settle(ctx, tenant, g.Lease, 50)
	if err != nil {
		t.Fatal(err)
	}
	if r != (ratelimit.SettleResult{Settled: false, Delta: 0, Tokens: 1000}) {
		t.Fatalf("second settle = %+v, want not settled again", r)
	}
	if l2 := tpmLeft(); l2 < left || l2 > left+refill(6000, time.Since(start)) {
		t.Fatalf("tpm left after second settle = %d, was %d", l2, left)
	}
	// The settle freed the concurrency slot.
	ps, err := l.Peek(ctx, tenant, lim)
	if err != nil {
		t.Fatal(err)
	}
	if s := state(t, ps, "concurrency"); s.Remaining != 5 {
		t.Fatalf("concurrency after settle = %+v, want 5 free", s)
	}
	// Charge: 500 estimated, 2500 used.
	start = time.Now()
	before := tpmLeft()
	g, err = l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 500})
	if err != nil || !g.Allowed {
		t.Fatalf("acquire: %+v %v", g, err)
	}
	r, err = l.Settle(ctx, tenant, g.Lease, 2500)
	if err != nil {
		t.Fatal(err)
	}
	if r != (ratelimit.SettleResult{Settled: true, Delta: 2000, Tokens: 2500}) {
		t.Fatalf("settle = %+v", r)
	}
	after := tpmLeft()
	if slack := refill(6000, time.Since(start)); after < before-2500 || after > before-2500+slack {
		t.Fatalf("tpm left %d -> %d after charging 2500", before, after)
	}
	// Charging past the limit leaves the bucket in debt: refused until it
	// drains, even for no tokens.
	g, err = l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 100})
	if err != nil || !g.Allowed {
		t.Fatalf("acquire: %+v %v", g, err)
	}
	if _, err := l.Settle(ctx, tenant, g.Lease, 20000); err != nil {
		t.Fatal(err)
	}
	held := g.Lease
	g, err = l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	if tp := state(t, g.Limits, "tpm"); g.Allowed || !tp.Limited || tp.Remaining != 0 || tp.RetryAfter < 100*time.Second {
		t.Fatalf("acquire in debt = %+v, want refused for minutes", g)
	}
	// Unknown and malformed leases.
	if _, err := l.Settle(ctx, tenant, strings.Repeat("ab", 16), 1); !errors.Is(err, ratelimit.ErrUnknownLease) {
		t.Fatalf("unknown lease: %v", err)
	}
	if _, err := l.Settle(ctx, tenant, "nope", 1); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Fatalf("malformed lease: %v", err)
	}
	if _, err := l.Settle(ctx, "other-tenant", held, 1); !errors.Is(err, ratelimit.ErrUnknownLease) {
		t.Fatalf("lease of another tenant: %v", err)
	}
	if _, err := l.Settle(ctx, tenant, strings.Repeat("ab", 16), -1); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Fatalf("negative actual: %v", err)
	}
}

// TestReleaseAndExpiry: release frees a slot once; an expired lease frees
// it too.
func TestReleaseAndExpiry(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, ratelimit.Options{})
	tenant := "release"
	lim := ratelimit.Limits{Concurrency: 1}
	g, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim})
	if err != nil || !g.Allowed {
		t.Fatalf("acquire: %+v %v", g, err)
	}
	if g2, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim}); err != nil || g2.Allowed {
		t.Fatalf("second acquire: %+v %v, want refused", g2, err)
	}
	ok, err := l.Release(ctx, tenant, g.Lease)
	if err != nil || !ok {
		t.Fatalf("release = %v %v, want true", ok, err)
	}
	ok, err = l.Release(ctx, tenant, g.Lease)
	if err != nil || ok {
		t.Fatalf("second release = %v %v, want false", ok, err)
	}
	// Settling a released lease still records the tokens once.
	if r, err := l.Settle(ctx, tenant, g.Lease, 10); err != nil || !r.Settled {
		t.Fatalf("settle after release = %+v %v", r, err)
	}
	if _, err := l.Release(ctx, tenant, strings.Repeat("0", 32)); !errors.Is(err, ratelimit.ErrUnknownLease) {
		t.Fatalf("release of unknown lease: %v", err)
	}
	// A lease of 300 ms holds the slot, then frees it by itself.
	g, err = l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, LeaseTTL: 300 * time.Millisecond})
	if err != nil || !g.Allowed {
		t.Fatalf("acquire: %+v %v", g, err)
	}
	g2, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim})
	if err != nil || g2.Allowed {
		t.Fatalf("acquire while held: %+v %v, want refused", g2, err)
	}
	if c := state(t, g2.Limits, "concurrency"); c.RetryAfter <= 0 || c.RetryAfter > 300*time.Millisecond {
		t.Fatalf("retry after %v, want within the 300ms lease", c.RetryAfter)
	}
	time.Sleep(400 * time.Millisecond)
	ps, err := l.Peek(ctx, tenant, lim)
	if err != nil {
		t.Fatal(err)
	}
	if s := state(t, ps, "concurrency"); s.Remaining != 1 || s.Limited {
		t.Fatalf("peek after expiry = %+v, want the slot free", s)
	}
	g3, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim})
	if err != nil || !g3.Allowed {
		t.Fatalf("acquire after expiry: %+v %v, want allowed", g3, err)
	}
	// The expired lease can still be settled (within the grace).
	if r, err := l.Settle(ctx, tenant, g.Lease, 1); err != nil || !r.Settled {
		t.Fatalf("settle of expired lease = %+v %v", r, err)
	}
}

func TestReset(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, ratelimit.Options{})
	tenant := "reset"
	lim := ratelimit.Limits{RPM: 2, TPM: 1000, Concurrency: 2}
	var last ratelimit.Grant
	for range 2 {
		g, err := l.Acquire(ctx, tenant, ratelimit.Request{Limits: lim, Tokens: 400})
		if err != nil || !g.Allowed {
			t.Fatalf("acquire: %+v %v", g, err)
		}
		last = g
	}
	if err := l.Reset(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	ps, err := l.Peek(ctx, tenant, lim)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ps {
		if s.Remaining != s.Limit || s.Limited {
			t.Fatalf("after reset: %+v, want full", s)
		}
	}
	// A lease from before the reset settles, but no longer moves TPM.
	if r, err := l.Settle(ctx, tenant, last.Lease, 1000); err != nil || !r.Settled {
		t.Fatalf("settle after reset = %+v %v", r, err)
	}
	ps, err = l.Peek(ctx, tenant, lim)
	if err != nil {
		t.Fatal(err)
	}
	if s := state(t, ps, "tpm"); s.Remaining != 1000 {
		t.Fatalf("tpm after settling an old lease = %+v, want untouched", s)
	}
}

func TestTenantErrors(t *testing.T) {
	ctx := context.Background()
	cc := testcluster.NewClusterClient(t, shared)
	l, err := ratelimit.New(cc, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ok := ratelimit.Limits{RPM: 10}
	for _, c := range []struct {
		name   string
		tenant string
		req    ratelimit.Request
		want   string
	}{
		{"empty tenant", "", ratelimit.Request{Limits: ok}, "empty tenant"},
		{"long tenant", strings.Repeat("t", ratelimit.MaxKeyLen+1), ratelimit.Request{Limits: ok}, "above the maximum"},
		{"closing brace", "}x", ratelimit.Request{Limits: ok}, "brace"},
		{"opening brace", "a{b", ratelimit.Request{Limits: ok}, "brace"},
		{"no limit", "t", ratelimit.Request{}, "no limit given"},
		{"negative rpm", "t", ratelimit.Request{Limits: ratelimit.Limits{RPM: -1}}, "RPM -1 is negative"},
		{"negative tpm", "t", ratelimit.Request{Limits: ratelimit.Limits{TPM: -5}}, "TPM -5 is negative"},
		{"negative concurrency", "t", ratelimit.Request{Limits: ratelimit.Limits{Concurrency: -1}}, "CONCURRENCY -1"},
		{"rpm too high", "t", ratelimit.Request{Limits: ratelimit.Limits{RPM: ratelimit.MaxPerMinute + 1}}, "above the maximum"},
		{"tpm too high", "t", ratelimit.Request{Limits: ratelimit.Limits{TPM: 1 << 62}}, "above the maximum"},
		{"concurrency too high", "t", ratelimit.Request{Limits: ratelimit.Limits{Concurrency: ratelimit.MaxConcurrency + 1}}, "above the maximum"},
		{"negative tokens", "t", ratelimit.Request{Limits: ok, Tokens: -1}, "TOKENS -1"},
		{"too many tokens", "t", ratelimit.Request{Limits: ok, Tokens: ratelimit.MaxTokens + 1}, "TOKENS"},
		{"negative lease", "t", ratelimit.Request{Limits: ok, LeaseTTL: -time.Second}, "lease TTL"},
		{"lease too long", "t", ratelimit.Request{Limits: ok, LeaseTTL: 25 * time.Hour}, "lease TTL"},
	} {
		_, err := l.Acquire(ctx, c.tenant, c.req)
		if !errors.Is(err, ratelimit.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrInvalid with %q", c.name, err, c.want)
		}
	}
	if _, err := l.Peek(ctx, "", ok); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("peek empty tenant: %v", err)
	}
	if _, err := l.Peek(ctx, "t", ratelimit.Limits{}); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("peek without limits: %v", err)
	}
	// A brace would break the hash tag that keeps a tenant in one slot.
	if _, err := l.Peek(ctx, "}", ok); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("peek tenant with a brace: %v", err)
	}
	if _, err := l.Settle(ctx, "}x", strings.Repeat("0", 32), 1); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("settle tenant with a brace: %v", err)
	}
	if err := l.Reset(ctx, ""); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("reset empty tenant: %v", err)
	}
	if _, err := l.Release(ctx, "", strings.Repeat("0", 32)); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("release empty tenant: %v", err)
	}
	if _, err := l.Release(ctx, "t", strings.Repeat("G", 32)); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("release bad lease: %v", err)
	}
	// Keys of the wrong type.
	if err := cc.HSet(ctx, "rl:{wt1}:tpm", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(ctx, "wt1", ratelimit.Request{Limits: ratelimit.Limits{TPM: 10}})
	if !errors.Is(err, ratelimit.ErrWrongType) || !strings.Contains(err.Error(), "rl:{wt1}:tpm") {
		t.Errorf("tpm key is a hash: %v", err)
	}
	if err := cc.Set(ctx, "rl:{wt2}:leases", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(ctx, "wt2", ratelimit.Request{Limits: ratelimit.Limits{Concurrency: 1}})
	if !errors.Is(err, ratelimit.ErrWrongType) {
		t.Errorf("leases key is a string: %v", err)
	}
	if _, err := l.Peek(ctx, "wt2", ratelimit.Limits{Concurrency: 1}); !errors.Is(err, ratelimit.ErrWrongType) {
		t.Errorf("peek, leases key is a string: %v", err)
	}
	if err := cc.LPush(ctx, "rl:{wt3}:gen", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if err := l.Reset(ctx, "wt3"); !errors.Is(err, ratelimit.ErrWrongType) {
		t.Errorf("reset, gen key is a list: %v", err)
	}
}
