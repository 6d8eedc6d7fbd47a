package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// TestTransactions: MULTI/EXEC on one slot, WATCH conflicts, EXECABORT on a
// cross-slot command, DISCARD, and keyless commands before the first key.
func TestTransactions(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		raw := dialRaw(t, p.Addr)
		if proto == 3 {
			if got := raw.do(t, "HELLO", "3"); !strings.HasPrefix(got, "%7") {
				t.Fatalf("HELLO 3: %q", got)
			}
			for i := 0; i < 14; i++ {
				raw.reply(t)
			}
		}
		steps := [][2]string{
			{"MULTI", "+OK\r\n"},
			{"PING", "+QUEUED\r\n"},
			{"SET {tx}a 1", "+QUEUED\r\n"},
			{"INCR {tx}a", "+QUEUED\r\n"},
		}
		for _, st := range steps {
			if got := raw.do(t, strings.Fields(st[0])...); got != st[1] {
				t.Fatalf("resp%d %s: %q, want %q", proto, st[0], got, st[1])
			}
		}
		if got := raw.do(t, "EXEC"); got != "*3\r\n" {
			t.Fatalf("EXEC header %q", got)
		}
		for _, want := range []string{"+PONG\r\n", "+OK\r\n", ":2\r\n"} {
			if got := raw.reply(t); got != want {
				t.Fatalf("EXEC element %q, want %q", got, want)
			}
		}
		// A key from another slot: CROSSSLOT now, EXECABORT at EXEC, nothing applied.
		raw.do(t, "MULTI")
		if got := raw.do(t, "SET", "{tx}b", "1"); got != "+QUEUED\r\n" {
			t.Fatalf("SET {tx}b: %q", got)
		}
		if got := raw.do(t, "SET", "{other}c", "1"); !strings.HasPrefix(got, "-CROSSSLOT") {
			t.Fatalf("cross-slot in MULTI: %q", got)
		}
		if got := raw.do(t, "EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
			t.Fatalf("EXEC after error: %q", got)
		}
		if got := raw.do(t, "EXISTS", "{tx}b"); got != ":0\r\n" {
			t.Fatalf("aborted transaction applied: EXISTS = %q", got)
		}
		// DISCARD.
		raw.do(t, "MULTI")
		raw.do(t, "SET", "{tx}d", "1")
		if got := raw.do(t, "DISCARD"); got != "+OK\r\n" {
			t.Fatalf("DISCARD: %q", got)
		}
		if got := raw.do(t, "EXISTS", "{tx}d"); got != ":0\r\n" {
			t.Fatalf("discarded transaction applied: %q", got)
		}
		if got := raw.do(t, "EXEC"); !strings.HasPrefix(got, "-ERR EXEC without MULTI") {
			t.Fatalf("EXEC without MULTI: %q", got)
		}
	}

	// WATCH: a change by another client makes EXEC return nil.
	c := p.client(t, 2)
	other := p.client(t, 2)
	key := "tx:watched"
	c.Set(ctx, key, "0", 0)
	err := c.Watch(ctx, func(tx *redis.Tx) error {
		other.Set(ctx, key, "changed", 0)
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, key, "mine", 0)
			return nil
		})
		return err
	}, key)
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("WATCH conflict: %v", err)
	}
	if v := c.Get(ctx, key).Val(); v != "changed" {
		t.Fatalf("after failed EXEC: %q", v)
	}
	// Without a conflict the same transaction commits.
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, key, "mine", 0)
			pipe.Incr(ctx, key+":{n}")
			return nil
		})
		return err
	}, key)
	if err == nil || !strings.Contains(err.Error(), "EXECABORT") {
		t.Fatalf("cross-slot TxPipelined: %v", err)
	}
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, key, "mine", 0)
			return nil
		})
		return err
	}, key)
	if err != nil {
		t.Fatalf("WATCH without conflict: %v", err)
	}
	if v := c.Get(ctx, key).Val(); v != "mine" {
		t.Fatalf("committed value %q", v)
	}
}

// TestTransactionConnectionLost: when the node connection of an open MULTI
// breaks, nothing the client sends until EXEC/DISCARD is run, and EXEC
// answers EXECABORT.
func TestTransactionConnectionLost(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	raw := dialRaw(t, p.Addr)
	raw.do(t, "MULTI")
	if got := raw.do(t, "SET", "{txl}a", "1"); got != "+QUEUED\r\n" {
		t.Fatalf("SET: %q", got)
	}
	owner, err := shared.SlotOwner(ctx, router.Slot([]byte("{txl}a")))
	if err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: owner})
	defer node.Close()
	killed := 0
	for _, line := range strings.Split(node.ClientList(ctx).Val(), "\n") {
		if strings.Contains(line, " flags=x ") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := node.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("found %d connections in MULTI on the node", killed)
	}
	if got := raw.do(t, "SET", "{txl}b", "2"); !strings.HasPrefix(got, "-ERR proxy: connection to the node was lost") {
		t.Fatalf("SET after the connection broke: %q", got)
	}
	if got := raw.do(t, "SET", "{txl}c", "3"); !strings.HasPrefix(got, "-ERR proxy: the transaction was aborted") {
		t.Fatalf("SET in the aborted transaction: %q", got)
	}
	if got := raw.do(t, "EXEC"); !strings.HasPrefix(got, "-EXECABORT") {
		t.Fatalf("EXEC: %q", got)
	}
	if got := raw.do(t, "EXISTS", "{txl}a", "{txl}b", "{txl}c"); got != ":0\r\n" {
		t.Fatalf("something of the aborted transaction was applied: EXISTS = %q", got)
	}
	if got := raw.do(t, "SET", "{txl}d", "4"); got != "+OK\r\n" {
		t.Fatalf("SET after the aborted transaction: %q", got)
	}
}
