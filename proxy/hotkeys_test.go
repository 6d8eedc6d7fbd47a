package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// hotkeysReport runs HOTKEYS GET and returns its one map, keyed by field
// name, for either protocol (nil when there is no session).
func hotkeysReport(t *testing.T, c *redis.Client) map[string]any {
	t.Helper()
	v, err := c.Do(context.Background(), "HOTKEYS", "GET").Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		t.Fatalf("HOTKEYS GET: %v", err)
	}
	outer, ok := v.([]any)
	if !ok || len(outer) != 1 {
		t.Fatalf("HOTKEYS GET = %#v, want an array of one map", v)
	}
	out := map[string]any{}
	switch m := outer[0].(type) {
	case map[any]any: // RESP3
		for k, v := range m {
			out[k.(string)] = v
		}
	case []any: // RESP2: name, value, ...
		for i := 0; i+1 < len(m); i += 2 {
			out[m[i].(string)] = m[i+1]
		}
	default:
		t.Fatalf("HOTKEYS GET element = %#v", outer[0])
	}
	return out
}

// ranking reads a by-cpu-time-us or by-net-bytes list.
func ranking(t *testing.T, v any) (keys []string, vals map[string]int64) {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("ranking = %#v", v)
	}
	vals = map[string]int64{}
	for i := 0; i+1 < len(list); i += 2 {
		k := list[i].(string)
		keys = append(keys, k)
		vals[k] = list[i+1].(int64)
	}
	return keys, vals
}

// getBytes is what one GET of key costs in NET: its request and a RESP2
// bulk reply of value.
func getBytes(key, value string) int64 {
	req := resp.AppendCommandStrings(nil, "GET", key)
	rep := resp.AppendBulkString(nil, value)
	return int64(len(req) + len(rep))
}

// TestHotkeys: HOTKEYS answered by the proxy for the whole cluster finds
// the keys that take the most node time and bytes on every master,
// counts bytes exactly, honours SLOTS, SAMPLE and DURATION, and answers a
// node's errors and session rules.
func TestHotkeys(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	c := p.client(t, 2)
	c3 := p.client(t, 3)

	hot := keysOnEveryMaster(t, p, "hotkeys:hot", 3)
	cold := keysOnEveryMaster(t, p, "hotkeys:cold", 200)
	big := strings.Repeat("v", 1000)
	for _, k := range append(append([]string{}, hot...), cold...) {
		if err := c.Set(ctx, k, big[:10], 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, k, big, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { c.Del(ctx, append(append([]string{}, hot...), cold...)...) })

	if r := hotkeysReport(t, c); r != nil {
		t.Fatalf("HOTKEYS GET before START = %v, want nil", r)
	}
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"START"}, "ERR METRICS parameter is required"},
		{[]any{"START", "METRICS", "3", "CPU"}, "ERR METRICS count must be > 0 and <= 2"},
		{[]any{"START", "METRICS", "2", "CPU", "CPU"}, "ERR METRICS CPU defined more than once!"},
		{[]any{"START", "METRICS", "2", "CPU"}, "ERR METRICS count does not match number of metric types provided"},
		{[]any{"START", "METRICS", "1", "DISK"}, "ERR METRICS no valid metrics passed. Supported: CPU|NET"},
		{[]any{"START", "METRICS", "1", "CPU", "NET"}, "ERR syntax error"},
		{[]any{"START", "METRICS", "1", "NET", "COUNT", "65"}, "ERR COUNT must be between 1 and 64"},
		{[]any{"START", "METRICS", "1", "NET", "DURATION", "0"}, "ERR DURATION must be between 1 and 1000000"},
		{[]any{"START", "METRICS", "1", "NET", "SAMPLE", "x"}, "ERR SAMPLE ratio must be positive"},
		{[]any{"START", "METRICS", "1", "NET", "SLOTS", "2", "1"}, "ERR not enough slot numbers provided"},
		{[]any{"START", "METRICS", "1", "NET", "SLOTS", "2", "5", "5"}, "ERR duplicate slot number"},
		{[]any{"START", "METRICS", "1", "NET", "SLOTS", "1", "16384"}, "ERR Invalid or out of range slot"},
		{[]any{"STOP", "now"}, "ERR wrong number of arguments for 'hotkeys|stop' command"},
		{[]any{"NOPE"}, "ERR unknown subcommand 'NOPE'. Try HOTKEYS HELP."},
	} {
		err := c.Do(ctx, append([]any{"HOTKEYS"}, tc.args...)...).Err()
		if err == nil || err.Error() != tc.want {
			t.Errorf("HOTKEYS %v = %v, want %q", tc.args, err, tc.want)
		}
	}
	if err := c.Do(ctx, "HOTKEYS", "STOP").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("STOP without a session = %v, want nil", err)
	}

	// Both metrics: three hot keys (one per master) read 300 times each
	// first, so that the sketch keeps them from their first access and
	// their byte counts are exact; then 200 cold keys once each.
	mustDo(t, c, "HOTKEYS", "START", "METRICS", "2", "CPU", "NET", "COUNT", "3")
	if err := c.Do(ctx, "HOTKEYS", "START", "METRICS", "1", "NET").Err(); err == nil || err.Error() != "ERR hotkey tracking session already in progress" {
		t.Errorf("a second START = %v", err)
	}
	if err := c.Do(ctx, "HOTKEYS", "RESET").Err(); err == nil || err.Error() != "ERR hotkey tracking session in progress, stop tracking first" {
		t.Errorf("RESET while tracking = %v", err)
	}
	const reads = 300
	pipe := c.Pipeline()
	for range reads {
		for _, k := range hot {
			pipe.Get(ctx, k)
		}
	}
	for _, k := range cold {
		pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	r := hotkeysReport(t, c)
	if r["tracking-active"] != int64(1) || r["sample-ratio"] != int64(1) {
		t.Errorf("report %v: want tracking-active 1, sample-ratio 1", r)
	}
	if got, ok := r["selected-slots"].([]any); !ok || len(got) != 1 || len(got[0].([]any)) != 2 || got[0].([]any)[1] != int64(16383) {
		t.Errorf("selected-slots = %#v, want [[0 16383]]", r["selected-slots"])
	}
	netKeys, net := ranking(t, r["by-net-bytes"])
	cpuKeys, cpu := ranking(t, r["by-cpu-time-us"])
	per := getBytes(hot[0], big)
	for _, k := range hot {
		if net[k] != reads*per {
			t.Errorf("by-net-bytes %s = %d, want %d (%d GETs of %d bytes)", k, net[k], reads*per, reads, per)
		}
		if cpu[k] <= 0 {
			t.Errorf("by-cpu-time-us %s = %d, want > 0", k, cpu[k])
		}
	}
	if len(netKeys) != 3 || len(cpuKeys) != 3 {
		t.Errorf("COUNT 3: by-net-bytes %v, by-cpu-time-us %v", netKeys, cpuKeys)
	}
	for _, k := range cpuKeys {
		if !strings.HasPrefix(k, "hotkeys:hot:") {
			t.Errorf("by-cpu-time-us ranks %s among %v", k, cpuKeys)
		}
	}
	wantAll := int64(3*reads) * per
	for _, k := range cold {
		wantAll += getBytes(k, big)
	}
	if r["net-bytes-all-commands-all-slots"] != wantAll || r["total-net-bytes"] != wantAll {
		t.Errorf("net bytes: all %v, total %v, want %d", r["net-bytes-all-commands-all-slots"], r["total-net-bytes"], wantAll)
	}
	if us := r["all-commands-all-slots-us"].(int64); us < cpu[hot[0]]+cpu[hot[1]]+cpu[hot[2]] {
		t.Errorf("all-commands-all-slots-us %d below the hot keys' sum", us)
	}
	for _, f := range []string{"total-cpu-time-user-ms", "total-cpu-time-sys-ms", "collection-start-time-unix-ms", "collection-duration-ms"} {
		if _, ok := r[f].(int64); !ok {
			t.Errorf("field %s = %#v", f, r[f])
		}
	}
	for _, f := range []string{"all-commands-selected-slots-us", "net-bytes-sampled-commands-selected-slots"} {
		if _, ok := r[f]; ok {
			t.Errorf("field %s without SLOTS", f)
		}
	}
	// A split MGET shares its bytes among its keys.
	before := net[hot[0]]
	if err := c.MGet(ctx, hot...).Err(); err != nil {
		t.Fatal(err)
	}
	mget := int64(len(resp.AppendCommandStrings(nil, append([]string{"MGET"}, hot...)...)) +
		len(resp.AppendArrayHeader(nil, 3)) + 3*len(resp.AppendBulkString(nil, big)))
	if _, net = ranking(t, hotkeysReport(t, c)["by-net-bytes"]); net[hot[0]] != before+mget/3 {
		t.Errorf("after a cross-slot MGET: %d, want %d + %d/3", net[hot[0]], before, mget)
	}

	mustDo(t, c, "HOTKEYS", "STOP")
	r1 := hotkeysReport(t, c3) // RESP3: a map
	c.Get(ctx, hot[0])         // not counted: stopped
	time.Sleep(20 * time.Millisecond)
	r2 := hotkeysReport(t, c)
	if r1["tracking-active"] != int64(0) || r1["collection-duration-ms"] != r2["collection-duration-ms"] ||
		r1["net-bytes-all-commands-all-slots"] != r2["net-bytes-all-commands-all-slots"] {
		t.Errorf("after STOP: %v then %v, want inactive and unchanged", r1, r2)
	}
	if err := c.Do(ctx, "HOTKEYS", "STOP").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("STOP when stopped = %v, want nil", err)
	}
	mustDo(t, c, "HOTKEYS", "RESET")
	if r := hotkeysReport(t, c); r != nil {
		t.Errorf("HOTKEYS GET after RESET = %v", r)
	}

	// SLOTS and SAMPLE: only hot[0]'s slot (and the next) is selected;
	// about one command in four is sampled.
	s0 := router.Slot([]byte(hot[0]))
	s1 := (s0 + 1) % router.SlotCount
	mustDo(t, c, "HOTKEYS", "START", "METRICS", "1", "NET", "SAMPLE", "4", "SLOTS", "2", s1, s0)
	const n = 2000
	pipe = c.Pipeline()
	for range n {
		pipe.Get(ctx, hot[0])
		pipe.Get(ctx, hot[1])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	r = hotkeysReport(t, c)
	lo, hi := min(s0, s1), max(s0, s1)
	if got := r["selected-slots"].([]any); len(got) != 1 || got[0].([]any)[0] != int64(lo) || got[0].([]any)[1] != int64(hi) {
		t.Errorf("selected-slots = %#v, want [[%d %d]]", r["selected-slots"], lo, hi)
	}
	if r["net-bytes-all-commands-selected-slots"] != n*per || r["net-bytes-all-commands-all-slots"] != 2*n*per {
		t.Errorf("selected %v, all %v, want %d and %d", r["net-bytes-all-commands-selected-slots"], r["net-bytes-all-commands-all-slots"], n*per, 2*n*per)
	}
	sampled := r["net-bytes-sampled-commands-selected-slots"].(int64)
	if sampled != r["total-net-bytes"] || sampled < n*per/10 || sampled > n*per*45/100 {
		t.Errorf("sampled %d (total-net-bytes %v), want about a quarter of %d", sampled, r["total-net-bytes"], n*per)
	}
	if keys, _ := ranking(t, r["by-net-bytes"]); len(keys) != 1 || keys[0] != hot[0] {
		t.Errorf("by-net-bytes = %v, want only %s (the other key's slot is not selected)", keys, hot[0])
	}
	if _, ok := r["by-cpu-time-us"]; ok {
		t.Error("by-cpu-time-us reported without CPU")
	}
	mustDo(t, c, "HOTKEYS", "STOP")
	mustDo(t, c, "HOTKEYS", "RESET")

	// DURATION ends the session by itself: a new START needs no STOP.
	mustDo(t, c, "HOTKEYS", "START", "METRICS", "1", "CPU", "DURATION", "1")
	time.Sleep(1100 * time.Millisecond)
	c.Get(ctx, hot[0])
	r = hotkeysReport(t, c)
	if r["tracking-active"] != int64(0) || r["collection-duration-ms"] != int64(1000) || r["all-commands-all-slots-us"] != int64(0) {
		t.Errorf("after DURATION 1: %v", r)
	}
	mustDo(t, c, "HOTKEYS", "START", "METRICS", "1", "CPU")
	mustDo(t, c, "HOTKEYS", "STOP")
	mustDo(t, c, "HOTKEYS", "RESET")

	// It shows other clients' keys: a restricted default user may not.
	rp := startProxy(t, shared, proxy.Config{RestrictDefaultUser: true}, router.Options{})
	rc := rp.client(t, 2)
	for _, sub := range []string{"START", "STOP", "GET", "RESET"} {
		want := "NOPERM this user has no permissions to run the 'hotkeys|" + strings.ToLower(sub) + "' command"
		if err := rc.Do(ctx, "HOTKEYS", sub).Err(); err == nil || err.Error() != want {
			t.Errorf("restricted HOTKEYS %s = %v, want %q", sub, err, want)
		}
	}
}

func mustDo(t *testing.T, c *redis.Client, args ...any) {
	t.Helper()
	if err := c.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}
