package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/cache"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

func cacheCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// cacheKey builds a key through CACHE.KEY.
func cacheKey(t *testing.T, c *redis.Client, ns, body string) string {
	t.Helper()
	k, err := c.Do(cacheCtx(t), "CACHE.KEY", ns, "/v1/chat/completions", "gpt-4o", "tenant-1", body).Text()
	if err != nil {
		t.Fatalf("CACHE.KEY: %v", err)
	}
	return k
}

// cacheGet runs CACHE.GET and returns status and payload.
func cacheGet(t *testing.T, c *redis.Client, args ...interface{}) (string, interface{}) {
	t.Helper()
	v, err := c.Do(cacheCtx(t), append([]interface{}{"CACHE.GET"}, args...)...).Slice()
	if err != nil || len(v) != 2 {
		t.Fatalf("CACHE.GET %v: %v, %v", args, v, err)
	}
	s, _ := v[0].(string)
	return s, v[1]
}

func TestCacheCommandsKey(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		ns := fmt.Sprintf("pkey%d", proto)
		k := cacheKey(t, c, ns, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0}`)
		want, err := cache.Key(ns, "/v1/chat/completions", "gpt-4o", "tenant-1",
			[]byte(`{"messages":[{"content":"hi","role":"user"}],"stream":true,"temperature":0,"model":"gpt-4o"}`))
		if err != nil || k != want {
			t.Errorf("RESP%d: CACHE.KEY %q, want %q (%v)", proto, k, want, err)
		}
		if k2 := cacheKey(t, c, ns, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":1}`); k2 == k {
			t.Errorf("RESP%d: another temperature gives the same key", proto)
		}
	}
}

func TestCacheCommandsSingleFlight(t *testing.T) {
	obs := &gatewayEvents{}
	p := startProxy(t, shared, proxy.Config{Observer: obs}, router.Options{})
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		ctx := cacheCtx(t)
		key := cacheKey(t, c, "psf", fmt.Sprintf(`{"proto":%d}`, proto))
		const n = 50
		statuses := make([]string, n)
		payloads := make([]interface{}, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := c.Do(ctx, "CACHE.GET", key).Slice()
				if err != nil || len(v) != 2 {
					t.Errorf("CACHE.GET: %v, %v", v, err)
					return
				}
				statuses[i], _ = v[0].(string)
				payloads[i] = v[1]
			}()
		}
		wg.Wait()
		var token string
		waits := 0
		for i, s := range statuses {
			switch s {
			case "MISS":
				if token != "" {
					t.Fatalf("RESP%d: two fill tokens", proto)
				}
				token, _ = payloads[i].(string)
			case "WAIT":
				waits++
				if payloads[i] != nil {
					t.Errorf("RESP%d: WAIT payload %v, want nil", proto, payloads[i])
				}
			default:
				t.Errorf("RESP%d: status %q", proto, s)
			}
		}
		if len(token) != 32 || waits != n-1 {
			t.Fatalf("RESP%d: token %q and %d waits, want one token and %d waits", proto, token, waits, n-1)
		}
		if err := c.Do(ctx, "CACHE.SET", key, token, "the answer", "TTL", 60).Err(); err != nil {
			t.Fatal(err)
		}
		if s, v := cacheGet(t, c, key); s != "HIT" || v != "the answer" {
			t.Errorf("RESP%d: after SET: %s %v", proto, s, v)
		}
	}
	if obs.count("cache/miss") != 2 || obs.count("cache/wait") != 98 || obs.count("cache/hit") != 2 || obs.count("cache/fill") != 2 {
		t.Errorf("events %v", obs.n)
	}
}

func TestCacheCommandsWaiters(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{Cache: proxy.CacheConfig{FillLease: 2 * time.Second}}, router.Options{})
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		ctx := cacheCtx(t)
		// A request of its own per run, so that -count reruns find no entry.
		key := cacheKey(t, c, "pwait", fmt.Sprintf(`{"proto":%d,"run":%d}`, proto, time.Now().UnixNano()))
		s, tok := cacheGet(t, c, key)
		if s != "MISS" {
			t.Fatalf("first GET: %s", s)
		}
		const n = 5
		got := make([][]interface{}, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], _ = c.Do(ctx, "CACHE.GET", key, "WAIT", 20000).Slice()
			}()
		}
		time.Sleep(300 * time.Millisecond)
		if err := c.Do(ctx, "CACHE.SET", key, tok, "filled").Err(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i, v := range got {
			if len(v) != 2 || v[0] != "HIT" || v[1] != "filled" {
				t.Errorf("RESP%d waiter %d: %v", proto, i, v)
			}
		}
		// The lease ends unfilled: a waiter gets a fresh token.
		key2 := cacheKey(t, c, "pwait", fmt.Sprintf(`{"proto":%d,"n":2}`, proto))
		if s, _ := cacheGet(t, c, key2); s != "MISS" {
			t.Fatalf("first GET: %s", s)
		}
		begin := time.Now()
		s, tok2 := cacheGet(t, c, key2, "WAIT", 20000)
		if s != "MISS" || tok2 == nil || time.Since(begin) > 15*time.Second {
			t.Errorf("RESP%d: after the lease: %s %v after %v", proto, s, tok2, time.Since(begin))
		}
		// A short WAIT that passes answers WAIT.
		if s, v := cacheGet(t, c, key2, "wait", 100); s != "WAIT" || v != nil {
			t.Errorf("RESP%d: short wait: %s %v", proto, s, v)
		}
	}
	// A WAIT beyond the gateway timeout ends before it, with WAIT.
	p2 := startProxy(t, shared, proxy.Config{GatewayTimeout: time.Second}, router.Options{})
	c := p2.client(t, 3)
	key := cacheKey(t, c, "pwait", `{"timeout":1}`)
	cacheGet(t, c, key)
	begin := time.Now()
	if s, _ := cacheGet(t, c, key, "WAIT", 60000); s != "WAIT" || time.Since(begin) > 10*time.Second {
		t.Errorf("wait past the gateway timeout: %s after %v", s, time.Since(begin))
	}
}

func TestCacheCommandsStream(t *testing.T) {
	obs := &gatewayEvents{}
	p := startProxy(t, shared, proxy.Config{Observer: obs}, router.Options{})
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		ctx := cacheCtx(t)
		key := cacheKey(t, c, "pstream", fmt.Sprintf(`{"proto":%d}`, proto))
		_, tok := cacheGet(t, c, key)
		chunks := []string{"data: {\"delta\":\"Hel\"}\n\n", "data: {\"delta\":\"lo\"}\n\n", "\x00\r\n", "data: [DONE]\n\n"}
		for i, ch := range chunks {
			if n, err := c.Do(ctx, "CACHE.APPEND", key, tok, ch).Int(); err != nil || n != i+1 {
				t.Fatalf("APPEND: %d, %v", n, err)
			}
			if s, v := cacheGet(t, c, key); s != "WAIT" || v != nil {
				t.Fatalf("RESP%d: GET during the stream: %s %v", proto, s, v)
			}
		}
		if n, err := c.Do(ctx, "CACHE.COMMIT", key, tok, "TTL", 120).Int(); err != nil || n != len(chunks) {
			t.Fatalf("COMMIT: %d, %v", n, err)
		}
		s, v := cacheGet(t, c, key)
		arr, _ := v.([]interface{})
		if s != "HIT" || len(arr) != len(chunks) {
			t.Fatalf("RESP%d: GET: %s %v", proto, s, v)
		}
		for i := range chunks {
			if arr[i] != chunks[i] {
				t.Errorf("RESP%d chunk %d: %q, want %q", proto, i, arr[i], chunks[i])
			}
		}
		// Aborted midway: never visible; the next GET fills anew.
		key2 := cacheKey(t, c, "pstream", fmt.Sprintf(`{"proto":%d,"n":2}`, proto))
		_, tok2 := cacheGet(t, c, key2)
		if err := c.Do(ctx, "CACHE.APPEND", key2, tok2, "half").Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Do(ctx, "CACHE.ABORT", key2, tok2).Err(); err != nil {
			t.Fatal(err)
		}
		if s, v := cacheGet(t, c, key2); s != "MISS" || v == tok2 {
			t.Errorf("RESP%d: after abort: %s %v", proto, s, v)
		}
		if n, err := c.Do(ctx, "CACHE.DEL", key).Int(); err != nil || n != 1 {
			t.Errorf("DEL: %d, %v", n, err)
		}
		if n, err := c.Do(ctx, "CACHE.DEL", key).Int(); err != nil || n != 0 {
			t.Errorf("second DEL: %d, %v", n, err)
		}
		if s, _ := cacheGet(t, c, key); s != "MISS" {
			t.Errorf("after DEL: %s", s)
		}
	}
	if obs.count("cache/append") != 10 || obs.count("cache/abort") != 2 || obs.count("cache/del") != 4 {
		t.Errorf("events %v", obs.n)
	}
}

func TestCacheCommandsStats(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	c2, c3 := p.client(t, 2), p.client(t, 3)
	ctx := cacheCtx(t)
	ns := fmt.Sprintf("pstats%d", time.Now().UnixNano())
	key := cacheKey(t, c2, ns, `{}`)
	_, tok := cacheGet(t, c2, key)
	cacheGet(t, c2, key)
	if err := c2.Do(ctx, "CACHE.SET", key, tok, "v").Err(); err != nil {
		t.Fatal(err)
	}
	cacheGet(t, c2, key)
	flat, err := c2.Do(ctx, "CACHE.STATS", ns).Slice()
	want := []interface{}{"hit", int64(1), "miss", int64(1), "wait", int64(1), "fill", int64(1), "abort", int64(0)}
	if err != nil || fmt.Sprint(flat) != fmt.Sprint(want) {
		t.Errorf("RESP2 STATS: %v, %v; want %v", flat, err, want)
	}
	m, err := c3.Do(ctx, "CACHE.STATS", ns).Result()
	mm, _ := m.(map[interface{}]interface{})
	if err != nil || len(mm) != 5 || mm["hit"] != int64(1) || mm["miss"] != int64(1) || mm["wait"] != int64(1) ||
		mm["fill"] != int64(1) || mm["abort"] != int64(0) {
		t.Errorf("RESP3 STATS: %#v, %v", m, err)
	}
}

func TestCacheCommandsErrors(t *testing.T) {
	obs := &gatewayEvents{}
	p := startProxy(t, shared, proxy.Config{Observer: obs, Cache: proxy.CacheConfig{MaxValueBytes: 16, MaxChunks: 2}}, router.Options{})
	c := p.client(t, 3)
	ctx := cacheCtx(t)
	key := cacheKey(t, c, "perr", fmt.Sprintf(`{"run":%d}`, time.Now().UnixNano())) // fresh per run (-count)
	_, tokV := cacheGet(t, c, key)
	tok := tokV.(string)
	other := strings.Repeat("0", 32)
	for _, tc := range []struct {
		args []interface{}
		want string
	}{
		{[]interface{}{"CACHE.KEY", "ns", "/e", "m", "s", `{"a":`}, "ERR cache: key: request body is not valid JSON"},
		{[]interface{}{"CACHE.KEY", "ns", "/e", "m", "s", `[1]`}, "not a JSON object"},
		{[]interface{}{"CACHE.KEY", "", "/e", "m", "s", `{}`}, "ERR cache: key: bad namespace: namespace is empty"},
		{[]interface{}{"CACHE.KEY", "a{b}", "/e", "m", "s", `{}`}, "brace"},
		{[]interface{}{"CACHE.KEY", "ns", "", "m", "s", `{}`}, "endpoint is empty"},
		{[]interface{}{"CACHE.KEY", "ns", "/e", "m", "s"}, "ERR wrong number of arguments"},
		{[]interface{}{"CACHE.GET"}, "ERR wrong number of arguments"},
		{[]interface{}{"CACHE.GET", "plain"}, "ERR cache: get: bad cache key"},
		{[]interface{}{"CACHE.GET", key, "WAIT"}, "ERR cache.get: syntax error"},
		{[]interface{}{"CACHE.GET", key, "NOWAIT", 1}, "ERR cache.get: syntax error"},
		{[]interface{}{"CACHE.GET", key, "WAIT", "x"}, "ERR cache.get: WAIT is not an integer"},
		{[]interface{}{"CACHE.GET", key, "WAIT", -1}, "ERR cache.get: WAIT -1ms out of range"},
		{[]interface{}{"CACHE.GET", key, "WAIT", 3600001}, "out of range"},
		{[]interface{}{"CACHE.SET", key, tok}, "ERR wrong number of arguments"},
		{[]interface{}{"CACHE.SET", key, tok, "v", "TTL"}, "ERR cache.set: syntax error"},
		{[]interface{}{"CACHE.SET", key, tok, "v", "EX", 5}, "ERR cache.set: syntax error"},
		{[]interface{}{"CACHE.SET", key, tok, "v", "TTL", "1.5"}, "ERR cache.set: TTL is not an integer"},
		{[]interface{}{"CACHE.SET", key, tok, "v", "TTL", 0}, "ERR cache.set: TTL 0s out of range 1..2592000"},
		{[]interface{}{"CACHE.SET", key, tok, "v", "TTL", 2592001}, "out of range"},
		{[]interface{}{"CACHE.SET", key, tok, strings.Repeat("x", 17)}, "ERR cache: set: value too large: 17 bytes, more than 16"},
		{[]interface{}{"CACHE.SET", key, other, "v"}, "ERR cache: set: fill token is stale or unknown"},
		{[]interface{}{"CACHE.SET", key, "nottoken", "v"}, "ERR cache: set: malformed fill token"},
		{[]interface{}{"CACHE.SET", "gwc:v1:{x}", tok, "v"}, "ERR cache: set: bad cache key"},
		{[]interface{}{"CACHE.APPEND", key, tok}, "ERR wrong number of arguments"},
		{[]interface{}{"CACHE.APPEND", key, other, "c"}, "ERR cache: append: fill token is stale"},
		{[]interface{}{"CACHE.APPEND", key, tok, strings.Repeat("x", 17)}, "value too large"},
		{[]interface{}{"CACHE.COMMIT", key, tok, "TTL", -5}, "ERR cache.commit: TTL -5s out of range"},
		{[]interface{}{"CACHE.COMMIT", key, tok, "TTL"}, "ERR cache.commit: syntax error"},
		{[]interface{}{"CACHE.COMMIT", key, other}, "ERR cache: commit: fill token is stale"},
		{[]interface{}{"CACHE.ABORT", key, other}, "ERR cache: abort: fill token is stale"},
		{[]interface{}{"CACHE.ABORT", key}, "ERR wrong number of arguments"},
		{[]interface{}{"CACHE.DEL", "nope"}, "ERR cache: del: bad cache key"},
		{[]interface{}{"CACHE.STATS", "a b"}, "ERR cache: stats: bad namespace"},
		{[]interface{}{"CACHE.STATS"}, "ERR wrong number of arguments"},
	} {
		err := c.Do(ctx, tc.args...).Err()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// The stream caps.
	for i := range 2 {
		if n, err := c.Do(ctx, "CACHE.APPEND", key, tok, "12345678").Int(); err != nil || n != i+1 {
			t.Fatalf("APPEND: %d, %v", n, err)
		}
	}
	if err := c.Do(ctx, "CACHE.APPEND", key, tok, "x").Err(); err == nil || !strings.Contains(err.Error(), "ERR cache: append: value too large") {
		t.Errorf("stream over 16 bytes: %v", err)
	}
	if err := c.Do(ctx, "CACHE.COMMIT", key, tok).Err(); err != nil {
		t.Fatal(err)
	}
	// A spent token is stale.
	if err := c.Do(ctx, "CACHE.SET", key, tok, "v").Err(); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("spent token: %v", err)
	}
	// A foreign value under a cache key.
	key2 := cacheKey(t, c, "perr", `{"n":2}`)
	if err := p.client(t, 2).Do(ctx, "SET", key2, "foreign").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "CACHE.GET", key2).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE cache: get: key holds a value of the wrong kind") {
		t.Errorf("foreign value: %v", err)
	}
	// SET, APPEND, COMMIT and ABORT with a foreign token, SET with a spent one.
	if obs.count("cache/stale") != 5 {
		t.Errorf("stale events %d, want 5 (%v)", obs.count("cache/stale"), obs.n)
	}
}
