package proxy_test

// Fault tests under concurrent load: a master killed with SIGKILL, a master
// that accepts TCP but never answers (SIGSTOP), and a 300-slot reshard with
// redis-cli. Each test starts its own cluster, drives it through the proxy
// with plain go-redis clients, asserts what clients saw, and logs its
// measured figures on one line starting with "FIGURES:".

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// faultOp is one command a load worker ran through the proxy.
type faultOp struct {
	start, end time.Time
	shard      int    // index of the shard the keys belong to; -1 for several
	op         string // "set", "get", "mset", "mget"
	err        error  // client-visible error (redis.Nil is not one)
}

func (o faultOp) lat() time.Duration { return o.end.Sub(o.start) }

// faultAck is the last write of a key acknowledged by the proxy.
type faultAck struct {
	val   string
	at    time.Time // when the acknowledgement arrived
	shard int
}

// faultWorker is the state of one load goroutine; it is owned by that
// goroutine until the load is stopped.
type faultWorker struct {
	g     int
	c     *redis.Client
	ops   []faultOp
	acked map[string]faultAck
	// mismatches are reads that did not return the value just acknowledged.
	mismatches []string
	stopc      <-chan struct{}
}

func (w *faultWorker) stopped() bool {
	select {
	case <-w.stopc:
		return true
	default:
		return false
	}
}

// do runs one command and records it.
func (w *faultWorker) do(shard int, op string, f func() error) (faultOp, error) {
	o := faultOp{start: time.Now(), shard: shard, op: op}
	err := f()
	o.end = time.Now()
	if err != nil && err != redis.Nil {
		o.err = err
	}
	w.ops = append(w.ops, o)
	return o, err
}

// faultLoad is a set of load goroutines, each with its own client (its own
// proxy session).
type faultLoad struct {
	stopc   chan struct{}
	wg      sync.WaitGroup
	workers []*faultWorker
	stopFn  func()
}

// startFaultLoad runs n goroutines calling body until stop. body must loop
// until w.stopped() and check it only between commands, so that after stop
// every write was either acknowledged or reported as an error.
func startFaultLoad(t *testing.T, p *testProxy, n int, body func(w *faultWorker)) *faultLoad {
	t.Helper()
	l := &faultLoad{stopc: make(chan struct{})}
	for g := range n {
		c := redis.NewClient(&redis.Options{Addr: p.Addr, Protocol: 2, MaxRetries: -1, PoolSize: 1,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
		t.Cleanup(func() { c.Close() })
		w := &faultWorker{g: g, c: c, acked: map[string]faultAck{}, stopc: l.stopc}
		l.workers = append(l.workers, w)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			body(w)
		}()
	}
	stop := sync.OnceFunc(func() { close(l.stopc); l.wg.Wait() })
	t.Cleanup(stop)
	l.stopFn = stop
	return l
}

func (l *faultLoad) stop() { l.stopFn() }

// ops returns every recorded command (after stop).
func (l *faultLoad) ops() []faultOp {
	var all []faultOp
	for _, w := range l.workers {
		all = append(all, w.ops...)
	}
	return all
}

// acked returns every acknowledged write (after stop); workers own
// disjoint keys.
func (l *faultLoad) acked() map[string]faultAck {
	all := map[string]faultAck{}
	for _, w := range l.workers {
		for k, a := range w.acked {
			all[k] = a
		}
	}
	return all
}

// faultSlotShards maps every slot to the index of its shard in shards.
func faultSlotShards(tb testing.TB, shards []router.Shard) []int {
	tb.Helper()
	owner := make([]int, router.SlotCount)
	for i := range owner {
		owner[i] = -1
	}
	for i, sh := range shards {
		for _, r := range sh.Slots {
			for s := r[0]; s <= r[1]; s++ {
				owner[s] = i
			}
		}
	}
	if slices.Contains(owner, -1) {
		tb.Fatal("the proxy's topology does not cover every slot")
	}
	return owner
}

// faultTags returns, for every slot, a hash tag that hashes to it:
// "{"+tags[slot]+"}..." is a key in slot.
var faultTags = sync.OnceValue(func() []string {
	tags := make([]string, router.SlotCount)
	left := router.SlotCount
	for n := 0; left > 0; n++ {
		tag := "fault-" + strconv.Itoa(n)
		if s := router.Slot([]byte(tag)); tags[s] == "" {
			tags[s] = tag
			left--
		}
	}
	return tags
})

func faultKeyInSlot(slot int, suffix string) string {
	return "{" + faultTags()[slot] + "}:" + suffix
}

// faultReadBack reads every acknowledged key back through c and returns the
// keys whose value is not the last acknowledged one.
func faultReadBack(tb testing.TB, ctx context.Context, c *redis.Client, acked map[string]faultAck) []string {
	tb.Helper()
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var lost []string
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 500)]
		keys = keys[len(batch):]
		cmds, err := c.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, k := range batch {
				pl.Get(ctx, k)
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			tb.Fatalf("read back: %v", err)
		}
		for i, cmd := range cmds {
			v, err := cmd.(*redis.StringCmd).Result()
			if err != nil && err != redis.Nil {
				tb.Fatalf("read back %s: %v", batch[i], err)
			}
			if want := acked[batch[i]].val; err == redis.Nil || v != want {
				lost = append(lost, fmt.Sprintf("%s=%q (want %q)", batch[i], v, want))
			}
		}
	}
	return lost
}

// faultPct returns the q-quantile (0..1) of lats (sorted in place).
func faultPct(lats []time.Duration, q float64) time.Duration {
	if len(lats) == 0 {
		return 0
	}
	slices.Sort(lats)
	return lats[min(len(lats)-1, int(q*float64(len(lats))))]
}

func faultFirst(errs []string, n int) string {
	if len(errs) > n {
		return strings.Join(errs[:n], "; ") + fmt.Sprintf("; ... (%d in all)", len(errs))
	}
	return strings.Join(errs, "; ")
}

// TestKillMasterUnderLoad kills one master with SIGKILL while eight clients
// write and read keys on every master, and keeps the load running through
// the failover and the dead node's return as a replica.
func TestKillMasterUnderLoad(t *testing.T) {
	const (
		workers = 8
		// RetryWindow must exceed the failover: deploy/redis.conf's node
		// timeout (5 s), the FAIL agreement, the election (~1 s), plus a
		// loaded machine's delays.
		retryWindow = 20 * time.Second
		// The periodic refresh is what shows the rejoined replica.
		refresh = time.Second
	)
	began := time.Now()
	cl := testcluster.Start(t)
	ctx := t.Context()
	obs := &faultRedirects{}
	p := startProxy(t, cl, proxy.Config{}, router.Options{RetryWindow: retryWindow, RefreshInterval: refresh, Observer: obs})
	shards := p.Router.Shards()
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3", len(shards))
	}
	owner := faultSlotShards(t, shards)
	const victimShard = 1
	victim := shards[victimShard].Master.Addr
	replicas, err := cl.ReplicasOf(ctx, victim)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, %v; want one", victim, replicas, err)
	}
	promoted := replicas[0]
	victimWorkers := 0
	for g := range workers {
		if g%len(shards) == victimShard {
			victimWorkers++
		}
	}

	var killedAt, recoveredAt atomic.Int64 // unix nanoseconds; 0 = not yet
	// Each worker writes keys of one shard only (worker g: shard g%3), so the
	// keys of the load as a whole cover every master. A worker spreading its
	// keys over all masters would spend the failover waiting for its held
	// request and measure nothing about the healthy shards. Every SET writes a
	// new key, so every acknowledged write can be checked at the end.
	load := startFaultLoad(t, p, workers, func(w *faultWorker) {
		shard := w.g % len(shards)
		j := 0
		for i := 0; !w.stopped(); i++ {
			var key string
			for {
				key = "fault-kill-" + strconv.Itoa(w.g) + "-" + strconv.Itoa(j)
				j++
				if owner[router.Slot([]byte(key))] == shard {
					break
				}
			}
			val := strconv.Itoa(i)
			if _, err := w.do(shard, "set", func() error { return w.c.Set(ctx, key, val, 0).Err() }); err != nil {
				continue // not acknowledged: it may or may not have been applied
			}
			w.acked[key] = faultAck{val: val, at: time.Now(), shard: shard}
			var got string
			o, err := w.do(shard, "get", func() (err error) { got, err = w.c.Get(ctx, key).Result(); return err })
			if o.err == nil && got != val {
				w.mismatches = append(w.mismatches, fmt.Sprintf("%s=%q after SET %q (%v)", key, got, val, err))
			}
			if shard == victimShard && o.err == nil {
				if k := killedAt.Load(); k != 0 && o.start.UnixNano() > k {
					recoveredAt.CompareAndSwap(0, o.end.UnixNano())
				}
			}
		}
	})

	// A baseline next to the proxied load: one client per healthy master,
	// straight to the node. It tells when the cluster itself refused
	// requests: with cluster-require-full-coverage yes every master answers
	// CLUSTERDOWN from the moment the dead master is flagged FAIL until its
	// replica is promoted; deploy/redis.conf ships "no", so the healthy
	// masters should never be down.
	type directOp struct {
		start, end time.Time
		down       bool // CLUSTERDOWN
	}
	directStop := make(chan struct{})
	var directWG sync.WaitGroup
	directOps := make([][]directOp, len(shards))
	for i, sh := range shards {
		if i == victimShard {
			continue
		}
		dc := redis.NewClient(&redis.Options{Addr: sh.Master.Addr, MaxRetries: -1, PoolSize: 1, DisableIdentity: true})
		t.Cleanup(func() { dc.Close() })
		var key string
		for j := 0; key == "" || owner[router.Slot([]byte(key))] != i; j++ {
			key = "fault-kill-direct-" + strconv.Itoa(j)
		}
		directWG.Add(1)
		go func() {
			defer directWG.Done()
			for n := 0; ; n++ {
				select {
				case <-directStop:
					return
				default:
				}
				o := directOp{start: time.Now()}
				err := dc.Set(ctx, key, n, 0).Err()
				o.end = time.Now()
				if err != nil {
					if !strings.HasPrefix(err.Error(), "CLUSTERDOWN") {
						t.Errorf("direct SET on %s: %v", sh.Master.Addr, err)
						return
					}
					o.down = true
					time.Sleep(5 * time.Millisecond)
				}
				directOps[i] = append(directOps[i], o)
			}
		}()
	}
	stopDirect := sync.OnceFunc(func() { close(directStop); directWG.Wait() })
	t.Cleanup(stopDirect)

	// A client-side caching client next to the load: its cache must match
	// the cluster at the end, through the kill, the failover and the
	// restart (the proxy tells it to drop every key when it loses a
	// master's invalidation listener and when it listens on the new one).
	cache := startCacheChecker(t, p, keysOnEveryMaster(t, p, "fault-kill-csc", 24))

	time.Sleep(time.Second)
	kill := time.Now()
	if err := cl.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	killedAt.Store(killed.UnixNano())
	deadline := time.Now().Add(retryWindow + 5*time.Second)
	for recoveredAt.Load() == 0 {
		if time.Now().After(deadline) {
			load.stop()
			t.Fatalf("requests for the killed master's slots never succeeded again (%v after the kill)", time.Since(kill))
		}
		time.Sleep(20 * time.Millisecond)
	}
	recovered := time.Unix(0, recoveredAt.Load())
	time.Sleep(time.Second)
	stopDirect()

	// The killed node comes back, with the load still running: it must
	// rejoin as a replica of the promoted one, the proxy's topology must
	// show it (periodic refresh, the proxy is not restarted) and the load
	// must see no error while it rejoins.
	restartAt := time.Now()
	if err := cl.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	const rejoinBound = 10 * time.Second
	var inCluster, inRouter time.Duration
	for deadline := restartAt.Add(rejoinBound); inCluster == 0 || inRouter == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			load.stop()
			t.Fatalf("%s not seen as a replica of %s within %v of its restart: cluster after %v, proxy after %v; proxy shards %v",
				victim, promoted, rejoinBound, inCluster, inRouter, p.Router.Shards())
		}
		if inCluster == 0 {
			if reps, err := cl.ReplicasOf(ctx, promoted); err == nil && slices.Contains(reps, victim) {
				inCluster = time.Since(restartAt)
			}
		}
		if inRouter == 0 {
			for _, sh := range p.Router.Shards() {
				if sh.Master.Addr == promoted && slices.ContainsFunc(sh.Replicas, func(n router.NodeInfo) bool { return n.Addr == victim }) {
					inRouter = time.Since(restartAt)
				}
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // traffic after the proxy saw the rejoined node
	load.stop()
	restartPhase := time.Since(restartAt)
	cacheReads, cached := cache.check(t)
	clients, _, _, flushes := p.Server.TrackingStats()
	if flushes < 2 {
		t.Errorf("the caching client was told to drop its cache %d times, want at least 2 (listener lost, listener on the promoted master)", flushes)
	}
	t.Logf("client-side caching: %d reads, %d keys cached at the end and matching the cluster, %d cache drops, %d tracking clients", cacheReads, cached, flushes, clients)

	if m := p.Router.MasterOf(shards[victimShard].Slots[0][0]); m != promoted {
		t.Errorf("proxy routes the killed master's slots to %q, want the promoted replica %s", m, promoted)
	}

	// When the cluster refused requests (CLUSTERDOWN seen by the direct
	// clients).
	var downFrom, downTo time.Time
	var directLats []time.Duration
	for _, ops := range directOps {
		for _, o := range ops {
			if o.down {
				if downFrom.IsZero() || o.start.Before(downFrom) {
					downFrom = o.start
				}
				if o.end.After(downTo) {
					downTo = o.end
				}
			}
		}
	}
	if !downFrom.IsZero() {
		t.Errorf("healthy masters answered CLUSTERDOWN for %v during the failover; deploy/redis.conf ships cluster-require-full-coverage no",
			downTo.Sub(downFrom).Round(time.Millisecond))
	}
	flowingTo := recovered // healthy shards serve until the cluster goes down
	if !downFrom.IsZero() {
		flowingTo = downFrom
	}
	for _, ops := range directOps {
		for _, o := range ops {
			if !o.down && !o.start.Before(kill) && o.end.Before(flowingTo) {
				directLats = append(directLats, o.end.Sub(o.start))
			}
		}
	}

	// Client-visible errors: none. Requests for the dead master's slots
	// are held and retried within the retry window; that includes the SETs
	// in flight when its connection broke (and those sent on a connection
	// the dying node still accepted, reset moments later), which the proxy
	// resends because a plain overwrite applied twice leaves the same
	// state. Other shards are served normally, or held while the cluster
	// reports CLUSTERDOWN.
	ops := load.ops()
	var bad []string
	for _, o := range ops {
		if o.err != nil {
			bad = append(bad, fmt.Sprintf("%s on shard %d at kill%+v..%+v: %v", o.op, o.shard,
				o.start.Sub(kill).Round(time.Millisecond), o.end.Sub(kill).Round(time.Millisecond), o.err))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d client-visible errors: %s", len(bad), faultFirst(bad, 5))
	}

	// The failover: from the kill to the first success, on the killed
	// master's slots, of a request sent after it. Requests on those slots
	// were held meanwhile; the healthy shards served until the cluster went
	// down, and were held (not failed) while it was.
	var victimLats []time.Duration
	var maxHold time.Duration
	flowing := make([]int, len(shards))
	var flowingLats []time.Duration
	var flowingMax, healthyMax time.Duration
	var flowingSlow []string
	for _, o := range ops {
		if o.err != nil {
			continue
		}
		if o.shard == victimShard {
			victimLats = append(victimLats, o.lat())
			if o.end.After(kill) {
				maxHold = max(maxHold, o.lat())
			}
			continue
		}
		if o.end.After(kill) && o.start.Before(recovered) {
			healthyMax = max(healthyMax, o.lat())
		}
		if !o.start.Before(kill) && o.end.Before(flowingTo) {
			flowing[o.shard]++
			flowingLats = append(flowingLats, o.lat())
			flowingMax = max(flowingMax, o.lat())
			if o.lat() > 100*time.Millisecond {
				flowingSlow = append(flowingSlow, fmt.Sprintf("%s on shard %d at kill%+v took %v", o.op, o.shard,
					o.start.Sub(kill).Round(time.Millisecond), o.lat().Round(time.Millisecond)))
			}
		}
	}
	failover := recovered.Sub(kill)
	flowingDur := flowingTo.Sub(kill)
	downDur := downTo.Sub(downFrom)
	if maxHold < time.Second {
		t.Errorf("max hold time on the killed shard %v: the failover cannot have been that fast, were requests held?", maxHold)
	}
	// Until the cluster went down, the healthy shards kept flowing: each
	// served a steady stream (a few workers each: hundreds of requests per
	// second even on a loaded machine, asserted at 20/s), and none of their
	// requests waited anywhere near the failover time.
	for i, n := range flowing {
		if i == victimShard {
			continue
		}
		if want := int(20 * flowingDur.Seconds()); n < want {
			t.Errorf("shard %d served %d requests in the %v between the kill and CLUSTERDOWN, want at least %d",
				i, n, flowingDur.Round(time.Millisecond), want)
		}
	}
	if flowingMax > time.Second {
		t.Errorf("a request to a healthy shard took %v before the cluster went down: healthy shards were held up by the dead one; over 100ms: %s",
			flowingMax, faultFirst(flowingSlow, 10))
	}
	// While the cluster was down they were held no longer than that.
	if healthyMax > downDur+time.Second {
		t.Errorf("a request to a healthy shard took %v during the failover; the cluster was down for %v", healthyMax, downDur)
	}

	// Acknowledged writes read back. Replication is asynchronous: a write
	// the master acknowledged just before SIGKILL may not have reached the
	// replica that took over (README, Guarantees). Redis sends the write to
	// its replica in the same event-loop pass as the reply, so over loopback
	// this is ~never seen; the bound tolerates at most one write per worker
	// of the killed shard, acknowledged before the kill. Any other loss (a
	// healthy shard, or a write acknowledged after the kill) fails the test.
	var mismatches []string
	for _, w := range load.workers {
		mismatches = append(mismatches, w.mismatches...)
	}
	acked := load.acked()
	lostKeys := faultReadBack(t, ctx, p.client(t, 2), acked)
	lostAllowed := 0
	var lostBad []string
	for _, l := range lostKeys {
		key, _, _ := strings.Cut(l, "=")
		if a := acked[key]; a.shard == victimShard && a.at.Before(killed) {
			lostAllowed++
			continue
		}
		lostBad = append(lostBad, l)
	}
	if len(lostBad) > 0 {
		t.Errorf("%d acknowledged writes lost that replication lag cannot explain: %s", len(lostBad), faultFirst(lostBad, 5))
	}
	if lostAllowed > victimWorkers {
		t.Errorf("%d writes acknowledged before the kill were lost, more than %d (one per worker of the killed shard)", lostAllowed, victimWorkers)
	}
	// A read that missed the value just written is only possible for such a
	// lost write.
	if len(mismatches) > lostAllowed {
		t.Errorf("%d reads did not return the value just written: %s", len(mismatches), faultFirst(mismatches, 5))
	}

	// Traffic after the restart: the killed shard served requests sent
	// after the proxy saw the rejoined node.
	afterRejoin := 0
	for _, o := range ops {
		if o.err == nil && o.shard == victimShard && o.start.After(restartAt.Add(inRouter)) {
			afterRejoin++
		}
	}
	if afterRejoin == 0 {
		t.Error("no request for the killed master's slots succeeded after the node rejoined")
	}

	t.Logf("FIGURES: kill-master requests=%d client_errors=%d failover=%v max_hold=%v "+
		"healthy_ok_before_clusterdown=%v/%v healthy_p99=%v healthy_max=%v direct_p99=%v clusterdown=%v healthy_held_max=%v "+
		"redirects_clusterdown=%d acked_writes=%d lost_acked_writes=%d rejoin_cluster=%v rejoin_proxy=%v restart_phase=%v test=%v",
		len(ops), len(bad), failover.Round(time.Millisecond), maxHold.Round(time.Millisecond),
		faultWithout(flowing, victimShard), flowingDur.Round(time.Millisecond), faultPct(flowingLats, 0.99).Round(time.Microsecond),
		flowingMax.Round(time.Microsecond), faultPct(directLats, 0.99).Round(time.Microsecond), downDur.Round(time.Millisecond),
		healthyMax.Round(time.Millisecond), obs.get("clusterdown"), len(acked), len(lostKeys),
		inCluster.Round(time.Millisecond), inRouter.Round(time.Millisecond), restartPhase.Round(time.Millisecond),
		time.Since(began).Round(time.Second))
}

// faultWithout returns counts without the one at index skip.
func faultWithout(counts []int, skip int) []int {
	var out []int
	for i, n := range counts {
		if i != skip {
			out = append(out, n)
		}
	}
	return out
}

// TestNodeNeverAnswers stops a master with SIGSTOP: its port still accepts
// connections but nothing answers. Requests for its slots must fail with the
// proxy's timeout error within about ReadTimeout while the other masters
// keep serving; after SIGCONT (before the cluster would fail it over) the
// shard serves again through a new connection.
func TestNodeNeverAnswers(t *testing.T) {
	const (
		readTimeout = time.Second
		stallFor    = 4 * time.Second
		// The cluster would fail the stopped master over after its node
		// timeout; deploy/redis.conf has 5 s, close to stallFor on a loaded
		// machine, so this cluster gets 15 s: the test is about the proxy
		// facing a silent node, not about a failover.
		nodeTimeout  = 15 * time.Second
		workers      = 6
		timeoutBound = readTimeout + time.Second // watchdog tick is ReadTimeout/10; leave margin for a loaded machine
	)
	began := time.Now()
	cl := testcluster.StartWith(t, localcluster.Options{
		ExtraArgs: []string{"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout / time.Millisecond))},
	})
	ctx := t.Context()
	p := startProxy(t, cl, proxy.Config{}, router.Options{ReadTimeout: readTimeout})
	shards := p.Router.Shards()
	owner := faultSlotShards(t, shards)
	const stalledShard = 2
	stalled := shards[stalledShard].Master.Addr
	pid := cl.Node(stalled).PID()
	if pid == 0 {
		t.Fatalf("%s is not running", stalled)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) // before the cluster's own cleanup

	// Two workers per shard, each on keys of its own shard only: SET then
	// GET whatever the SET's outcome. Both are commands the router resends
	// after a broken connection (a read, a plain overwrite); a timeout must
	// still end them.
	load := startFaultLoad(t, p, workers, func(w *faultWorker) {
		shard := w.g % len(shards)
		var keys []string
		for j := 0; len(keys) < 50; j++ {
			k := "fault-stall-" + strconv.Itoa(w.g) + "-" + strconv.Itoa(j)
			if owner[router.Slot([]byte(k))] == shard {
				keys = append(keys, k)
			}
		}
		for i := 0; !w.stopped(); i++ {
			key, val := keys[i%len(keys)], strconv.Itoa(i)
			if _, err := w.do(shard, "set", func() error { return w.c.Set(ctx, key, val, 0).Err() }); err == nil {
				w.acked[key] = faultAck{val: val, at: time.Now(), shard: shard}
			} else {
				delete(w.acked, key)
			}
			// A SET that timed out may still be applied when the node
			// resumes (it was in the node's socket buffer): the value read
			// is not checked here, only the read's outcome.
			_, _ = w.do(shard, "get", func() error { return w.c.Get(ctx, key).Err() })
		}
	})

	time.Sleep(time.Second)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	time.Sleep(stallFor)
	// Read the clock before SIGCONT: the node resumes at once and may answer
	// before this goroutine runs again, so a later reading could count
	// replies given after the stall as given during it.
	contAt := time.Now()
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Run until requests sent after SIGCONT, and after a full ReadTimeout
	// past it (no connection of the stall left), have succeeded for a while.
	time.Sleep(readTimeout + 1500*time.Millisecond)
	load.stop()

	masters, err := cl.MasterAddrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(masters, stalled) {
		t.Fatalf("the cluster failed %s over during the stall (masters %v): the test's premise is broken", stalled, masters)
	}

	var bad, slow []string
	var timeouts, stalledOK, stalledAfter, healthyOK int
	var timeoutLats, healthyLats []time.Duration
	var timeoutMax, healthyMax, stalledMax time.Duration
	total := 0
	for _, o := range load.ops() {
		total++
		at := o.start.Sub(stopAt).Round(time.Millisecond)
		if o.shard != stalledShard {
			if o.err != nil {
				bad = append(bad, fmt.Sprintf("%s on healthy shard %d at stop%+v: %v", o.op, o.shard, at, o.err))
				continue
			}
			if !o.start.Before(stopAt) && o.end.Before(contAt) {
				healthyOK++
				healthyLats = append(healthyLats, o.lat())
				healthyMax = max(healthyMax, o.lat())
			}
			continue
		}
		// The stalled shard: nothing may wait much longer than ReadTimeout,
		// and every failure must be the proxy's timeout error.
		stalledMax = max(stalledMax, o.lat())
		if o.lat() > timeoutBound {
			slow = append(slow, fmt.Sprintf("%s at stop%+v took %v (%v)", o.op, at, o.lat().Round(time.Millisecond), o.err))
		}
		if o.err != nil {
			if !strings.Contains(o.err.Error(), "did not answer in time") {
				bad = append(bad, fmt.Sprintf("%s on the stalled shard at stop%+v: %v", o.op, at, o.err))
				continue
			}
			timeouts++
			timeoutLats = append(timeoutLats, o.lat())
			timeoutMax = max(timeoutMax, o.lat())
			if o.start.After(contAt.Add(readTimeout + 200*time.Millisecond)) {
				bad = append(bad, fmt.Sprintf("%s at stop%+v timed out after SIGCONT", o.op, at))
			}
			continue
		}
		if o.start.After(stopAt) && o.end.Before(contAt) {
			bad = append(bad, fmt.Sprintf("%s at stop%+v succeeded while the node was stopped", o.op, at))
		}
		if o.start.After(contAt) {
			stalledAfter++
		}
		stalledOK++
	}
	if len(bad) > 0 {
		t.Errorf("%d unexpected outcomes: %s", len(bad), faultFirst(bad, 5))
	}
	if len(slow) > 0 {
		t.Errorf("%d requests for the stopped node's slots waited longer than %v: %s", len(slow), timeoutBound, faultFirst(slow, 5))
	}
	// Each worker of the stalled shard fails about once per ReadTimeout of
	// the stall (scheduling delays allowed for).
	if want := workers / len(shards) * (int(stallFor/readTimeout) - 2); timeouts < want {
		t.Errorf("%d timeout errors during a %v stall with ReadTimeout %v, want at least %d", timeouts, stallFor, readTimeout, want)
	}
	// A request that joined a stalled connection late fails with it, before
	// its own ReadTimeout; the typical one waits ReadTimeout, no less.
	if p50 := faultPct(timeoutLats, 0.5); len(timeoutLats) > 0 && (p50 < readTimeout*8/10 || p50 > timeoutBound) {
		t.Errorf("median time to the timeout error %v, want about ReadTimeout %v", p50, readTimeout)
	}
	if stalledAfter == 0 {
		t.Error("no request for the stopped node's slots succeeded after SIGCONT")
	}
	if want := int(50 * stallFor.Seconds()); healthyOK < want {
		t.Errorf("healthy shards served %d requests during the %v stall, want at least %d", healthyOK, stallFor, want)
	}
	healthyP99 := faultPct(healthyLats, 0.99)
	if healthyMax > 500*time.Millisecond {
		t.Errorf("a request to a healthy shard took %v during the stall", healthyMax)
	}
	// A SET that timed out may still be applied when the node resumes, so
	// only the keys whose last write was acknowledged after SIGCONT are
	// checked.
	acked := map[string]faultAck{}
	for k, a := range load.acked() {
		if a.at.After(contAt) {
			acked[k] = a
		}
	}
	lost := faultReadBack(t, ctx, p.client(t, 2), acked)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes not read back: %s", len(lost), faultFirst(lost, 5))
	}

	t.Logf("FIGURES: node-never-answers read_timeout=%v stall=%v requests=%d timeouts=%d timeout_p50=%v timeout_max=%v stalled_shard_max=%v stalled_ok=%d ok_after_cont=%d healthy_ok_during_stall=%d healthy_p99=%v healthy_max=%v test=%v",
		readTimeout, stallFor, total, timeouts, faultPct(timeoutLats, 0.5).Round(time.Millisecond), timeoutMax.Round(time.Millisecond), stalledMax.Round(time.Millisecond),
		stalledOK, stalledAfter, healthyOK, healthyP99.Round(time.Microsecond), healthyMax.Round(time.Microsecond), time.Since(began).Round(time.Second))
}

// faultRedirects counts router redirections by kind.
type faultRedirects struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *faultRedirects) Redirected(kind string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[kind]++
}

func (o *faultRedirects) TopologyRefreshed(string, int, error) {}

func (o *faultRedirects) get(kind string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[kind]
}

// TestReshardUnderLoad moves 300 non-empty slots from one master to another
// with redis-cli --cluster reshard while eight clients run SET/GET and
// MSET/MGET (same-slot and cross-slot) on keys in and out of those slots.
func TestReshardUnderLoad(t *testing.T) {
	const (
		workers     = 8
		moveSlots   = 300
		fillPerSlot = 25 // > redis-cli's 10 keys per MIGRATE: slots move in several steps
		pairFill    = 600
		pairsEach   = 2
	)
	began := time.Now()
	cl := testcluster.Start(t)
	ctx := t.Context()
	obs := &faultRedirects{}
	p := startProxy(t, cl, proxy.Config{}, router.Options{Observer: obs})
	shards := p.Router.Shards()
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3", len(shards))
	}
	src, dst := shards[0].Master.Addr, shards[1].Master.Addr
	// redis-cli takes the source's lowest slots.
	var moving []int
	for _, r := range shards[0].Slots {
		for s := r[0]; s <= r[1] && len(moving) < moveSlots; s++ {
			moving = append(moving, s)
		}
	}
	isMoving := map[int]bool{}
	for _, s := range moving {
		isMoving[s] = true
	}
	var staying []int // a spread of slots on every master, none moving
	for s := 7; s < router.SlotCount; s += 211 {
		if !isMoving[s] {
			staying = append(staying, s)
		}
	}

	// Each worker's same-slot pairs live in moving slots that hold more
	// keys (60 MIGRATE steps of redis-cli), created in the order pair key
	// A, half the fill, pair key B, the other half: GETKEYSINSLOT lists a
	// slot's newest keys first, so B moves about thirty steps before A. A pair
	// command meanwhile finds its keys split between the two masters: ASK
	// from the source, then TRYAGAIN from the target.
	pairKeys := make([][][2]string, workers)
	isPairSlot := map[int]bool{}
	for g := range workers {
		for i := range pairsEach {
			s := moving[(g*41+i*73+5)%len(moving)]
			pre := "fault-reshard-" + strconv.Itoa(g) + "-"
			pairKeys[g] = append(pairKeys[g], [2]string{faultKeyInSlot(s, pre+"pa"+strconv.Itoa(i)), faultKeyInSlot(s, pre+"pb"+strconv.Itoa(i))})
			isPairSlot[s] = true
		}
	}
	// Pre-fill the moving slots so that redis-cli moves keys, not empty slots.
	c := p.client(t, 2)
	fill := map[string]faultAck{}
	var fill1, fill2, pairA, pairB []string
	for _, s := range moving {
		n := fillPerSlot
		if isPairSlot[s] {
			n = pairFill
		}
		for i := range n {
			k := faultKeyInSlot(s, "fault-reshard-fill-"+strconv.Itoa(i))
			fill[k] = faultAck{val: strconv.Itoa(s*1000 + i)}
			if i < n/2 {
				fill1 = append(fill1, k)
			} else {
				fill2 = append(fill2, k)
			}
		}
	}
	for _, ps := range pairKeys {
		for _, pr := range ps {
			pairA, pairB = append(pairA, pr[0]), append(pairB, pr[1])
		}
	}
	for _, keys := range [][]string{pairA, fill1, pairB, fill2} {
		for len(keys) > 0 {
			batch := keys[:min(len(keys), 1000)]
			keys = keys[len(batch):]
			if _, err := c.Pipelined(ctx, func(pl redis.Pipeliner) error {
				for _, k := range batch {
					v := "init"
					if a, ok := fill[k]; ok {
						v = a.val
					}
					pl.Set(ctx, k, v, 0)
				}
				return nil
			}); err != nil {
				t.Fatalf("pre-fill: %v", err)
			}
		}
	}

	// Each worker: 16 keys in moving slots and 8 in staying ones, 4
	// same-slot pairs in moving slots. Per round: SET+GET of one key, then
	// MSET+MGET of a pair (two rounds in three) or of 4 keys over several
	// slots (split by the proxy).
	load := startFaultLoad(t, p, workers, func(w *faultWorker) {
		pre := "fault-reshard-" + strconv.Itoa(w.g) + "-"
		var keys []string
		for i := range 16 {
			keys = append(keys, faultKeyInSlot(moving[(w.g*37+i*19)%len(moving)], pre+strconv.Itoa(i)))
		}
		for i := range 8 {
			keys = append(keys, faultKeyInSlot(staying[(w.g*5+i*11)%len(staying)], pre+"s"+strconv.Itoa(i)))
		}
		pairs := pairKeys[w.g]
		check := func(op string, ks []string, vals []any, val string) {
			for i, v := range vals {
				if s, _ := v.(string); s != val {
					w.mismatches = append(w.mismatches, fmt.Sprintf("%s %s=%v, want %q", op, ks[i], v, val))
				}
			}
		}
		for i := 0; !w.stopped(); i++ {
			val := strconv.Itoa(w.g) + "-" + strconv.Itoa(i)
			key := keys[i%len(keys)]
			if _, err := w.do(-1, "set", func() error { return w.c.Set(ctx, key, val, 0).Err() }); err != nil {
				delete(w.acked, key)
				continue
			}
			w.acked[key] = faultAck{val: val, at: time.Now()}
			var got string
			if o, err := w.do(-1, "get", func() (err error) { got, err = w.c.Get(ctx, key).Result(); return err }); o.err == nil && (err != nil || got != val) {
				w.mismatches = append(w.mismatches, fmt.Sprintf("GET %s=%q (%v), want %q", key, got, err, val))
			}
			var ks []string
			if i%3 == 2 {
				ks = []string{keys[(i+1)%len(keys)], keys[(i+5)%len(keys)], keys[(i+9)%len(keys)], keys[(i+18)%len(keys)]}
			} else {
				pr := pairs[i%len(pairs)]
				ks = pr[:]
			}
			kv := make([]any, 0, 2*len(ks))
			for _, k := range ks {
				kv = append(kv, k, val)
			}
			if _, err := w.do(-1, "mset", func() error { return w.c.MSet(ctx, kv...).Err() }); err != nil {
				for _, k := range ks {
					delete(w.acked, k)
				}
				continue
			}
			for _, k := range ks {
				w.acked[k] = faultAck{val: val, at: time.Now()}
			}
			var vals []any
			if o, _ := w.do(-1, "mget", func() (err error) { vals, err = w.c.MGet(ctx, ks...).Result(); return err }); o.err == nil {
				check("MGET", ks, vals, val)
			}
		}
	})

	time.Sleep(time.Second)
	srcID, err := faultNodeID(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := faultNodeID(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	reshardAt := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	out, err := exec.CommandContext(cctx, "redis-cli", "--cluster", "reshard", src,
		"--cluster-from", srcID, "--cluster-to", dstID, "--cluster-slots", strconv.Itoa(moveSlots), "--cluster-yes").CombinedOutput()
	cancel()
	reshardDur := time.Since(reshardAt)
	if err != nil {
		load.stop()
		t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
	time.Sleep(time.Second)
	load.stop()

	// Every moving slot is the target's now, for the cluster and the proxy.
	for _, s := range []int{moving[0], moving[len(moving)/2], moving[len(moving)-1]} {
		if o, err := cl.SlotOwner(ctx, s); err != nil || o != dst {
			t.Fatalf("slot %d owned by %s (%v), want %s; redis-cli output:\n%s", s, o, err, dst, out)
		}
	}
	for s := range router.SlotCount {
		want := shards[faultOwner(shards, s)].Master.Addr
		if isMoving[s] {
			want = dst
		}
		if got := p.Router.MasterOf(s); got != want {
			t.Fatalf("proxy routes slot %d to %s, want %s", s, got, want)
		}
	}

	var bad []string
	var lats []time.Duration
	total, during := 0, 0
	for _, o := range load.ops() {
		total++
		if o.err != nil {
			bad = append(bad, fmt.Sprintf("%s at reshard%+v: %v", o.op, o.start.Sub(reshardAt).Round(time.Millisecond), o.err))
			continue
		}
		if !o.start.Before(reshardAt) && o.end.Before(reshardAt.Add(reshardDur)) {
			during++
			lats = append(lats, o.lat())
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d client-visible errors: %s", len(bad), faultFirst(bad, 5))
	}
	var mismatches []string
	for _, w := range load.workers {
		mismatches = append(mismatches, w.mismatches...)
	}
	if len(mismatches) > 0 {
		t.Errorf("%d reads did not return the value just written: %s", len(mismatches), faultFirst(mismatches, 5))
	}
	acked := load.acked()
	for k, a := range fill {
		acked[k] = a
	}
	lost := faultReadBack(t, ctx, c, acked)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes not read back with their last value: %s", len(lost), faultFirst(lost, 5))
	}
	if during == 0 {
		t.Error("no request completed during the reshard")
	}
	ask, tryagain, moved := obs.get("ask"), obs.get("tryagain"), obs.get("moved")
	if ask == 0 || moved == 0 || tryagain == 0 {
		t.Errorf("redirections: ask=%d tryagain=%d moved=%d; the load did not exercise the migration", ask, tryagain, moved)
	}
	maxLat := time.Duration(0)
	if len(lats) > 0 {
		maxLat = slices.Max(lats)
	}
	t.Logf("FIGURES: reshard slots=%d keys_in_slots=%d reshard_time=%v requests=%d during_reshard=%d client_errors=%d p50=%v p99=%v max=%v ask=%d tryagain=%d moved=%d acked_keys=%d lost=%d test=%v",
		moveSlots, len(fill), reshardDur.Round(time.Millisecond), total, during, len(bad),
		faultPct(lats, 0.5).Round(time.Microsecond), faultPct(lats, 0.99).Round(time.Microsecond), maxLat.Round(time.Microsecond),
		ask, tryagain, moved, len(acked), len(lost), time.Since(began).Round(time.Second))
}

// faultOwner returns the index of the shard serving slot in shards.
func faultOwner(shards []router.Shard, slot int) int {
	for i, sh := range shards {
		for _, r := range sh.Slots {
			if slot >= r[0] && slot <= r[1] {
				return i
			}
		}
	}
	return -1
}

// faultNodeID returns the cluster node id of the node at addr.
func faultNodeID(ctx context.Context, addr string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	id, err := c.ClusterMyID(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("cluster myid of %s: %w", addr, err)
	}
	return id, nil
}
