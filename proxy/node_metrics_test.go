package proxy_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/metrics"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/prometheus/client_golang/prometheus"
)

// busyScript keeps its node busy for about ms milliseconds.
func busyScript(ms int) string {
	return "local t = redis.call('TIME'); local start = t[1]*1000000 + t[2]; " +
		"repeat t = redis.call('TIME') until t[1]*1000000 + t[2] - start > " + strconv.Itoa(ms*1000) + "; return 'done'"
}

// TestNodeMetrics checks the per-node latency histogram (one observation per
// request, on the node that answered) and the in-flight gauge read from the
// router at scrape time.
func TestNodeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, shared, proxy.Config{Observer: m}, router.Options{Observer: m})
	if err := metrics.RegisterInflight(reg, p.Router.Inflight); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := p.client(t, 2)
	const key = "nodemetrics:k"
	node := p.Router.MasterOf(router.Slot([]byte(key)))
	for i := 0; i < 10; i++ {
		if err := c.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(t, reg, "clusterproxy_node_request_duration_seconds", map[string]string{"node": node}); got != 10 {
		t.Errorf("node latency observations on %s = %v, want 10", node, got)
	}
	total := 0.0
	for _, addr := range p.Router.Nodes() {
		total += metricValue(t, reg, "clusterproxy_node_request_duration_seconds", map[string]string{"node": addr})
	}
	if total != 10 {
		t.Errorf("node latency observations over all nodes = %v, want 10", total)
	}

	// A command that keeps the node busy is in flight on it meanwhile.
	done := make(chan error, 1)
	go func() { done <- c.Eval(ctx, busyScript(1000), []string{key}).Err() }()
	deadline := time.Now().Add(900 * time.Millisecond)
	seen := false
	for !seen && time.Now().Before(deadline) {
		seen = metricValue(t, reg, "clusterproxy_node_inflight_requests", map[string]string{"node": node}) == 1
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Error("in-flight gauge never showed the busy command")
	}
	if got := metricValue(t, reg, "clusterproxy_node_inflight_requests", map[string]string{"node": node}); got != 0 {
		t.Errorf("in flight after the reply = %v, want 0", got)
	}
}
