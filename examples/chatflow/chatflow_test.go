package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/cache"
	"github.com/clusterproxy/clusterproxy/contextstore"
	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/ratelimit"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// shared is the six-node cluster of the package's tests; each test uses its
// own tenant.
var shared *localcluster.Cluster

func TestMain(m *testing.M) {
	testcluster.Main(m, func(c *localcluster.Cluster) int {
		shared = c
		return m.Run()
	})
}

// startProxy serves a proxy in front of shared in-process and returns its
// address; it is stopped at the end of the test.
func startProxy(t *testing.T) string {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := router.New(router.Options{Seeds: shared.Addrs()[:1], Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := rt.Client()
	if err != nil {
		t.Fatal(err)
	}
	table, err := command.Load(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Config{Logger: quiet}, rt, table)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		rt.Close()
	})
	return ln.Addr().String()
}

func proxyClient(t *testing.T, addr string, protocol int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: protocol, DisableIdentity: true,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// chatter is ProxyFlow or PackageFlow.
type chatter interface {
	Chat(ctx context.Context, req Request) (Outcome, error)
}

// checkMissThenHit runs the flow twice for one prompt (a miss that fills,
// then a hit) and checks the outcomes, the tenant's limits, the cache and
// the conversation with the packages on cc.
func checkMissThenHit(t *testing.T, cc *redis.ClusterClient, cfg Config, first, second chatter) {
	ctx := context.Background()
	prompt := "What is Redis Cluster?"
	start := time.Now()

	miss, err := first.Chat(ctx, Request{ID: "req-1", Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	want := "You said: " + prompt
	if miss.Cache != "MISS" || miss.Answer != want {
		t.Fatalf("first request: %+v, want a MISS answering %q", miss, want)
	}
	estimate := cfg.Estimate(prompt)
	actual := CountTokens(prompt) + CountTokens(want) // empty history
	if miss.Estimate != estimate || miss.Actual != actual || miss.Delta != actual-estimate || miss.HistoryTokens != 0 {
		t.Fatalf("first request tokens: %+v, want estimate %d, actual %d, delta %d", miss, estimate, actual, actual-estimate)
	}

	hit, err := second.Chat(ctx, Request{ID: "req-2", Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	if hit.Cache != "HIT" || hit.Answer != want || hit.AnswerTokens != CountTokens(want) {
		t.Fatalf("second request: %+v, want a HIT answering %q", hit, want)
	}
	if hit.Actual != 0 || hit.Delta != -estimate {
		t.Fatalf("second request settled %d tokens with delta %d, want 0 and %d (the whole estimate refunded)", hit.Actual, hit.Delta, -estimate)
	}

	// Rate limits: two requests counted; TPM charged with the first
	// request's actual tokens only (both estimates refunded by settle,
	// less what refilled since); every concurrency slot free again.
	lim, err := ratelimit.New(cc, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	states, err := lim.Peek(ctx, cfg.Tenant, ratelimit.Limits{RPM: cfg.RPM, TPM: cfg.TPM, Concurrency: cfg.Concurrency})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	refill := func(perMinute int64) int64 { return int64(elapsed.Seconds()*float64(perMinute)/60) + 1 }
	for _, st := range states {
		var lo, hi int64
		switch st.Name {
		case "rpm":
			lo, hi = cfg.RPM-2, min(cfg.RPM, cfg.RPM-2+refill(cfg.RPM))
		case "tpm":
			lo, hi = cfg.TPM-actual, min(cfg.TPM, cfg.TPM-actual+refill(cfg.TPM))
		case "concurrency":
			lo, hi = cfg.Concurrency, cfg.Concurrency
		}
		if st.Remaining < lo || st.Remaining > hi {
			t.Errorf("%s remaining %d after %v, want %d..%d", st.Name, st.Remaining, elapsed, lo, hi)
		}
	}

	// The cache holds the answer.
	c, err := cache.New(cc, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := cache.Key(cfg.Namespace, Endpoint, cfg.Model, cfg.Tenant, cfg.Body(prompt))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != cache.Hit || string(res.Value) != `{"answer":"You said: What is Redis Cluster?","tokens":6}` {
		t.Fatalf("cache entry: %v %q", res.Status, res.Value)
	}

	// The conversation has both requests' turns, in order, with their ids.
	checkTurns(t, cc, cfg, []string{"req-1:user", "req-1:assistant", "req-2:user", "req-2:assistant"},
		[]string{prompt, want, prompt, want})

	// A retry of the second request (same id) stores nothing twice.
	if _, err := second.Chat(ctx, Request{ID: "req-2", Prompt: prompt}); err != nil {
		t.Fatal(err)
	}
	checkTurns(t, cc, cfg, []string{"req-1:user", "req-1:assistant", "req-2:user", "req-2:assistant"},
		[]string{prompt, want, prompt, want})

	// A third request sees the conversation as its history.
	third, err := first.Chat(ctx, Request{ID: "req-3", Prompt: "And replication?"})
	if err != nil {
		t.Fatal(err)
	}
	history := 2 * (CountTokens(prompt) + CountTokens(want))
	if third.Cache != "MISS" || third.HistoryTokens != history ||
		third.Actual != history+CountTokens("And replication?")+CountTokens("You said: And replication?") {
		t.Fatalf("third request: %+v, want a MISS with %d history tokens", third, history)
	}
}

// checkTurns checks the session's window against ids and contents.
func checkTurns(t *testing.T, cc *redis.ClusterClient, cfg Config, ids, contents []string) {
	t.Helper()
	st, err := contextstore.New(cc, contextstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := st.Session(cfg.Tenant, cfg.Session)
	if err != nil {
		t.Fatal(err)
	}
	win, err := sess.Window(context.Background(), contextstore.WindowOptions{Budget: cfg.HistoryBudget})
	if err != nil {
		t.Fatal(err)
	}
	if len(win.Messages) != len(ids) {
		t.Fatalf("window has %d messages, want %d: %+v", len(win.Messages), len(ids), win.Messages)
	}
	for i, m := range win.Messages {
		role := contextstore.User
		if i%2 == 1 {
			role = contextstore.Assistant
		}
		if m.ID != ids[i] || m.Role != role || m.Content != contents[i] || m.Tokens != CountTokens(contents[i]) {
			t.Errorf("message %d: %+v, want id %s, role %s, content %q", i, m, ids[i], role, contents[i])
		}
	}
}

// TestProxyFlow runs the flow through the proxy's commands, the first
// request over RESP3 and the second over RESP2.
func TestProxyFlow(t *testing.T) {
	addr := startProxy(t)
	cfg := DefaultConfig("chatflow-proxy", "chat-1")
	checkMissThenHit(t, testcluster.NewClusterClient(t, shared), cfg,
		NewProxyFlow(proxyClient(t, addr, 3), cfg, EchoModel),
		NewProxyFlow(proxyClient(t, addr, 2), cfg, EchoModel))
}

// TestPackageFlow runs the flow with the Go packages on a ClusterClient.
func TestPackageFlow(t *testing.T) {
	cc := testcluster.NewClusterClient(t, shared)
	cfg := DefaultConfig("chatflow-packages", "chat-1")
	f, err := NewPackageFlow(cc, cfg, EchoModel)
	if err != nil {
		t.Fatal(err)
	}
	checkMissThenHit(t, cc, cfg, f, f)
}

// TestProxyAndPackagesShareState fills through the proxy and hits with the
// packages on a ClusterClient: both use the same keys.
func TestProxyAndPackagesShareState(t *testing.T) {
	addr := startProxy(t)
	cc := testcluster.NewClusterClient(t, shared)
	cfg := DefaultConfig("chatflow-shared", "chat-1")
	f, err := NewPackageFlow(cc, cfg, EchoModel)
	if err != nil {
		t.Fatal(err)
	}
	checkMissThenHit(t, cc, cfg, NewProxyFlow(proxyClient(t, addr, 3), cfg, EchoModel), f)
}

// flowMaker builds one of the two flows.
type flowMaker struct {
	name string
	make func(cfg Config, m Model) chatter
}

// makers returns the proxy flow (through the proxy at addr) and the
// package flow (on cc).
func makers(t *testing.T, addr string, cc *redis.ClusterClient) []flowMaker {
	return []flowMaker{
		{"proxy", func(cfg Config, m Model) chatter { return NewProxyFlow(proxyClient(t, addr, 3), cfg, m) }},
		{"packages", func(cfg Config, m Model) chatter {
			f, err := NewPackageFlow(cc, cfg, m)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}},
	}
}

// TestModelFailure checks the failure path: the lease is released (the
// estimate stays charged), the fill token aborted (the next request gets a
// MISS at once, not WAIT) and the conversation unchanged.
func TestModelFailure(t *testing.T) {
	addr := startProxy(t)
	cc := testcluster.NewClusterClient(t, shared)
	ctx := context.Background()
	for _, fm := range makers(t, addr, cc) {
		t.Run(fm.name, func(t *testing.T) {
			cfg := DefaultConfig("chatflow-fail-"+fm.name, "chat-1")
			cfg.Concurrency = 1 // a leaked slot would refuse the next request
			cfg.CacheWait = 50 * time.Millisecond
			start := time.Now()
			if _, err := fm.make(cfg, FailingModel).Chat(ctx, Request{ID: "req-1", Prompt: "hello there"}); !errors.Is(err, ErrModel) {
				t.Fatalf("err = %v, want the model's error", err)
			}
			lim, err := ratelimit.New(cc, ratelimit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			states, err := lim.Peek(ctx, cfg.Tenant, ratelimit.Limits{TPM: cfg.TPM, Concurrency: 1})
			if err != nil {
				t.Fatal(err)
			}
			est := cfg.Estimate("hello there")
			refill := int64(time.Since(start).Seconds()*float64(cfg.TPM)/60) + 1
			if tpm := states[0].Remaining; tpm < cfg.TPM-est || tpm > cfg.TPM-est+refill {
				t.Errorf("TPM remaining %d, want the estimate %d still charged", tpm, est)
			}
			if states[1].Remaining != 1 {
				t.Errorf("concurrency remaining %d, want the slot released", states[1].Remaining)
			}
			// The next request fills at once (the fill token was aborted;
			// with it held, this request would get WAIT after 50ms).
			out, err := fm.make(cfg, EchoModel).Chat(ctx, Request{ID: "req-2", Prompt: "hello there"})
			if err != nil {
				t.Fatal(err)
			}
			if out.Cache != "MISS" || out.HistoryTokens != 0 {
				t.Fatalf("after the failure: %+v, want a MISS with no history", out)
			}
			checkTurns(t, cc, cfg, []string{"req-2:user", "req-2:assistant"}, []string{"hello there", "You said: hello there"})
		})
	}
}

// TestLimited checks that a refused request is a *LimitedError with the
// right RetryAfter.
func TestLimited(t *testing.T) {
	addr := startProxy(t)
	cc := testcluster.NewClusterClient(t, shared)
	ctx := context.Background()
	lim, err := ratelimit.New(cc, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, fm := range makers(t, addr, cc) {
		t.Run(fm.name, func(t *testing.T) {
			cfg := DefaultConfig("chatflow-limited-"+fm.name, "chat-1")
			// An estimate above TPM can never be allowed.
			small := cfg
			small.TPM = 100
			var le *LimitedError
			if _, err := fm.make(small, EchoModel).Chat(ctx, Request{ID: "x", Prompt: "hi"}); !errors.As(err, &le) || le.RetryAfter != -1 {
				t.Fatalf("estimate above TPM: err %v, want a LimitedError with RetryAfter -1", err)
			}
			// The only concurrency slot held by another lease.
			held, err := lim.Acquire(ctx, cfg.Tenant, ratelimit.Request{Limits: ratelimit.Limits{Concurrency: 1}})
			if err != nil || !held.Allowed {
				t.Fatalf("holding the slot: %+v %v", held, err)
			}
			one := cfg
			one.Concurrency = 1
			if _, err := fm.make(one, EchoModel).Chat(ctx, Request{ID: "y", Prompt: "hi"}); !errors.As(err, &le) || le.RetryAfter <= 0 {
				t.Fatalf("concurrency taken: err %v, want a LimitedError with a positive RetryAfter", err)
			}
			if ok, err := lim.Release(ctx, cfg.Tenant, held.Lease); err != nil || !ok {
				t.Fatalf("release: %v %v", ok, err)
			}
			if out, err := fm.make(one, EchoModel).Chat(ctx, Request{ID: "z", Prompt: "hi"}); err != nil || out.Cache != "MISS" {
				t.Fatalf("after the release: %+v %v", out, err)
			}
		})
	}
}
