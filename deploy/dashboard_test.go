package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/clusterproxy/clusterproxy/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// recorder is a Registerer that keeps the metric names it is given.
type recorder struct{ names map[string]bool }

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := name.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// TestDashboardUsesRealMetrics checks that the Grafana dashboard is valid
// JSON and that every clusterproxy_* series it queries is one the proxy
// exports, so that the dashboard cannot drift from the code.
func TestDashboardUsesRealMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana/dashboards/clusterproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	rec := &recorder{names: map[string]bool{}}
	if _, err := metrics.New(rec, "test"); err != nil {
		t.Fatal(err)
	}
	if err := metrics.RegisterInflight(rec, func() map[string]int { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := metrics.RegisterTracking(rec, func() metrics.TrackingStats { return metrics.TrackingStats{} }); err != nil {
		t.Fatal(err)
	}
	series := regexp.MustCompile(`clusterproxy_[a-z_]+`)
	used := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, s := range series.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s, "_bucket"), "_sum"), "_count")
				if !rec.names[s] && !rec.names[base] {
					t.Errorf("panel %q queries %s, which the proxy does not export", p.Title, s)
				}
				used++
			}
		}
	}
	if dash.UID == "" || used < 10 {
		t.Errorf("dashboard uid %q queries %d proxy series", dash.UID, used)
	}
}
