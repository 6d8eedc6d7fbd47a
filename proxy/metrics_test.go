package proxy_test

import (
	"context"
	"testing"

	"github.com/clusterproxy/clusterproxy/metrics"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
)

// metricValue returns the value of the series name{labels} gathered from reg
// (counter, gauge, or a histogram's sample count).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestMetrics checks that the counters move by exactly the traffic sent.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, shared, proxy.Config{Observer: m, Password: "pw"}, router.Options{Observer: m})
	ctx := context.Background()
	if v := metricValue(t, reg, "clusterproxy_slots_covered", nil); v != 16384 {
		t.Fatalf("slots covered = %v", v)
	}
	if v := metricValue(t, reg, "clusterproxy_topology_refreshes_total", map[string]string{"reason": "start", "result": "ok"}); v != 1 {
		t.Fatalf("start refreshes = %v", v)
	}
	raw := dialRaw(t, p.Addr)
	raw.do(t, "AUTH", "wrong")
	raw.do(t, "AUTH", "pw")
	for i := 0; i < 10; i++ {
		raw.do(t, "SET", "metrics:k", "v")
	}
	for i := 0; i < 5; i++ {
		raw.do(t, "GET", "metrics:k")
	}
	raw.do(t, "NOSUCH")
	raw.do(t, "DEBUG", "SLEEP", "0")
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"clusterproxy_commands_total", map[string]string{"command": "set", "status": "ok"}, 10},
		{"clusterproxy_commands_total", map[string]string{"command": "get", "status": "ok"}, 5},
		{"clusterproxy_commands_total", map[string]string{"command": "auth", "status": "error"}, 1},
		{"clusterproxy_commands_total", map[string]string{"command": "auth", "status": "ok"}, 1},
		{"clusterproxy_commands_total", map[string]string{"command": "unknown", "status": "error"}, 1},
		{"clusterproxy_command_duration_seconds", map[string]string{"command": "set"}, 10},
		{"clusterproxy_unsupported_commands_total", map[string]string{"command": "debug"}, 1},
		{"clusterproxy_auth_failures_total", nil, 1},
		{"clusterproxy_client_connections", nil, 1},
		{"clusterproxy_client_connections_total", nil, 1},
		{"clusterproxy_build_info", map[string]string{"version": "test"}, 1},
	}
	for _, c := range checks {
		if got := metricValue(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// A cross-slot MGET is one command for the client.
	c := redis.NewClient(&redis.Options{Addr: p.Addr, Password: "pw"})
	defer c.Close()
	c.MGet(ctx, "metrics:a", "metrics:b", "metrics:c")
	if got := metricValue(t, reg, "clusterproxy_commands_total", map[string]string{"command": "mget", "status": "ok"}); got != 1 {
		t.Errorf("mget = %v, want 1", got)
	}
}
