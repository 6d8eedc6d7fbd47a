package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// replicaGet reads key from a replica of the master holding it.
func replicaGet(t *testing.T, key string) (string, error) {
	t.Helper()
	ctx := context.Background()
	master, err := shared.SlotOwner(ctx, int(router.Slot([]byte(key))))
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := shared.ReplicasOf(ctx, master)
	if err != nil || len(replicas) == 0 {
		t.Fatalf("replicas of %s: %v %v", master, replicas, err)
	}
	c := redis.NewClient(&redis.Options{Addr: replicas[0], MaxRetries: -1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }})
	defer c.Close()
	return c.Get(ctx, key).Result()
}

// TestWriteReplicas: with WriteReplicas, a write is acknowledged once the
// replica has it; asking for more replicas than exist answers NOREPLICAS
// after the timeout, with the write applied on the master; failed writes
// and reads are not held.
func TestWriteReplicas(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{WriteReplicas: 1, WriteReplicasTimeout: 2 * time.Second}, router.Options{})
	c := p.client(t, 2)
	keys := keysOnEveryMaster(t, p, "wrepl-", 3)
	for i, k := range keys {
		for round := range 20 {
			v := k + "-" + string(rune('a'+round))
			if err := c.Set(ctx, k, v, 0).Err(); err != nil {
				t.Fatalf("SET %s: %v", k, err)
			}
			// Acknowledged means replicated: the replica answers the value.
			if got, err := replicaGet(t, k); err != nil || got != v {
				t.Fatalf("key %d round %d: replica has %q (%v), want %q", i, round, got, err, v)
			}
		}
	}
	// Cross-slot MSET, a transaction and a script wait on every master written.
	pairs := []any{}
	for _, k := range keys {
		pairs = append(pairs, k, "mset-"+k)
	}
	if err := c.MSet(ctx, pairs...).Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if got, err := replicaGet(t, k); err != nil || got != "mset-"+k {
			t.Fatalf("after MSET replica has %q (%v)", got, err)
		}
	}
	if _, err := c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, keys[0], "tx", 0)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := replicaGet(t, keys[0]); err != nil || got != "tx" {
		t.Fatalf("after EXEC replica has %q (%v)", got, err)
	}
	if err := c.Eval(ctx, "return redis.call('SET', KEYS[1], ARGV[1])", []string{keys[1]}, "lua").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := replicaGet(t, keys[1]); err != nil || got != "lua" {
		t.Fatalf("after EVAL replica has %q (%v)", got, err)
	}
	// A failed write is answered as it is, at once.
	start := time.Now()
	if err := c.LPush(ctx, keys[2], "x").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Fatalf("LPUSH on a string: %v, want WRONGTYPE", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("writes took %v", d)
	}

	// Two replicas wanted, one exists: NOREPLICAS after the timeout, the
	// write applied on the master.
	p2 := startProxy(t, shared, proxy.Config{WriteReplicas: 2, WriteReplicasTimeout: 300 * time.Millisecond}, router.Options{})
	c2 := p2.client(t, 2)
	start = time.Now()
	err := c2.Set(ctx, keys[0], "two", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") || !strings.Contains(err.Error(), "1 of 2 replicas") {
		t.Fatalf("SET wanting 2 replicas: %v, want NOREPLICAS ... 1 of 2 replicas", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("NOREPLICAS after %v, want about 300ms", d)
	}
	if got := c2.Get(ctx, keys[0]).Val(); got != "two" {
		t.Fatalf("master has %q, want the write applied", got)
	}
	// Reads are not held.
	start = time.Now()
	for range 20 {
		if err := c2.Get(ctx, keys[0]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("20 GETs took %v", d)
	}
}
