package proxy_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// TestScan walks 10,000 keys over every master: each returned exactly once,
// with MATCH, COUNT and TYPE honoured.
func TestScan(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	const n = 10000
	pipe := c.Pipeline()
	for i := 0; i < n; i++ {
		pipe.Set(ctx, "scan:"+strconv.Itoa(i), i, 0)
	}
	pipe.HSet(ctx, "scan:hash", "f", "v")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	var cursor uint64
	calls := 0
	for {
		keys, next, err := c.Scan(ctx, cursor, "scan:*", 500).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k]++
		}
		calls++
		if cursor = next; cursor == 0 {
			break
		}
		if calls > 10*n {
			t.Fatal("SCAN does not terminate")
		}
	}
	if len(seen) != n+1 {
		t.Fatalf("SCAN returned %d distinct keys, want %d", len(seen), n+1)
	}
	for k, times := range seen {
		if times != 1 {
			t.Fatalf("SCAN returned %s %d times", k, times)
		}
	}
	// TYPE filters on every master.
	var all []string
	var cur uint64
	for {
		ks, next, err := c.ScanType(ctx, cur, "scan:*", 100000, "hash").Result()
		cur = next
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ks...)
		if cur == 0 {
			break
		}
	}
	if len(all) != 1 || all[0] != "scan:hash" {
		t.Fatalf("SCAN TYPE hash = %v", all)
	}
	if err := c.Do(ctx, "SCAN", "notanumber").Err(); err == nil || err == redis.Nil {
		t.Fatal("invalid cursor accepted")
	}
}
