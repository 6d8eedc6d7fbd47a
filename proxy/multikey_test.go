package proxy_test

import (
	"context"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// TestCrossSlotMultiKey splits MGET/MSET/DEL/EXISTS/TOUCH/UNLINK with 1,000
// keys over all masters by slot and merges the replies.
func TestCrossSlotMultiKey(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		keys := keysOnEveryMaster(t, p, "mk"+strconv.Itoa(proto), 1000)
		pairs := make([]any, 0, 2*len(keys))
		for i, k := range keys {
			pairs = append(pairs, k, "v"+strconv.Itoa(i))
		}
		if err := c.MSet(ctx, pairs...).Err(); err != nil {
			t.Fatal(err)
		}
		// A few keys (slots found by a linear scan), repeated and shuffled.
		small, err := c.MGet(ctx, keys[7], keys[3], keys[7], "mk:missing", keys[1], keys[3]).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := []any{"v7", "v3", "v7", nil, "v1", "v3"}; !reflect.DeepEqual(small, want) {
			t.Fatalf("small MGET = %v, want %v", small, want)
		}
		// MGET in a shuffled order with a missing key and a repeat: replies
		// follow the request's positions.
		req := []string{keys[999], "mk:missing", keys[0], keys[500], keys[0]}
		for _, k := range keys[1:999] {
			req = append(req, k)
		}
		vals, err := c.MGet(ctx, req...).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) != len(req) || vals[0] != "v999" || vals[1] != nil || vals[2] != "v0" || vals[3] != "v500" || vals[4] != "v0" {
			t.Fatalf("MGET head = %v", vals[:5])
		}
		for i, k := range keys[1:999] {
			if vals[5+i] != "v"+strconv.Itoa(i+1) {
				t.Fatalf("MGET %s = %v", k, vals[5+i])
			}
		}
		if n := c.Exists(ctx, append(keys, "mk:missing", keys[3])...).Val(); n != 1001 {
			t.Fatalf("EXISTS = %d, want 1001", n)
		}
		if n := c.Touch(ctx, keys...).Val(); n != 1000 {
			t.Fatalf("TOUCH = %d", n)
		}
		if n := c.Del(ctx, keys[:500]...).Val(); n != 500 {
			t.Fatalf("DEL = %d", n)
		}
		if n := c.Unlink(ctx, append(keys[400:], keys[400])...).Val(); n != 500 {
			t.Fatalf("UNLINK = %d, want 500", n)
		}
		if n := c.Exists(ctx, keys...).Val(); n != 0 {
			t.Fatalf("EXISTS after delete = %d", n)
		}
	}
	// MSETNX across slots is refused like Redis Cluster does; with a hash tag it works.
	c := p.client(t, 2)
	if err := c.MSetNX(ctx, "mk:nx1", "a", "mk:nx2", "b").Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("MSETNX cross-slot: %v", err)
	}
	c.Del(ctx, "{mk}nx1", "{mk}nx2") // left by an earlier run (-count)
	if ok := c.MSetNX(ctx, "{mk}nx1", "a", "{mk}nx2", "b").Val(); !ok {
		t.Fatal("MSETNX with a hash tag failed")
	}
}

// TestAllMasters: DBSIZE sums, KEYS merges, SCRIPT LOAD reaches every
// master, INFO aggregates the keyspace.
func TestAllMasters(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	keys := keysOnEveryMaster(t, p, "am", 60)
	for _, k := range keys {
		if err := c.Set(ctx, k, 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Keys(ctx, "am:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := append([]string(nil), keys...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("KEYS am:* = %d keys, want %d", len(got), len(want))
	}
	// DBSIZE equals the sum of the masters' own counts.
	var direct int64
	masters, err := shared.MasterAddrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range masters {
		nc := redis.NewClient(&redis.Options{Addr: m})
		direct += nc.DBSize(ctx).Val()
		nc.Close()
	}
	if n := c.DBSize(ctx).Val(); n != direct || n < 60 {
		t.Fatalf("DBSIZE = %d, masters hold %d", n, direct)
	}
	// A script loaded through the proxy runs on keys of every master.
	sha, err := c.ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.ScriptExists(ctx, sha, "0000000000000000000000000000000000000000").Val(); len(ex) != 2 || !ex[0] || ex[1] {
		t.Fatalf("SCRIPT EXISTS = %v", ex)
	}
	for _, k := range keys {
		if n, err := c.EvalSha(ctx, sha, []string{k}).Int(); err != nil || n != 2 {
			t.Fatalf("EVALSHA on %s = %d, %v", k, n, err)
		}
	}
	info := c.Info(ctx).Val()
	if !strings.Contains(info, "# Keyspace") || !strings.Contains(info, "db0:keys="+strconv.FormatInt(direct, 10)) {
		t.Fatalf("INFO keyspace: %q", info)
	}
	if info := c.Info(ctx, "server").Val(); !strings.Contains(info, "redis_version:") || strings.Contains(info, "# Keyspace") {
		t.Fatalf("INFO server: %q", info)
	}
	if r := c.Do(ctx, "ROLE").Val(); r.([]any)[0] != "master" {
		t.Fatalf("ROLE = %v", r)
	}
}

// TestNoScriptHealed: EVALSHA of a script the proxy has seen works on a
// master that lost it (SCRIPT FLUSH there, or a promoted replica).
func TestNoScriptHealed(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	script := "return 'healed:' .. KEYS[1]"
	sha, err := c.ScriptLoad(ctx, script).Result()
	if err != nil {
		t.Fatal(err)
	}
	key := "noscript:k"
	owner, err := shared.SlotOwner(ctx, router.Slot([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: owner})
	defer node.Close()
	if err := node.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ex := node.ScriptExists(ctx, sha).Val(); len(ex) != 1 || ex[0] {
		t.Fatal("script still on the node after SCRIPT FLUSH")
	}
	v, err := c.EvalSha(ctx, sha, []string{key}).Result()
	if err != nil || v != "healed:"+key {
		t.Fatalf("EVALSHA after the node lost the script = %v, %v", v, err)
	}
	// A script the proxy never saw still answers NOSCRIPT.
	if err := c.EvalSha(ctx, "0123456789012345678901234567890123456789", []string{key}).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("unknown script: %v", err)
	}
}

// TestConfigSetEveryNode: CONFIG SET reaches every node, replicas included.
func TestConfigSetEveryNode(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	old := c.ConfigGet(ctx, "slowlog-max-len").Val()["slowlog-max-len"]
	defer c.ConfigSet(ctx, "slowlog-max-len", old)
	if err := c.ConfigSet(ctx, "slowlog-max-len", "321").Err(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range shared.Addrs() {
		nc := redis.NewClient(&redis.Options{Addr: addr})
		v := nc.ConfigGet(ctx, "slowlog-max-len").Val()["slowlog-max-len"]
		nc.Close()
		if v != "321" {
			t.Fatalf("node %s has slowlog-max-len %q", addr, v)
		}
	}
	if err := c.ConfigSet(ctx, "no-such-setting", "1").Err(); err == nil || !strings.Contains(err.Error(), "Unknown option") {
		t.Fatalf("bad CONFIG SET: %v", err)
	}
}
