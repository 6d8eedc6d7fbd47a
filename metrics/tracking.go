package metrics

import "github.com/prometheus/client_golang/prometheus"

// TrackingStats are a proxy's client-side caching figures (CLIENT
// TRACKING), read at scrape time.
type TrackingStats struct {
	// Clients are the client connections with tracking on; Keys the keys
	// remembered for their caches.
	Clients, Keys int64
	// Invalidations counts keys reported changed to clients; Flushes the
	// times every tracking client was told to drop every key (a listener
	// connection lost or started, a FLUSHALL).
	Invalidations, Flushes int64
}

// RegisterTracking registers the client-side caching metrics, read from
// stats at each scrape.
func RegisterTracking(reg prometheus.Registerer, stats func() TrackingStats) error {
	fs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clusterproxy_tracking_clients",
			Help: "Client connections with client-side caching on (CLIENT TRACKING)."},
			func() float64 { return float64(stats().Clients) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clusterproxy_tracking_keys",
			Help: "Keys the proxy remembers for its clients' caches."},
			func() float64 { return float64(stats().Keys) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clusterproxy_tracking_invalidations_total",
			Help: "Keys reported changed to client-side caching clients."},
			func() float64 { return float64(stats().Invalidations) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clusterproxy_tracking_flushes_total",
			Help: "Times every client-side caching client was told to drop its whole cache: an invalidation listener lost or started (failover, new master), or FLUSHALL on a master."},
			func() float64 { return float64(stats().Flushes) }),
	}
	for _, c := range fs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
