package proxy_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// getCalls returns, by node address, the GET and MGET calls each node of
// the cluster has served (INFO commandstats).
func getCalls(t *testing.T, cl *localcluster.Cluster) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, addr := range cl.Addrs() {
		n := redis.NewClient(&redis.Options{Addr: addr, Password: cl.Password()})
		info, err := n.Info(context.Background(), "commandstats").Result()
		n.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			for _, cmd := range []string{"cmdstat_get:calls=", "cmdstat_mget:calls="} {
				if v, ok := strings.CutPrefix(line, cmd); ok {
					calls, _ := strconv.Atoi(v[:strings.IndexByte(v, ',')])
					out[addr] += calls
				}
			}
		}
	}
	return out
}

// TestReadFromReplica: with ReadPreferReplica, reads (GET in RESP2 and
// RESP3, split MGET) are served by the replicas of every shard and writes
// by the masters; the
// reads of a client with CLIENT TRACKING on stay on the masters, whose
// changes its invalidations follow.
func TestReadFromReplica(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{}, router.Options{ReadFrom: router.ReadPreferReplica})
	c := p.client(t, 2)
	keys := keysOnEveryMaster(t, p, "rr", 30)
	for _, k := range keys {
		if err := c.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Replication is asynchronous: wait until every replica has the keys.
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range keys {
		for {
			v, err := c.Get(ctx, k).Result()
			if err == nil && v == "v-"+k {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %q, %v, want v-%s", k, v, err, k)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	masters := map[string]bool{}
	for _, m := range p.Router.Masters() {
		masters[m] = true
	}
	before := getCalls(t, shared)
	const rounds = 10
	c3 := p.client(t, 3) // RESP3 reads go over their own node connections
	for r := range rounds {
		cl := c
		if r%2 == 1 {
			cl = c3
		}
		for _, k := range keys {
			if v, err := cl.Get(ctx, k).Result(); err != nil || v != "v-"+k {
				t.Fatalf("GET %s (RESP%d): %q, %v", k, 2+r%2, v, err)
			}
		}
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil || vals[0] != "v-"+keys[0] || vals[len(keys)-1] != "v-"+keys[len(keys)-1] {
		t.Fatalf("MGET: %v, %v", vals, err)
	}
	after := getCalls(t, shared)
	replicaReads := 0
	for addr, n := range after {
		d := n - before[addr]
		if masters[addr] {
			if d != 0 {
				t.Errorf("master %s served %d reads, want none", addr, d)
			}
			continue
		}
		if d == 0 {
			t.Errorf("replica %s served no read", addr)
		}
		replicaReads += d
	}
	if want := rounds*len(keys) + 3; replicaReads < want { // MGET: one part per master at least
		t.Errorf("replicas served %d reads, want at least %d", replicaReads, want)
	}

	// A caching client reads from the masters.
	trk := dialFrames(t, p.Addr, 3)
	trk.send(t, []string{"CLIENT", "TRACKING", "ON"}, []string{"GET", keys[0]})
	trk.nextFrame(t)
	if got := trk.nextFrame(t); got != "v-"+keys[0] {
		t.Fatalf("tracking GET: %q", got)
	}
	last := getCalls(t, shared)
	master := p.Router.MasterOf(router.Slot([]byte(keys[0])))
	if d := last[master] - after[master]; d != 1 {
		t.Errorf("the tracking client's GET reached its master %d times, want 1", d)
	}
}

// TestReadFromReplicaFallback: a read whose replica was killed is answered
// by the master, without an error, until the cluster and the proxy see the
// replica gone.
func TestReadFromReplicaFallback(t *testing.T) {
	ctx := context.Background()
	cl := testcluster.Start(t)
	p := startProxy(t, cl, proxy.Config{}, router.Options{ReadFrom: router.ReadPreferReplica, RefreshInterval: time.Second})
	c := p.client(t, 2)
	key := "rr-fallback"
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	master := p.Router.MasterOf(router.Slot([]byte(key)))
	replicas, err := cl.ReplicasOf(ctx, master)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, %v", master, replicas, err)
	}
	if err := c.Wait(ctx, 1, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.KillNode(replicas[0]); err != nil {
		t.Fatal(err)
	}
	reads := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); reads++ {
		if v, err := c.Get(ctx, key).Result(); err != nil || v != "v" {
			t.Fatalf("GET after %d reads with the replica killed: %q, %v", reads, v, err)
		}
	}
	t.Logf("%d reads answered while the replica was down", reads)
}

// TestReadFromPreferMaster: with -read-from prefer-master, reads go to the
// masters, and when a master is killed its shard's reads are answered by
// its replica at once, while the cluster has not yet failed it over.
func TestReadFromPreferMaster(t *testing.T) {
	ctx := context.Background()
	cl := testcluster.Start(t)
	p := startProxy(t, cl, proxy.Config{}, router.Options{ReadFrom: router.ReadPreferMaster})
	c := p.client(t, 2)
	const key = "pm-read"
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, 1, time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	master := p.Router.MasterOf(router.Slot([]byte(key)))
	replicas, err := cl.ReplicasOf(ctx, master)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, %v", master, replicas, err)
	}
	replicaGets := func() int {
		n := redis.NewClient(&redis.Options{Addr: replicas[0], Password: cl.Password()})
		defer n.Close()
		info, err := n.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_get:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	// While the master is up, it serves the reads.
	before := replicaGets()
	for range 50 {
		if err := c.Get(ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n := replicaGets() - before; n != 0 {
		t.Fatalf("the replica served %d reads while its master was up", n)
	}

	if err := cl.KillNode(master); err != nil {
		t.Fatal(err)
	}
	before = replicaGets()
	reads := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); reads++ {
		if v, err := c.Get(ctx, key).Result(); err != nil || v != "v" {
			t.Fatalf("GET after %d reads with the master killed: %q, %v", reads, v, err)
		}
	}
	served := replicaGets() - before
	if served < reads {
		t.Fatalf("the replica served %d of the %d reads made with its master down", served, reads)
	}
	// The cluster takes longer than that to fail the master over.
	if now := p.Router.MasterOf(router.Slot([]byte(key))); now != master {
		t.Fatalf("the cluster failed over to %s within the reads: the replica may have answered as a master", now)
	}
	t.Logf("%d reads answered by the replica while the master was down", reads)
}
