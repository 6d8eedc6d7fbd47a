package proxy_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// countingObserver counts router events by kind.
type countingObserver struct {
	mu     sync.Mutex
	counts map[string]int
}

func (o *countingObserver) Redirected(kind string) {
	o.mu.Lock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[kind]++
	o.mu.Unlock()
}

func (o *countingObserver) TopologyRefreshed(string, int, error) {}

func (o *countingObserver) get(kind string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[kind]
}

// writer runs SET then GET on its keys in a loop until stopped, recording
// every error the client sees and the last value acknowledged per key. It
// stops between commands, never in the middle of one, so after stop every
// write it made was acknowledged or reported as an error.
type writer struct {
	errs  atomic.Int64
	ops   atomic.Int64
	first atomic.Value // first error text
	stopc chan struct{}
	done  chan struct{}
	acked map[string]int // owned by the writer goroutine until done
}

func runWriter(c *redis.Client, keys []string) *writer {
	w := &writer{acked: map[string]int{}, stopc: make(chan struct{}), done: make(chan struct{})}
	ctx := context.Background()
	go func() {
		defer close(w.done)
		for n := 0; ; n++ {
			select {
			case <-w.stopc:
				return
			default:
			}
			k := keys[n%len(keys)]
			err := c.Set(ctx, k, n, 0).Err()
			if err == nil {
				var v int
				v, err = c.Get(ctx, k).Int()
				if err == nil && v != n {
					err = fmt.Errorf("GET %s = %d after SET %d", k, v, n)
				}
			}
			if err != nil {
				if w.errs.Add(1) == 1 {
					w.first.Store(err.Error())
				}
				delete(w.acked, k) // unknown whether it was applied
				continue
			}
			w.ops.Add(1)
			w.acked[k] = n
		}
	}()
	return w
}

func (w *writer) stop() {
	close(w.stopc)
	<-w.done
}

// check stops the writer and asserts it saw no error and that every
// acknowledged write reads back.
func (w *writer) check(t *testing.T, ctx context.Context, c *redis.Client) {
	t.Helper()
	w.stop()
	if n := w.errs.Load(); n > 0 {
		t.Fatalf("client saw %d errors; first: %v", n, w.first.Load())
	}
	if w.ops.Load() == 0 {
		t.Fatal("writer made no progress")
	}
	for k, n := range w.acked {
		v, err := c.Get(ctx, k).Int()
		if err != nil || v != n {
			t.Fatalf("acknowledged write lost: %s = %d (%v), want %d", k, v, err, n)
		}
	}
}

// migrationEnds returns the master serving slot and another master to move
// it to.
func migrationEnds(t *testing.T, cl *localcluster.Cluster, slot int) (from, to string) {
	t.Helper()
	ctx := context.Background()
	from, err := cl.SlotOwner(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	masters, err := cl.MasterAddrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	to = masters[0]
	if to == from {
		to = masters[1]
	}
	return from, to
}

// TestReshardASK moves one slot while a client writes and reads keys in it:
// the proxy follows ASK (ASKING sent with the command) and then MOVED; the
// client sees no error and no redirection.
func TestReshardASK(t *testing.T) {
	cl := testcluster.Start(t)
	obs := &countingObserver{}
	p := startProxy(t, cl, proxy.Config{}, router.Options{Observer: obs})
	ctx := context.Background()
	c := p.client(t, 2)

	keys := make([]string, 200)
	for i := range keys {
		keys[i] = "{mig}:" + strconv.Itoa(i)
	}
	slot := router.Slot([]byte(keys[0]))
	from, to := migrationEnds(t, cl, slot)
	// Half the keys exist before the migration starts.
	for _, k := range keys[:100] {
		if err := c.Set(ctx, k, -1, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	w := runWriter(p.client(t, 2), keys)
	time.Sleep(200 * time.Millisecond)
	if err := cl.BeginMigration(ctx, slot, from, to); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // writes during MIGRATING/IMPORTING
	if _, err := cl.MigrateKeys(ctx, slot, from, to, 10); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // keys moved, slot not yet reassigned: ASK
	if err := cl.FinishMigration(ctx, slot, from, to); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	w.check(t, ctx, c)
	if obs.get("ask") == 0 {
		t.Fatal("no ASK redirection was exercised")
	}
	if owner, _ := cl.SlotOwner(ctx, slot); owner != to {
		t.Fatalf("slot %d owned by %s, want %s", slot, owner, to)
	}
	t.Logf("ops=%d ask=%d moved=%d tryagain=%d", w.ops.Load(), obs.get("ask"), obs.get("moved"), obs.get("tryagain"))
}

// TestFailoverMOVED runs CLUSTER FAILOVER on a replica while a client
// writes and reads keys on every master: the proxy follows MOVED and
// refreshes its topology; the client sees no error.
func TestFailoverMOVED(t *testing.T) {
	cl := testcluster.Start(t)
	obs := &countingObserver{}
	p := startProxy(t, cl, proxy.Config{}, router.Options{Observer: obs})
	ctx := context.Background()
	c := p.client(t, 3)
	keys := keysOnEveryMaster(t, p, "fo", 60)

	sha, err := c.ScriptLoad(ctx, "return redis.call('GET', KEYS[1])").Result()
	if err != nil {
		t.Fatal(err)
	}
	// A keyspace subscriber, to check it follows the failover.
	if err := c.ConfigSet(ctx, "notify-keyspace-events", "K$").Err(); err != nil {
		t.Fatal(err)
	}
	sub := dialFrames(t, p.Addr, 2)
	sub.send(t, []string{"PSUBSCRIBE", "__keyspace@0__:kf:*"})
	sub.expect(t, 0, "psubscribe __keyspace@0__:kf:* 1")

	// A client-side caching client, to check it hears the new master.
	trk := dialFrames(t, p.Addr, 3)
	trk.send(t, []string{"CLIENT", "TRACKING", "ON"})
	if got := trk.nextFrame(t); got != "OK" {
		t.Fatalf("CLIENT TRACKING ON: %q", got)
	}

	w := runWriter(p.client(t, 3), keys)
	time.Sleep(200 * time.Millisecond)
	masters, err := cl.MasterAddrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newMaster, err := cl.Failover(ctx, masters[0])
	if err != nil {
		t.Fatal(err)
	}
	// Keep writing until the proxy's topology shows the new master.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(fmt.Sprint(p.Router.Masters()), newMaster) {
		if time.Now().After(deadline) {
			t.Fatalf("proxy topology never showed %s as master: %v", newMaster, p.Router.Masters())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	w.check(t, ctx, c)
	// The script loaded before the failover runs on every key afterwards,
	// the promoted master's included (NOSCRIPT is healed if it lacks it).
	for _, k := range keys {
		if err := c.EvalSha(ctx, sha, []string{k}).Err(); err != nil && err != redis.Nil {
			t.Fatalf("EVALSHA on %s after failover: %v", k, err)
		}
	}
	// The proxy listens for invalidations on the new master, and tells
	// tracking clients to drop every key, changes there before it listened
	// having gone unheard; then changes there reach them.
	if got := trk.nextFrame(t); got != "[invalidate (nil)]" {
		t.Fatalf("tracking client after the failover: %q, want an invalidation of every key", got)
	}
	var kt string
	for i := 0; kt == ""; i++ {
		if k := fmt.Sprintf("trkfo:%d", i); p.Router.MasterOf(router.Slot([]byte(k))) == newMaster {
			kt = k
		}
	}
	trk.send(t, []string{"GET", kt})
	if got := trk.nextFrame(t); got != "(nil)" {
		t.Fatalf("GET %s: %q", kt, got)
	}
	if err := c.Set(ctx, kt, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	trk.invalidated(t, kt)
	// No connection broke, yet the subscriber's keyspace connections move
	// to the new master once the proxy's layout shows it: the old master,
	// a replica now, holds the pattern no more.
	numpat := func(addr string) int64 {
		nc := redis.NewClient(&redis.Options{Addr: addr})
		defer nc.Close()
		n, err := nc.PubSubNumPat(ctx).Result()
		if err != nil {
			t.Fatalf("PUBSUB NUMPAT on %s: %v", addr, err)
		}
		return n
	}
	deadline = time.Now().Add(5 * time.Second)
	for numpat(newMaster) != 1 || numpat(masters[0]) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("keyspace patterns: %d on the new master %s, %d on the old %s; want 1 and 0",
				numpat(newMaster), newMaster, numpat(masters[0]), masters[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A key there is heard once through each pattern, before and after
	// another keyspace subscription.
	var k1, k2 string
	for i := 0; k1 == "" || k2 == ""; i++ {
		if a := fmt.Sprintf("kf:%d", i); k1 == "" && p.Router.MasterOf(router.Slot([]byte(a))) == newMaster {
			k1 = a
		}
		if b := fmt.Sprintf("kf2:%d", i); k2 == "" && p.Router.MasterOf(router.Slot([]byte(b))) == newMaster {
			k2 = b
		}
	}
	c.Set(ctx, k1, "v", 0)
	sub.expect(t, 1, "pmessage __keyspace@0__:kf:* __keyspace@0__:"+k1+" set")
	sub.send(t, []string{"PSUBSCRIBE", "__keyspace@0__:kf2:*"})
	sub.expect(t, 2, "psubscribe __keyspace@0__:kf2:* 2")
	c.Set(ctx, k2, "v", 0)
	sub.expect(t, 3, "pmessage __keyspace@0__:kf2:* __keyspace@0__:"+k2+" set")
	_ = sub.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if frame, err := sub.rd.ReadReply(); err == nil {
		t.Fatalf("a notification came twice: %q", frame)
	}
	t.Logf("ops=%d moved=%d clusterdown=%d", w.ops.Load(), obs.get("moved"), obs.get("clusterdown"))
}

// TestPipelineOrderAcrossLayoutChange: a client pipelines SET k then, after
// the proxy learned that k's slot moved, GET k. The SET went to the old
// master (stopped meanwhile, so its MOVED comes late); the GET must not be
// sent straight to the new master ahead of it: it reads the SET's value.
func TestPipelineOrderAcrossLayoutChange(t *testing.T) {
	cl := testcluster.Start(t)
	p := startProxy(t, cl, proxy.Config{}, router.Options{RefreshInterval: time.Hour,
		RefreshCooldown: 10 * time.Millisecond, DialTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	c := p.client(t, 2)
	const key = "{order}:k"
	slot := router.Slot([]byte(key))
	from, to := migrationEnds(t, cl, slot)
	if err := c.Set(ctx, key, "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Move the slot, with k, behind the proxy's back (no refresh for an
	// hour, and no command of k's slot until the SET below).
	if err := cl.BeginMigration(ctx, slot, from, to); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.MigrateKeys(ctx, slot, from, to, 10); err != nil {
		t.Fatal(err)
	}
	if err := cl.FinishMigration(ctx, slot, from, to); err != nil {
		t.Fatal(err)
	}
	owner := func() string {
		for _, sh := range p.Router.Shards() {
			for _, r := range sh.Slots {
				if slot >= r[0] && slot <= r[1] {
					return sh.Master.Addr
				}
			}
		}
		return ""
	}
	if got := owner(); got != from {
		t.Fatalf("the proxy already routes slot %d to %s", slot, got)
	}

	pid := cl.Node(from).PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	raw := dialRaw(t, p.Addr)
	// Two commands in one write, so the SET is pipelined (handed to the
	// session's writer), not answered in place.
	pipe := append(resp.AppendCommandStrings(nil, "SET", key, "v2"), resp.AppendCommandStrings(nil, "PING")...)
	if _, err := raw.Write(pipe); err != nil {
		t.Fatal(err)
	}
	// The proxy learns the new layout while the SET waits in the stopped
	// node's socket (a refresh that asks the stopped node fails; retry).
	deadline := time.Now().Add(2 * time.Second) // well within the cluster's 5 s node timeout
	for owner() != to {
		if time.Now().After(deadline) {
			resume()
			t.Fatalf("the proxy did not learn that slot %d moved to %s", slot, to)
		}
		p.Router.Refresh("test")
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := raw.Write(resp.AppendCommandStrings(nil, "GET", key)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // time enough to run the GET on the new master at once
	resume()
	for i, want := range []string{"+OK\r\n", "+PONG\r\n", "$2\r\nv2\r\n"} {
		if got := raw.reply(t); got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	c.Del(ctx, key)
}
