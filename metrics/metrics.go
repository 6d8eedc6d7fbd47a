// Package metrics exposes clusterproxy's Prometheus metrics. It implements
// proxy.Observer and router.Observer against a registry passed in; it keeps
// no package-level state.
package metrics

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every collector. Create it with New.
type Metrics struct {
	clientConns      prometheus.Gauge
	clientConnsTotal prometheus.Counter
	redirections     *prometheus.CounterVec
	refreshes        *prometheus.CounterVec
	slotsCovered     prometheus.Gauge
	protocolErrors   prometheus.Counter
	unsupported      *prometheus.CounterVec
	authFailures     prometheus.Counter
	slowSubscribers  prometheus.Counter
	slowClients      prometheus.Counter
	gateway          *prometheus.CounterVec

	// Per-command and per-node figures are kept in latency histograms and
	// presented at scrape time by latencyCollector (histogram.go).
	byName sync.Map // command name → *commandMetrics
	byNode sync.Map // node address → *latency
}

// commandMetrics holds one command's figures: the durations of commands
// answered with an error reply and of the others. Their counts are
// clusterproxy_commands_total by status; together they are
// clusterproxy_command_duration_seconds.
type commandMetrics struct {
	ok, failed latency
}

// New creates the collectors and registers them, with a build-info gauge
// carrying version, on reg.
func New(reg prometheus.Registerer, version string) (*Metrics, error) {
	m := &Metrics{
		clientConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clusterproxy_client_connections", Help: "Client connections open now."}),
		clientConnsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clusterproxy_client_connections_total", Help: "Client connections accepted."}),
		redirections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterproxy_redirections_total", Help: "Redirections and retry replies handled inside the proxy, by kind (moved, ask, tryagain, clusterdown, loading)."},
			[]string{"kind"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterproxy_topology_refreshes_total", Help: "Topology refresh attempts, by reason and result (ok or error)."},
			[]string{"reason", "result"}),
		slotsCovered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clusterproxy_slots_covered", Help: "Hash slots served by a master in the current topology (16384 when healthy)."}),
		protocolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clusterproxy_protocol_errors_total", Help: "Client connections closed for a malformed frame."}),
		unsupported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterproxy_unsupported_commands_total", Help: "Commands refused because the proxy does not support them, by command."},
			[]string{"command"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clusterproxy_auth_failures_total", Help: "Failed client authentications."}),
		slowSubscribers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clusterproxy_slow_subscribers_disconnected_total", Help: "Pub/sub and MONITOR clients disconnected because their output queue was full."}),
		slowClients: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clusterproxy_slow_clients_disconnected_total", Help: "Clients disconnected because they accepted no reply bytes within the client write timeout."}),
		gateway: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterproxy_gateway_events_total", Help: "Outcomes of gateway commands, by family (ratelimit, cache, context) and event (allowed, limited, hit, miss, fill, wait, trim, ...)."},
			[]string{"family", "event"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "clusterproxy_build_info", Help: "Always 1; the version label tells the build.",
		ConstLabels: prometheus.Labels{"version": version}})
	build.Set(1)
	var errs []error
	for _, c := range []prometheus.Collector{m.clientConns, m.clientConnsTotal, newLatencyCollector(m),
		m.redirections, m.refreshes, m.slotsCovered, m.protocolErrors, m.unsupported, m.authFailures,
		m.slowSubscribers, m.slowClients, m.gateway, build} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// ClientConnected counts a new client connection.
func (m *Metrics) ClientConnected() {
	m.clientConns.Inc()
	m.clientConnsTotal.Inc()
}

// ClientDisconnected counts a closed client connection.
func (m *Metrics) ClientDisconnected() { m.clientConns.Dec() }

// CommandDone records one answered command.
func (m *Metrics) CommandDone(name string, failed bool, d time.Duration) {
	m.command(name).done(failed, d)
}

// CommandRecorder returns a function that records one answered command
// named name, as CommandDone does.
func (m *Metrics) CommandRecorder(name string) func(failed bool, d time.Duration) {
	return m.command(name).done
}

func (m *Metrics) command(name string) *commandMetrics {
	v, ok := m.byName.Load(name)
	if !ok {
		v, _ = m.byName.LoadOrStore(name, new(commandMetrics))
	}
	return v.(*commandMetrics)
}

func (cm *commandMetrics) done(failed bool, d time.Duration) {
	if failed {
		cm.failed.observe(d)
	} else {
		cm.ok.observe(d)
	}
}

// ProtocolError counts a client closed for a malformed frame.
func (m *Metrics) ProtocolError() { m.protocolErrors.Inc() }

// Unsupported counts a refused command.
func (m *Metrics) Unsupported(name string) { m.unsupported.WithLabelValues(name).Inc() }

// AuthFailure counts a failed AUTH or HELLO AUTH.
func (m *Metrics) AuthFailure() { m.authFailures.Inc() }

// SlowSubscriber counts a pub/sub or MONITOR client disconnected for not
// reading.
func (m *Metrics) SlowSubscriber() { m.slowSubscribers.Inc() }

// SlowClient counts a client disconnected by the client write timeout.
func (m *Metrics) SlowClient() { m.slowClients.Inc() }

// GatewayEvent counts one outcome of a gateway command.
func (m *Metrics) GatewayEvent(family, event string) { m.gateway.WithLabelValues(family, event).Inc() }

// Redirected implements router.Observer.
func (m *Metrics) Redirected(kind string) { m.redirections.WithLabelValues(kind).Inc() }

// TopologyRefreshed implements router.Observer.
func (m *Metrics) TopologyRefreshed(reason string, covered int, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.refreshes.WithLabelValues(reason, result).Inc()
	m.slotsCovered.Set(float64(covered))
}
