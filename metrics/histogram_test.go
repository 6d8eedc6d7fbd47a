package metrics

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestLatencyBuckets: a duration lands in the first bucket whose bound is at
// least it (bounds are inclusive), beyond the last bound only in +Inf, and
// the cumulative counts and sum are what Prometheus expects.
func TestLatencyBuckets(t *testing.T) {
	var h latency
	for _, d := range []time.Duration{
		-time.Second,                 // counts as 0: first bucket
		50 * time.Microsecond,        // exactly on the first bound
		50*time.Microsecond + 1,      // just above: second bucket
		time.Millisecond,             // le 0.001
		3 * time.Millisecond,         // le 0.005
		10 * time.Second,             // exactly on the last bound
		time.Hour,                    // +Inf only
		time.Duration(math.MaxInt64), // +Inf only; the sum wraps, nothing panics
	} {
		h.observe(d)
	}
	count, _, buckets := h.snapshot()
	if count != 8 {
		t.Fatalf("count = %d, want 8", count)
	}
	want := map[float64]uint64{
		0.00005: 2, 0.0001: 3, 0.00025: 3, 0.0005: 3, 0.001: 4, 0.0025: 4, 0.005: 5,
		0.01: 5, 0.025: 5, 0.05: 5, 0.1: 5, 0.25: 5, 0.5: 5, 1: 5, 2.5: 5, 5: 5, 10: 6,
	}
	if len(buckets) != len(want) {
		t.Fatalf("%d buckets, want %d: %v", len(buckets), len(want), buckets)
	}
	for le, n := range want {
		if buckets[le] != n {
			t.Errorf("bucket le=%v holds %d, want %d", le, buckets[le], n)
		}
	}

	var s latency
	s.observe(1500 * time.Microsecond)
	s.observe(2500 * time.Microsecond)
	if _, sum, _ := s.snapshot(); math.Abs(sum-0.004) > 1e-12 {
		t.Errorf("sum = %v, want 0.004", sum)
	}
}

// TestLatencyConcurrent: observations from many goroutines are all counted
// (run with -race).
func TestLatencyConcurrent(t *testing.T) {
	var h latency
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				h.observe(time.Duration(g*1000+i) * time.Microsecond)
			}
		}()
	}
	done := make(chan struct{})
	go func() { // scrapes meanwhile never see a count go down
		defer close(done)
		var last uint64
		for range 100 {
			n, _, _ := h.snapshot()
			if n < last {
				t.Errorf("count went from %d to %d", last, n)
			}
			last = n
		}
	}()
	wg.Wait()
	<-done
	if n, _, _ := h.snapshot(); n != 8000 {
		t.Fatalf("count = %d, want 8000", n)
	}
}

// TestCollectorFamilies: the command and node figures reach a registry as
// a counter by command and status and two histograms, with the help texts
// and values recorded.
func TestCollectorFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	m.CommandDone("get", false, time.Millisecond)
	m.CommandDone("get", false, 2*time.Millisecond)
	m.CommandDone("get", true, 20*time.Millisecond)
	rec := m.CommandRecorder("set")
	rec(false, 100*time.Microsecond)
	obs := m.NodeLatency("127.0.0.1:7000")
	obs(300 * time.Microsecond)
	m.NodeLatency("127.0.0.1:7000")(400 * time.Microsecond) // a second connection shares the histogram

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	find := func(family string, labels map[string]string) *dto.Metric {
		t.Helper()
		f := byName[family]
		if f == nil {
			t.Fatalf("no family %s", family)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", family)
		}
	series:
		for _, s := range f.Metric {
			got := map[string]string{}
			for _, l := range s.Label {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			return s
		}
		t.Fatalf("%s has no series %v", family, labels)
		return nil
	}
	for _, c := range []struct {
		cmd, status string
		want        float64
	}{{"get", "ok", 2}, {"get", "error", 1}, {"set", "ok", 1}, {"set", "error", 0}} {
		s := find("clusterproxy_commands_total", map[string]string{"command": c.cmd, "status": c.status})
		if got := s.GetCounter().GetValue(); got != c.want {
			t.Errorf("commands_total{%s,%s} = %v, want %v", c.cmd, c.status, got, c.want)
		}
	}
	h := find("clusterproxy_command_duration_seconds", map[string]string{"command": "get"}).GetHistogram()
	if h.GetSampleCount() != 3 || math.Abs(h.GetSampleSum()-0.023) > 1e-9 {
		t.Errorf("get histogram: count %d sum %v, want 3 and 0.023", h.GetSampleCount(), h.GetSampleSum())
	}
	cum := map[float64]uint64{}
	for _, b := range h.Bucket {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if cum[0.001] != 1 || cum[0.0025] != 2 || cum[0.025] != 3 {
		t.Errorf("get buckets le=0.001/0.0025/0.025: %d/%d/%d, want 1/2/3", cum[0.001], cum[0.0025], cum[0.025])
	}
	n := find("clusterproxy_node_request_duration_seconds", map[string]string{"node": "127.0.0.1:7000"}).GetHistogram()
	if n.GetSampleCount() != 2 || math.Abs(n.GetSampleSum()-0.0007) > 1e-9 {
		t.Errorf("node histogram: count %d sum %v, want 2 and 0.0007", n.GetSampleCount(), n.GetSampleSum())
	}
}

// BenchmarkObserve compares one latency observation with a
// prometheus.Histogram's over the same buckets.
func BenchmarkObserve(b *testing.B) {
	d := 180 * time.Microsecond
	b.Run("latency", func(b *testing.B) {
		var h latency
		for b.Loop() {
			h.observe(d)
		}
	})
	b.Run("prometheus", func(b *testing.B) {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: latencyBoundsSeconds[:]})
		for b.Loop() {
			h.Observe(d.Seconds())
		}
	})
}
