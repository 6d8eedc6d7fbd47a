package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// rlFields reads a RESP3 map or a RESP2 flat array of pairs into a map.
func rlFields(t *testing.T, v interface{}) map[string]interface{} {
	t.Helper()
	out := map[string]interface{}{}
	switch x := v.(type) {
	case map[interface{}]interface{}:
		for k, e := range x {
			out[fmt.Sprint(k)] = e
		}
	case []interface{}:
		if len(x)%2 != 0 {
			t.Fatalf("odd flat array %v", x)
		}
		for i := 0; i < len(x); i += 2 {
			out[fmt.Sprint(x[i])] = x[i+1]
		}
	default:
		t.Fatalf("reply %T %v is neither a map nor a flat array", v, v)
	}
	return out
}

// rlLimits returns the per-limit maps of an RL.ACQUIRE or RL.PEEK reply by
// name.
func rlLimits(t *testing.T, v interface{}) map[string]map[string]interface{} {
	t.Helper()
	arr, ok := v.([]interface{})
	if !ok {
		t.Fatalf("limits %T %v is not an array", v, v)
	}
	out := map[string]map[string]interface{}{}
	for _, e := range arr {
		f := rlFields(t, e)
		out[fmt.Sprint(f["name"])] = f
	}
	return out
}

func rlDo(t *testing.T, c *redis.Client, args ...interface{}) interface{} {
	t.Helper()
	v, err := c.Do(context.Background(), args...).Result()
	if err != nil && err != redis.Nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

// TestRateLimitThrottleCommand: CL.THROTTLE answers redis-cell's example in
// RESP2 and RESP3.
func TestRateLimitThrottleCommand(t *testing.T) {
	obs := &gatewayEvents{}
	p := startProxy(t, shared, proxy.Config{Observer: obs}, router.Options{})
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		key := fmt.Sprintf("rlcmd:user123:%d", proto)
		v := rlDo(t, c, "CL.THROTTLE", key, 15, 30, 60)
		if fmt.Sprint(v) != "[0 16 15 -1 2]" {
			t.Fatalf("RESP%d: first = %v, want [0 16 15 -1 2]", proto, v)
		}
		v = rlDo(t, c, "cl.throttle", key, 15, 30, 60, 15)
		if fmt.Sprint(v) != "[0 16 0 -1 32]" {
			t.Fatalf("RESP%d: burst of 15 = %v, want [0 16 0 -1 32]", proto, v)
		}
		v = rlDo(t, c, "CL.THROTTLE", key, 15, 30, 60, 1)
		if fmt.Sprint(v) != "[1 16 0 2 32]" {
			t.Fatalf("RESP%d: over = %v, want [1 16 0 2 32]", proto, v)
		}
		v = rlDo(t, c, "CL.THROTTLE", key, 15, 30, 60, 0)
		if fmt.Sprint(v) != "[0 16 0 -1 32]" {
			t.Fatalf("RESP%d: peek = %v, want [0 16 0 -1 32]", proto, v)
		}
		v = rlDo(t, c, "CL.THROTTLE", key+":never", 15, 30, 60, 17)
		if fmt.Sprint(v) != "[1 16 16 -1 0]" {
			t.Fatalf("RESP%d: never = %v, want [1 16 16 -1 0]", proto, v)
		}
	}
	if obs.count("ratelimit/allowed") != 6 || obs.count("ratelimit/limited") != 4 {
		t.Fatalf("events %v", obs.n)
	}
}

// TestRateLimitAcquireCommands: RL.ACQUIRE, SETTLE, RELEASE, PEEK and
// RESET in RESP2 and RESP3.
func TestRateLimitAcquireCommands(t *testing.T) {
	obs := &gatewayEvents{}
	p := startProxy(t, shared, proxy.Config{Observer: obs}, router.Options{})
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		tenant := fmt.Sprintf("rlcmd-tenant-%d", proto)
		start := time.Now()
		g := rlFields(t, rlDo(t, c, "RL.ACQUIRE", tenant, "RPM", 10, "TPM", 6000, "CONCURRENCY", 1, "TOKENS", 3000, "LEASE", 60000))
		lease, _ := g["lease"].(string)
		if g["allowed"] != int64(1) || len(lease) != 32 {
			t.Fatalf("RESP%d: acquire = %v", proto, g)
		}
		lims := rlLimits(t, g["limits"])
		if len(lims) != 3 {
			t.Fatalf("RESP%d: limits = %v", proto, lims)
		}
		if r := lims["rpm"]; r["limit"] != int64(10) || r["remaining"] != int64(9) || r["retry_after_ms"] != int64(-1) || r["reset_after_ms"] != int64(6000) {
			t.Fatalf("RESP%d: rpm = %v", proto, r)
		}
		if r := lims["tpm"]; r["remaining"] != int64(3000) || r["reset_after_ms"] != int64(30000) {
			t.Fatalf("RESP%d: tpm = %v", proto, r)
		}
		if r := lims["concurrency"]; r["remaining"] != int64(0) || r["retry_after_ms"] != int64(-1) || r["limited"] != int64(0) || r["never"] != int64(0) {
			t.Fatalf("RESP%d: concurrency = %v", proto, r)
		}
		if g["retry_after_ms"] != int64(-1) {
			t.Fatalf("RESP%d: allowed acquire retry_after_ms = %v, want -1", proto, g["retry_after_ms"])
		}
		// Refused by concurrency: lease nil, nothing charged.
		g = rlFields(t, rlDo(t, c, "RL.ACQUIRE", tenant, "RPM", 10, "TPM", 6000, "CONCURRENCY", 1, "TOKENS", 10))
		if g["allowed"] != int64(0) || g["lease"] != nil {
			t.Fatalf("RESP%d: refused acquire = %v", proto, g)
		}
		lims = rlLimits(t, g["limits"])
		if r := lims["concurrency"]; r["retry_after_ms"].(int64) <= 0 || r["retry_after_ms"].(int64) > 60000 || r["limited"] != int64(1) || r["never"] != int64(0) {
			t.Fatalf("RESP%d: concurrency = %v, want retry within the lease", proto, r)
		}
		if r := lims["rpm"]; r["remaining"] != int64(9) || r["retry_after_ms"] != int64(-1) || r["limited"] != int64(0) {
			t.Fatalf("RESP%d: rpm after refusal = %v", proto, r)
		}
		if g["retry_after_ms"] != lims["concurrency"]["retry_after_ms"] {
			t.Fatalf("RESP%d: refused acquire retry_after_ms = %v, want the concurrency limit's %v", proto, g["retry_after_ms"], lims["concurrency"]["retry_after_ms"])
		}
		// More tokens than the TPM limit can ever hold: never, no retry.
		g = rlFields(t, rlDo(t, c, "RL.ACQUIRE", tenant, "TPM", 6000, "TOKENS", 6001))
		lims = rlLimits(t, g["limits"])
		if g["allowed"] != int64(0) || g["retry_after_ms"] != int64(-1) || lims["tpm"]["never"] != int64(1) || lims["tpm"]["limited"] != int64(1) {
			t.Fatalf("RESP%d: acquire above TPM = %v %v", proto, g, lims)
		}
		// Settle refunds 2000, frees the slot; twice changes nothing.
		s := rlFields(t, rlDo(t, c, "RL.SETTLE", tenant, lease, 1000))
		if s["settled"] != int64(1) || s["delta"] != int64(-2000) || s["tokens"] != int64(1000) {
			t.Fatalf("RESP%d: settle = %v", proto, s)
		}
		s = rlFields(t, rlDo(t, c, "RL.SETTLE", tenant, lease, 1000))
		if s["settled"] != int64(0) || s["delta"] != int64(0) {
			t.Fatalf("RESP%d: second settle = %v", proto, s)
		}
		lims = rlLimits(t, rlDo(t, c, "RL.PEEK", tenant, "TPM", 6000, "CONCURRENCY", 1))
		left := lims["tpm"]["remaining"].(int64)
		if slack := int64(time.Since(start).Seconds()*100) + 1; left < 5000 || left > 5000+slack {
			t.Fatalf("RESP%d: tpm after refund = %d, want 5000", proto, left)
		}
		if lims["concurrency"]["remaining"] != int64(1) {
			t.Fatalf("RESP%d: concurrency after settle = %v", proto, lims["concurrency"])
		}
		// Release: 1 then 0.
		g = rlFields(t, rlDo(t, c, "RL.ACQUIRE", tenant, "CONCURRENCY", 1))
		lease, _ = g["lease"].(string)
		if v := rlDo(t, c, "RL.RELEASE", tenant, lease); v != int64(1) {
			t.Fatalf("RESP%d: release = %v", proto, v)
		}
		if v := rlDo(t, c, "RL.RELEASE", tenant, lease); v != int64(0) {
			t.Fatalf("RESP%d: second release = %v", proto, v)
		}
		// Reset.
		if v := rlDo(t, c, "RL.RESET", tenant); v != "OK" {
			t.Fatalf("RESP%d: reset = %v", proto, v)
		}
		lims = rlLimits(t, rlDo(t, c, "RL.PEEK", tenant, "RPM", 10))
		if lims["rpm"]["remaining"] != int64(10) {
			t.Fatalf("RESP%d: rpm after reset = %v", proto, lims["rpm"])
		}
	}
	for _, ev := range []string{"allowed", "limited", "settled", "settle_repeated", "released", "release_repeated", "peeked", "reset"} {
		if obs.count("ratelimit/"+ev) == 0 {
			t.Errorf("no %q event: %v", ev, obs.n)
		}
	}
}

// TestRateLimitTwoProxies: two proxies enforce one limit together: 200
// concurrent acquires spread over both against a concurrency of 50 admit
// exactly 50, and a lease from one is released through the other.
func TestRateLimitTwoProxies(t *testing.T) {
	a := startProxy(t, shared, proxy.Config{}, router.Options{})
	b := startProxy(t, shared, proxy.Config{}, router.Options{})
	clients := []*redis.Client{a.client(t, 2), b.client(t, 3)}
	tenant := "rl-two-proxies-" + strconv.FormatInt(time.Now().UnixNano(), 36) // fresh per run (-count)
	var (
		mu     sync.Mutex
		leases []string
		wg     sync.WaitGroup
		errs   = make(chan error, 200)
	)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := clients[i%2].Do(context.Background(), "RL.ACQUIRE", tenant, "CONCURRENCY", 50, "RPM", 1000).Result()
			if err != nil {
				errs <- err
				return
			}
			var lease interface{}
			switch x := v.(type) {
			case map[interface{}]interface{}:
				lease = x["lease"]
			case []interface{}:
				lease = x[3]
			}
			if s, ok := lease.(string); ok {
				mu.Lock()
				leases = append(leases, s)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(leases) != 50 {
		t.Fatalf("%d acquires admitted through two proxies, want exactly 50", len(leases))
	}
	// Full: refused through either; released through b, admitted through a.
	for _, c := range clients {
		g := rlFields(t, rlDo(t, c, "RL.ACQUIRE", tenant, "CONCURRENCY", 50))
		if g["allowed"] != int64(0) {
			t.Fatalf("acquire when full = %v", g)
		}
	}
	if v := rlDo(t, clients[1], "RL.RELEASE", tenant, leases[0]); v != int64(1) {
		t.Fatalf("release through the other proxy = %v", v)
	}
	g := rlFields(t, rlDo(t, clients[0], "RL.ACQUIRE", tenant, "CONCURRENCY", 50))
	if g["allowed"] != int64(1) {
		t.Fatalf("acquire after release = %v", g)
	}
	// CL.THROTTLE through both shares one bucket.
	for i := range 3 {
		v := rlDo(t, clients[i%2], "CL.THROTTLE", tenant+"-bucket", 2, 1, 60)
		if want := fmt.Sprintf("[0 3 %d -1 %d]", 2-i, 60*(i+1)); fmt.Sprint(v) != want {
			t.Fatalf("throttle %d = %v, want %s", i, v, want)
		}
	}
	if v := rlDo(t, clients[1], "CL.THROTTLE", tenant+"-bucket", 2, 1, 60); fmt.Sprint(v) != "[1 3 0 60 180]" {
		t.Fatalf("fourth throttle = %v, want [1 3 0 60 180]", v)
	}
}

func TestRateLimitCommandErrors(t *testing.T) {
	obs := &gatewayEvents{}
	p := startProxy(t, shared, proxy.Config{Observer: obs}, router.Options{})
	cc := testcluster.NewClusterClient(t, shared)
	ctx := context.Background()
	if err := cc.HSet(ctx, "rl:{rl-cmd-wt}:tpm", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := cc.SAdd(ctx, "rl:{rl-cmd-wt-throttle}", "x").Err(); err != nil {
		t.Fatal(err)
	}
	lease := strings.Repeat("0", 32)
	long := strings.Repeat("k", 513)
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		for _, tc := range []struct {
			args []interface{}
			want string
		}{
			{[]interface{}{"CL.THROTTLE", "k", 1, 1}, "ERR wrong number of arguments"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 1, 1, 1, 1}, "ERR wrong number of arguments"},
			{[]interface{}{"CL.THROTTLE", "k", "a", 1, 1}, "ERR max_burst is not an integer"},
			{[]interface{}{"CL.THROTTLE", "k", 1, "1.5", 1}, "ERR count per period is not an integer"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 1, "x"}, "ERR period is not an integer"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 1, 1, "q"}, "ERR quantity is not an integer"},
			{[]interface{}{"CL.THROTTLE", "k", "99999999999999999999", 1, 1}, "out of range"},
			{[]interface{}{"CL.THROTTLE", "k", -1, 1, 1}, "max_burst -1 is negative"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 0, 1}, "count per period 0 must be positive"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 1, 0}, "period 0 must be a positive"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 1, -5}, "period -5 must be a positive"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 1, 1, -1}, "quantity -1 is negative"},
			{[]interface{}{"CL.THROTTLE", "k", 1 << 40, 1, 1 << 20}, "overflow"},
			{[]interface{}{"CL.THROTTLE", "k", 1, 10_000_000, 1}, "rate too high"},
			{[]interface{}{"CL.THROTTLE", "", 1, 1, 1}, "empty key"},
			{[]interface{}{"CL.THROTTLE", long, 1, 1, 1}, "key is 513 bytes, above the maximum of 512"},
			{[]interface{}{"CL.THROTTLE", "rl-cmd-wt-throttle", 1, 1, 1}, "WRONGTYPE"},
			{[]interface{}{"RL.ACQUIRE"}, "ERR wrong number of arguments"},
			{[]interface{}{"RL.ACQUIRE", "t"}, "no limit given"},
			{[]interface{}{"RL.ACQUIRE", "t", "RPM"}, "ERR RPM needs a value"},
			{[]interface{}{"RL.ACQUIRE", "t", "FOO", 1}, "ERR unknown option 'FOO' for 'rl.acquire'"},
			{[]interface{}{"RL.ACQUIRE", "t", "RPM", "x"}, "ERR RPM is not an integer"},
			{[]interface{}{"RL.ACQUIRE", "t", "RPM", 0}, "ERR RPM must be a positive integer"},
			{[]interface{}{"RL.ACQUIRE", "t", "TPM", -1}, "ERR TPM must be a positive integer"},
			{[]interface{}{"RL.ACQUIRE", "t", "CONCURRENCY", 0}, "ERR CONCURRENCY must be a positive integer"},
			{[]interface{}{"RL.ACQUIRE", "t", "RPM", 60_000_001}, "above the maximum"},
			{[]interface{}{"RL.ACQUIRE", "t", "RPM", 1, "TOKENS", -1}, "TOKENS -1"},
			{[]interface{}{"RL.ACQUIRE", "t", "RPM", 1, "LEASE", 0}, "ERR LEASE must be between 1 and"},
			{[]interface{}{"RL.ACQUIRE", "", "RPM", 1}, "empty tenant"},
			{[]interface{}{"RL.ACQUIRE", long, "RPM", 1}, "tenant is 513 bytes"},
			{[]interface{}{"RL.ACQUIRE", "rl-cmd-wt", "TPM", 10}, "WRONGTYPE"},
			{[]interface{}{"RL.SETTLE", "t", lease}, "ERR wrong number of arguments"},
			{[]interface{}{"RL.SETTLE", "t", "bad", 1}, "lease id \"bad\" is not 32 hex digits"},
			{[]interface{}{"RL.SETTLE", "t", lease, "x"}, "ERR actual_tokens is not an integer"},
			{[]interface{}{"RL.SETTLE", "t", lease, -1}, "actual tokens -1"},
			{[]interface{}{"RL.SETTLE", "t", lease, 1}, "unknown or expired lease"},
			{[]interface{}{"RL.RELEASE", "t", "bad"}, "not 32 hex digits"},
			{[]interface{}{"RL.RELEASE", "t", lease}, "unknown or expired lease"},
			{[]interface{}{"RL.PEEK", "t", "TOKENS", 1}, "ERR unknown option 'TOKENS' for 'rl.peek'"},
			{[]interface{}{"RL.PEEK", "t"}, "no limit given"},
			{[]interface{}{"RL.RESET", ""}, "empty tenant"},
			{[]interface{}{"RL.RESET", "a", "b"}, "ERR wrong number of arguments"},
		} {
			err := c.Do(ctx, tc.args...).Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RESP%d %v: err = %v, want %q", proto, tc.args, err, tc.want)
			}
		}
		// The connection is still usable.
		if v := rlDo(t, c, "CL.THROTTLE", fmt.Sprintf("rl-cmd-after-errors-%d", proto), 1, 1, 1); fmt.Sprint(v) != "[0 2 1 -1 1]" {
			t.Fatalf("RESP%d: after errors = %v", proto, v)
		}
	}
	if obs.count("ratelimit/error") == 0 {
		t.Fatalf("no error events: %v", obs.n)
	}
}
