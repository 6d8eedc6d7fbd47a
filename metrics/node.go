package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NodeLatency implements router.NodeObserver: it returns the observer of
// clusterproxy_node_request_duration_seconds for the node at addr, resolved
// once so that each reply costs one histogram observation. Connections to
// one node share its histogram.
func (m *Metrics) NodeLatency(addr string) func(time.Duration) {
	v, ok := m.byNode.Load(addr)
	if !ok {
		v, _ = m.byNode.LoadOrStore(addr, new(latency))
	}
	return v.(*latency).observe
}

// RegisterInflight registers clusterproxy_node_inflight_requests on reg, a
// gauge per node read from inflight at scrape time (router.Router.Inflight),
// so that keeping it costs the data path nothing.
func RegisterInflight(reg prometheus.Registerer, inflight func() map[string]int) error {
	return reg.Register(inflightCollector{
		f: inflight,
		desc: prometheus.NewDesc("clusterproxy_node_inflight_requests",
			"Requests written to a node's shared connections and not yet answered, by node.", []string{"node"}, nil),
	})
}

type inflightCollector struct {
	f    func() map[string]int
	desc *prometheus.Desc
}

func (c inflightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c inflightCollector) Collect(ch chan<- prometheus.Metric) {
	for addr, n := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), addr)
	}
}
