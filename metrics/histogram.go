package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBounds are the upper bounds (inclusive, like Prometheus's "le") of
// the latency histograms' buckets, in nanoseconds; a last bucket (+Inf)
// follows them.
var latencyBounds = [...]int64{
	50e3, 100e3, 250e3, 500e3, // 50µs .. 500µs
	1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6, // 1ms .. 500ms
	1e9, 2.5e9, 5e9, 10e9, // 1s .. 10s
}

// latencyBoundsSeconds are latencyBounds as Prometheus presents them.
var latencyBoundsSeconds = func() (s [len(latencyBounds)]float64) {
	for i, b := range latencyBounds {
		s[i] = float64(b) / 1e9
	}
	return s
}()

// latency is a histogram of durations over latencyBounds. It costs an
// observation a short integer search and two atomic additions, a fraction
// of a prometheus.Histogram's (a float search, a hot/cold count swap and a
// compare-and-swap loop on the sum), which matters at one or two
// observations per proxied command. Its figures are read at scrape time by
// a collector.
type latency struct {
	counts [len(latencyBounds) + 1]atomic.Uint64
	sumNs  atomic.Uint64 // wraps after 584 years of summed latency: Prometheus reads that as a reset
}

// observe records one duration; a negative one counts as zero.
func (h *latency) observe(d time.Duration) {
	ns := max(int64(d), 0)
	i := 0
	for i < len(latencyBounds) && ns > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(ns))
}

// snapshot returns the number of observations, their sum in seconds and the
// cumulative count per bound, as prometheus.MustNewConstHistogram takes
// them. Each bucket is read once, so the count equals the last bucket and
// every figure only grows from one snapshot to the next.
func (h *latency) snapshot() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(latencyBounds))
	for i := range latencyBounds {
		count += h.counts[i].Load()
		buckets[latencyBoundsSeconds[i]] = count
	}
	count += h.counts[len(latencyBounds)].Load()
	return count, float64(h.sumNs.Load()) / 1e9, buckets
}

// constHistogram presents h as a Prometheus histogram with labels.
func (h *latency) constHistogram(desc *prometheus.Desc, labels ...string) prometheus.Metric {
	count, sum, buckets := h.snapshot()
	return prometheus.MustNewConstHistogram(desc, count, sum, buckets, labels...)
}

// latencyCollector presents the per-command and per-node figures kept in
// latency histograms: clusterproxy_commands_total,
// clusterproxy_command_duration_seconds and
// clusterproxy_node_request_duration_seconds.
type latencyCollector struct {
	m                        *Metrics
	commands, duration, node *prometheus.Desc
}

func newLatencyCollector(m *Metrics) latencyCollector {
	return latencyCollector{
		m: m,
		commands: prometheus.NewDesc("clusterproxy_commands_total",
			"Commands answered, by command and status (ok or error reply).", []string{"command", "status"}, nil),
		duration: prometheus.NewDesc("clusterproxy_command_duration_seconds",
			"Time from reading a command to writing its reply, by command.", []string{"command"}, nil),
		node: prometheus.NewDesc("clusterproxy_node_request_duration_seconds",
			"Time from writing a request to a node's shared connection to reading its reply, by node.", []string{"node"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c latencyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.commands
	ch <- c.duration
	ch <- c.node
}

// Collect implements prometheus.Collector.
func (c latencyCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.byName.Range(func(k, v any) bool {
		name, cm := k.(string), v.(*commandMetrics)
		okN, okSum, okBuckets := cm.ok.snapshot()
		errN, errSum, errBuckets := cm.failed.snapshot()
		ch <- prometheus.MustNewConstMetric(c.commands, prometheus.CounterValue, float64(okN), name, "ok")
		ch <- prometheus.MustNewConstMetric(c.commands, prometheus.CounterValue, float64(errN), name, "error")
		for le, n := range errBuckets {
			okBuckets[le] += n
		}
		ch <- prometheus.MustNewConstHistogram(c.duration, okN+errN, okSum+errSum, okBuckets, name)
		return true
	})
	c.m.byNode.Range(func(k, v any) bool {
		ch <- v.(*latency).constHistogram(c.node, k.(string))
		return true
	})
}
