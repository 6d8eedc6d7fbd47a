package localcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testLogger logs to the test output when -v is given.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func clusterClient(t *testing.T, c *Cluster) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:           c.Addrs(),
		Password:        c.Password(),
		DisableIdentity: true,
	})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// processGone reports whether pid and its process group no longer exist.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) && errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH)
}

// TestCluster runs the scenarios that mutate a cluster one after the other on
// a single six-node cluster, to keep the package fast.
func TestCluster(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	began := time.Now()
	c, err := Start(ctx, Options{Dir: t.TempDir(), Password: "s3cret", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("six-node cluster with password formed in %v", time.Since(began))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	cc := clusterClient(t, c)

	t.Run("topology", func(t *testing.T) {
		if got := len(c.Nodes()); got != 6 {
			t.Fatalf("%d nodes, want 6", got)
		}
		masters, err := c.MasterAddrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.Addrs()[:3]; !slices.Equal(masters, want) {
			t.Fatalf("masters %v, want %v", masters, want)
		}
		for i, m := range masters {
			replicas, err := c.ReplicasOf(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{c.Addrs()[3+i]}; !slices.Equal(replicas, want) {
				t.Fatalf("replicas of %s: %v, want %v", m, replicas, want)
			}
		}
		for slot, want := range map[int]string{0: masters[0], 5460: masters[0], 5461: masters[1], 10922: masters[1], 10923: masters[2], 16383: masters[2]} {
			got, err := c.SlotOwner(ctx, slot)
			if err != nil || got != want {
				t.Fatalf("SlotOwner(%d) = %q, %v; want %q", slot, got, err, want)
			}
		}
		slots, err := cc.ClusterShards(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		covered := 0
		for _, s := range slots {
			for _, r := range s.Slots {
				covered += int(r.End - r.Start + 1)
			}
		}
		if covered != SlotCount {
			t.Fatalf("%d slots covered, want %d", covered, SlotCount)
		}
		for i := range 20 {
			key := fmt.Sprintf("key-%d", i)
			if err := cc.Set(ctx, key, i, 0).Err(); err != nil {
				t.Fatal(err)
			}
			if got, err := cc.Get(ctx, key).Int(); err != nil || got != i {
				t.Fatalf("GET %s = %d, %v", key, got, err)
			}
		}
	})

	t.Run("migrate slot", func(t *testing.T) {
		slot, err := cc.ClusterKeySlot(ctx, "{mig}a").Result()
		if err != nil {
			t.Fatal(err)
		}
		from, err := c.SlotOwner(ctx, int(slot))
		if err != nil {
			t.Fatal(err)
		}
		masters, _ := c.MasterAddrs(ctx)
		to := masters[0]
		if to == from {
			to = masters[1]
		}
		keys := []string{"{mig}a", "{mig}b", "{mig}c", "{mig}d", "{mig}e"}
		for _, k := range keys {
			if err := cc.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		began := time.Now()
		if err := c.BeginMigration(ctx, int(slot), from, to); err != nil {
			t.Fatal(err)
		}
		moved, err := c.MigrateKeys(ctx, int(slot), from, to, 2)
		if err != nil || moved != len(keys) {
			t.Fatalf("MigrateKeys = %d, %v; want %d", moved, err, len(keys))
		}
		if err := c.FinishMigration(ctx, int(slot), from, to); err != nil {
			t.Fatal(err)
		}
		t.Logf("slot %d moved from %s to %s in %v", slot, from, to, time.Since(began))
		if got, err := c.SlotOwner(ctx, int(slot)); err != nil || got != to {
			t.Fatalf("SlotOwner = %q, %v; want %q", got, err, to)
		}
		for _, k := range keys {
			if got, err := cc.Get(ctx, k).Result(); err != nil || got != "v-"+k {
				t.Fatalf("GET %s = %q, %v", k, got, err)
			}
		}
		// And back in one call.
		if err := c.MigrateSlot(ctx, int(slot), to, from); err != nil {
			t.Fatal(err)
		}
		if got, err := c.SlotOwner(ctx, int(slot)); err != nil || got != from {
			t.Fatalf("SlotOwner = %q, %v; want %q", got, err, from)
		}
	})

	t.Run("failover", func(t *testing.T) {
		old := c.Addrs()[0]
		replicas, err := c.ReplicasOf(ctx, old)
		if err != nil || len(replicas) != 1 {
			t.Fatalf("ReplicasOf = %v, %v", replicas, err)
		}
		began := time.Now()
		newMaster, err := c.Failover(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("failover %s -> %s in %v", old, newMaster, time.Since(began))
		if newMaster != replicas[0] {
			t.Fatalf("new master %s, want %s", newMaster, replicas[0])
		}
		for _, slot := range []int{0, 5460} {
			if got, err := c.SlotOwner(ctx, slot); err != nil || got != newMaster {
				t.Fatalf("SlotOwner(%d) = %q, %v; want %q", slot, got, err, newMaster)
			}
		}
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		masters, _ := c.MasterAddrs(ctx)
		if slices.Contains(masters, old) || !slices.Contains(masters, newMaster) {
			t.Fatalf("masters %v after failover of %s to %s", masters, old, newMaster)
		}
		if got, err := c.ReplicasOf(ctx, newMaster); err != nil || !slices.Equal(got, []string{old}) {
			t.Fatalf("replicas of new master = %v, %v; want [%s]", got, err, old)
		}
		if got, err := cc.Get(ctx, "key-1").Int(); err != nil || got != 1 {
			t.Fatalf("GET key-1 after failover = %d, %v", got, err)
		}
	})

	t.Run("kill and restart", func(t *testing.T) {
		masters, err := c.MasterAddrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range []string{c.Addrs()[0], masters[1]} { // a replica (after the failover), a master
			n := c.Node(addr)
			pid := n.PID()
			if err := c.KillNode(addr); err != nil {
				t.Fatal(err)
			}
			if n.Running() || !processGone(pid) {
				t.Fatalf("%s still running after KillNode", addr)
			}
			if err := c.KillNode(addr); err == nil {
				t.Fatal("second KillNode did not fail")
			}
			began := time.Now()
			if err := c.RestartNode(ctx, addr); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s restarted and rejoined in %v", addr, time.Since(began))
			if !n.Running() || n.PID() == pid {
				t.Fatalf("%s not restarted", addr)
			}
		}
		masters2, err := c.MasterAddrs(ctx)
		if err != nil || !slices.Equal(masters, masters2) {
			t.Fatalf("masters %v, %v after restarts; want %v", masters2, err, masters)
		}
		if got, err := cc.Get(ctx, "key-2").Int(); err != nil || got != 2 {
			t.Fatalf("GET key-2 after restarts = %d, %v", got, err)
		}
	})

	t.Run("forced failover of a killed master", func(t *testing.T) {
		old, err := c.SlotOwner(ctx, 16383)
		if err != nil {
			t.Fatal(err)
		}
		replicas, err := c.ReplicasOf(ctx, old)
		if err != nil || len(replicas) != 1 {
			t.Fatalf("ReplicasOf = %v, %v", replicas, err)
		}
		if err := c.KillNode(old); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		newMaster, err := c.Failover(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("forced failover %s -> %s in %v", old, newMaster, time.Since(began))
		if newMaster != replicas[0] {
			t.Fatalf("new master %s, want %s", newMaster, replicas[0])
		}
		if got, err := c.SlotOwner(ctx, 16383); err != nil || got != newMaster {
			t.Fatalf("SlotOwner(16383) = %q, %v; want %q", got, err, newMaster)
		}
		began = time.Now()
		if err := c.RestartNode(ctx, old); err != nil {
			t.Fatal(err)
		}
		t.Logf("old master %s rejoined in %v", old, time.Since(began))
		if got, err := c.ReplicasOf(ctx, newMaster); err != nil || !slices.Equal(got, []string{old}) {
			t.Fatalf("replicas of new master = %v, %v; want [%s]", got, err, old)
		}
	})

	t.Run("stop", func(t *testing.T) {
		var pids []int
		for _, n := range c.Nodes() {
			if pid := n.PID(); pid != 0 {
				pids = append(pids, pid)
			}
		}
		if len(pids) != 6 {
			t.Fatalf("%d running nodes, want 6", len(pids))
		}
		began := time.Now()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped = true
		t.Logf("stopped in %v", time.Since(began))
		for _, pid := range pids {
			if !processGone(pid) {
				t.Errorf("process %d still exists after Stop", pid)
			}
		}
		if err := c.Stop(); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
		if _, err := c.MasterAddrs(ctx); err == nil {
			t.Fatal("MasterAddrs on a stopped cluster did not fail")
		}
	})
}

func TestReuse(t *testing.T) {
	ctx := ctxFor(t, 90*time.Second)
	ports, err := pickPorts(DefaultHost, 3)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Dir:               filepath.Join(t.TempDir(), "dev-cluster"),
		Ports:             ports,
		ReplicasPerMaster: NoReplicas,
		Reuse:             true,
		Logger:            testLogger(t),
	}
	myID := func(c *Cluster) string {
		t.Helper()
		cl, err := c.client(c.Addrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		id, err := cl.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	id := myID(c)
	if err := clusterClient(t, c).Set(ctx, "persisted", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	c, err = Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	t.Logf("reused in %v", time.Since(began))
	if got := myID(c); got != id {
		t.Fatalf("node id %s after reuse, want %s: the cluster was formed anew", got, id)
	}
	if got, err := clusterClient(t, c).Get(ctx, "persisted").Result(); err != nil || got != "yes" {
		t.Fatalf("GET persisted after reuse = %q, %v", got, err)
	}

	// A second launcher on the same ports must say that a redis runs there.
	if _, err := Start(ctx, opts); err == nil || !strings.Contains(err.Error(), "running redis-server") {
		t.Fatalf("Start on busy ports: %v, want an error naming a running redis-server", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	// Inconsistent dirs: wiped and formed anew.
	if err := os.Remove(filepath.Join(c.Nodes()[1].Dir, "nodes.conf")); err != nil {
		t.Fatal(err)
	}
	c, err = Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if got := myID(c); got == id {
		t.Fatal("node id unchanged: partial node dirs were reused")
	}
	if n, err := clusterClient(t, c).Exists(ctx, "persisted").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS persisted after re-forming = %d, %v; want 0", n, err)
	}
}

func TestMissingRedisServer(t *testing.T) {
	_, err := Start(t.Context(), Options{Dir: t.TempDir(), RedisServer: "/nonexistent/redis-server"})
	if !errors.Is(err, ErrRedisServerNotFound) || !strings.Contains(err.Error(), "redis-server package") {
		t.Fatalf("err = %v, want ErrRedisServerNotFound naming the package", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{}, "Dir is required"},
		{"port count", Options{Dir: "x", Ports: []int{7001, 7002}}, "want 6"},
		{"bus collision", Options{Dir: "x", Masters: 2, ReplicasPerMaster: NoReplicas, Ports: []int{7001, 17001}}, "collides"},
		{"bus too high", Options{Dir: "x", Masters: 1, ReplicasPerMaster: NoReplicas, Ports: []int{60000}}, "bus uses"},
		{"reuse without ports", Options{Dir: "x", Reuse: true}, "requires fixed"},
		{"host", Options{Dir: "x", Host: "localhost"}, "not an IP"},
	} {
		if _, err := tc.opts.normalize(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	o, err := Options{Dir: "x"}.normalize()
	if err != nil || o.Masters != 3 || o.ReplicasPerMaster != 1 || o.nodeCount() != 6 || o.Host != "127.0.0.1" {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

func TestSlotRange(t *testing.T) {
	for m, want := range map[int][][2]int{
		1: {{0, 16383}},
		3: {{0, 5460}, {5461, 10922}, {10923, 16383}},
		4: {{0, 4095}, {4096, 8191}, {8192, 12287}, {12288, 16383}},
	} {
		for i, w := range want {
			if lo, hi := slotRange(i, m); lo != w[0] || hi != w[1] {
				t.Errorf("slotRange(%d, %d) = %d-%d, want %d-%d", i, m, lo, hi, w[0], w[1])
			}
		}
	}
}

func TestParseClusterNodes(t *testing.T) {
	const text = `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922 [42->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@40001 myself,master - 0 0 1 connected 0-5460 11000
vars currentEpoch 6 lastVoteEpoch 0
`
	entries, err := parseClusterNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d entries", len(entries))
	}
	if e := entries[0]; e.port != 30004 || !e.has("slave") || e.masterID != entries[2].id || !e.connected {
		t.Errorf("replica entry %+v", e)
	}
	if e := entries[2]; e.port != 30001 || !e.has("myself") || !slices.Equal(e.slots, [][2]int{{0, 5460}, {11000, 11000}}) {
		t.Errorf("myself entry %+v", e)
	}
	own := owners(entries)
	if own[0] != 30001 || own[5461] != 30002 || own[11000] != 30001 || own[11001] != 0 {
		t.Errorf("owners wrong: %d %d %d %d", own[0], own[5461], own[11000], own[11001])
	}
	want := "00000-05460 30001 [30004]\n05461-10922 30002 []\n11000-11000 30001 [30004]\n"
	if got := signature(entries); got != want {
		t.Errorf("signature:\n%s\nwant\n%s", got, want)
	}
}

// TestPortTaken checks that a node which cannot bind its bus port is reported
// as errPortTaken (what makes Start retry on other ports) with its log tail,
// and that a busy fixed port is refused up front.
func TestPortTaken(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	ports, err := pickPorts(DefaultHost, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(DefaultHost, strconv.Itoa(ports[0]+busPortOffset)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	opts := Options{Dir: t.TempDir(), Ports: ports, Masters: 1, ReplicasPerMaster: NoReplicas}
	if _, err := Start(ctx, opts); err == nil || !strings.Contains(err.Error(), "cluster bus") {
		t.Fatalf("Start with a busy bus port: %v, want an error naming the cluster bus", err)
	}

	o, err := opts.normalize()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := lookRedisServer("")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{opts: o, bin: bin, log: slog.New(slog.DiscardHandler), clients: make(map[string]*redis.Client)}
	c.setNodes(ports)
	defer c.abort()
	err = c.startAll(ctx)
	if !errors.Is(err, errPortTaken) || !strings.Contains(err.Error(), "tail of") {
		t.Fatalf("startAll with a busy bus port: %v, want errPortTaken with the log tail", err)
	}
	if c.nodes[0].Running() {
		t.Fatal("node still running")
	}
}
