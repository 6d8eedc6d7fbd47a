package proxy_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
)

// TestSlowlog: a command slower than the threshold is logged by the proxy
// in Redis's SLOWLOG format (parsed by go-redis), with the stage times; fast
// commands are not; LEN, RESET, the length limit and argument truncation
// behave as in Redis.
func TestSlowlog(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{SlowlogThreshold: 100 * time.Millisecond}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	if err := c.Do(ctx, "CLIENT", "SETNAME", "slowpoke").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	const key = "slowlog:k"
	script := busyScript(200)
	for i := 0; i < 5; i++ {
		c.Set(ctx, key, i, 0)
	}
	start := time.Now()
	if err := c.Eval(ctx, script, []string{key}).Err(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if n, err := c.Do(ctx, "SLOWLOG", "LEN").Int(); err != nil || n != 1 {
		t.Fatalf("SLOWLOG LEN = %v, %v; want 1 (only the script)", n, err)
	}
	logs, err := c.SlowLogGet(ctx, 10).Result()
	if err != nil || len(logs) != 1 {
		t.Fatalf("SLOWLOG GET (go-redis) = %v, %v", logs, err)
	}
	e := logs[0]
	if len(e.Args) != 4 || e.Args[0] != "eval" || !strings.HasPrefix(e.Args[1], script[:128]) || e.Args[2] != "1" || e.Args[3] != key {
		t.Errorf("args %q", e.Args)
	}
	if e.Duration < 190*time.Millisecond || e.Duration > took {
		t.Errorf("duration %v, want between the script's 200ms and the client's %v", e.Duration, took)
	}
	if e.ClientName != "slowpoke" || !strings.HasPrefix(e.ClientAddr, "127.0.0.1:") {
		t.Errorf("client %q %q", e.ClientAddr, e.ClientName)
	}
	if time.Since(e.Time) > time.Minute {
		t.Errorf("time %v", e.Time)
	}

	// The raw entry: argument count and the stage times.
	raw, err := c.Do(ctx, "SLOWLOG", "GET").Slice()
	if err != nil || len(raw) != 1 {
		t.Fatalf("SLOWLOG GET = %v, %v", raw, err)
	}
	entry := raw[0].([]any)
	if len(entry) != 8 || entry[6].(int64) != 4 {
		t.Fatalf("entry %v: want 8 fields, argc 4", entry)
	}
	stages := entry[7].([]any)
	if len(stages) != 6 || stages[0] != "queued" || stages[2] != "node" || stages[4] != "reply" {
		t.Fatalf("stages %v", stages)
	}
	queued, node, reply := stages[1].(int64), stages[3].(int64), stages[5].(int64)
	total := entry[2].(int64)
	if node < 190000 || queued < 0 || reply < 0 || queued+node+reply > total+2 || queued+node+reply < total-2 {
		t.Errorf("stages queued=%dµs node=%dµs reply=%dµs, total %dµs: want the node's time to dominate and the sum to be the total", queued, node, reply, total)
	}

	if err := c.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Do(ctx, "SLOWLOG", "LEN").Int(); n != 0 {
		t.Fatalf("LEN after RESET = %d", n)
	}

	// Log everything, keep three entries: the newest first.
	p.Server.Reload(proxy.Settings{SlowlogThreshold: time.Nanosecond, SlowlogMaxLen: 3})
	for i := 0; i < 5; i++ {
		c.Echo(ctx, "e"+strconv.Itoa(i))
	}
	logs, err = c.SlowLogGet(ctx, -1).Result()
	if err != nil || len(logs) != 3 || logs[0].Args[1] != "e4" || logs[2].Args[1] != "e2" || logs[0].ID != logs[2].ID+2 {
		t.Fatalf("SLOWLOG GET -1 with max 3 = %+v, %v", logs, err)
	}
	// Truncation: at most 32 arguments, 128 bytes each; HELLO is redacted.
	args := []any{"RPUSH", "slowlog:list", strings.Repeat("x", 200)}
	for i := 0; i < 40; i++ {
		args = append(args, i)
	}
	c.Do(ctx, args...)
	c.Do(ctx, "HELLO", "2")
	logs, _ = c.SlowLogGet(ctx, 2).Result()
	if len(logs) != 2 || len(logs[1].Args) != 32 || logs[1].Args[31] != "... (12 more arguments)" ||
		logs[1].Args[2] != strings.Repeat("x", 128)+"... (72 more bytes)" {
		t.Errorf("truncated entry %q", logs[1].Args)
	}
	if !strings.EqualFold(strings.Join(logs[0].Args, " "), "hello (redacted)") {
		t.Errorf("HELLO entry %q", logs[0].Args)
	}
	// Off.
	p.Server.Reload(proxy.Settings{SlowlogThreshold: -1})
	c.Do(ctx, "SLOWLOG", "RESET")
	c.Eval(ctx, busyScript(20), []string{key})
	if n, _ := c.Do(ctx, "SLOWLOG", "LEN").Int(); n != 0 {
		t.Errorf("LEN with the slow log off = %d", n)
	}
	if err := c.Do(ctx, "SLOWLOG", "GET", "x").Err(); err == nil || !strings.Contains(err.Error(), "count") {
		t.Errorf("SLOWLOG GET x: %v", err)
	}
}
