package load

import "testing"

// The load generator's own cost of building a pipeline, per operation: it
// must stay far below what a proxy spends per request (about 1-10 µs).
func benchmarkFill(b *testing.B, wl Workload, cluster bool) {
	w := &Worker{Rng: newRng(1), Value: makeValue(64)}
	batch := &Batch{Cluster: cluster}
	b.ReportAllocs()
	for b.Loop() {
		batch.reset()
		wl.Fill(batch, w, 16)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*16), "ns/op-in-batch")
}

func BenchmarkFillGetSet(b *testing.B) {
	benchmarkFill(b, getSetWorkload{cfg: Config{}.Normalize()}, false)
}

func BenchmarkFillGetSetCluster(b *testing.B) {
	benchmarkFill(b, getSetWorkload{cfg: Config{}.Normalize()}, true)
}

func BenchmarkFillMSETCluster(b *testing.B) {
	benchmarkFill(b, multiWorkload{cfg: Config{}.Normalize(), set: true}, true)
}
