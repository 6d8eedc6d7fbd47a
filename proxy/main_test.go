package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// shared is the six-node cluster every non-mutating test in this package
// uses (distinct key prefixes per test). Tests that fail over or reshard
// start their own with testcluster.Start.
var shared *localcluster.Cluster

func TestMain(m *testing.M) {
	testcluster.Main(m, func(c *localcluster.Cluster) int {
		shared = c
		return m.Run()
	})
}

// testProxy is a proxy served in-process on a free loopback port.
type testProxy struct {
	Addr   string
	Router *router.Router
	Server *proxy.Server
}

func quietLogger() *slog.Logger {
	if os.Getenv("PROXY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startProxy starts a proxy in front of c, stopped at the end of the test.
func startProxy(tb testing.TB, c *localcluster.Cluster, cfg proxy.Config, ropts router.Options) *testProxy {
	tb.Helper()
	ropts.Seeds = c.Addrs()[:1]
	if ropts.Logger == nil {
		ropts.Logger = quietLogger()
	}
	rt, err := router.New(ropts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	cl, err := rt.Client()
	if err != nil {
		tb.Fatal(err)
	}
	table, err := command.Load(ctx, cl)
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	srv, err := proxy.New(cfg, rt, table)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
		rt.Close()
	})
	return &testProxy{Addr: ln.Addr().String(), Router: rt, Server: srv}
}

// client returns a plain (non-cluster) go-redis client for the proxy.
func (p *testProxy) client(tb testing.TB, protocol int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: p.Addr, Protocol: protocol, MaxRetries: -1,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	tb.Cleanup(func() { c.Close() })
	return c
}

// keysOnEveryMaster returns n keys with the prefix, at least one per master,
// checked against the router's live topology.
func keysOnEveryMaster(tb testing.TB, p *testProxy, prefix string, n int) []string {
	tb.Helper()
	keys := make([]string, n)
	owners := map[string]bool{}
	shards := p.Router.Shards()
	for i := range keys {
		keys[i] = prefix + ":" + strconv.Itoa(i)
		slot := router.Slot([]byte(keys[i]))
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if slot >= r[0] && slot <= r[1] {
					owners[sh.Master.Addr] = true
				}
			}
		}
	}
	if len(owners) != 3 {
		tb.Fatalf("keys %s:* land on %d masters, want 3", prefix, len(owners))
	}
	return keys
}

// gatewayEvents is a proxy.Observer that counts gateway events by
// "family/event" and ignores the rest.
type gatewayEvents struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *gatewayEvents) ClientConnected()                        {}
func (o *gatewayEvents) ClientDisconnected()                     {}
func (o *gatewayEvents) CommandDone(string, bool, time.Duration) {}
func (o *gatewayEvents) ProtocolError()                          {}
func (o *gatewayEvents) Unsupported(string)                      {}
func (o *gatewayEvents) AuthFailure()                            {}
func (o *gatewayEvents) SlowSubscriber()                         {}
func (o *gatewayEvents) GatewayEvent(family, event string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[family+"/"+event]++
}

// count returns how many "family/event" events were seen.
func (o *gatewayEvents) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[key]
}
