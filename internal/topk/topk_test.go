package topk

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestExactWithinCapacity: while no shard receives more keys than it
// keeps, the counts are exact and ordered.
func TestExactWithinCapacity(t *testing.T) {
	s := New(40 * shards) // each shard could keep all 40
	want := map[string]uint64{}
	for i := range 40 {
		k := fmt.Sprintf("k%02d", i)
		for range i + 1 {
			s.Add([]byte(k), 3)
			want[k] += 3
		}
	}
	s.Add([]byte("zero"), 0)
	top := s.Top(100)
	if len(top) != 40 {
		t.Fatalf("kept %d keys, want 40", len(top))
	}
	for i, it := range top {
		if it.Count != want[it.Key] || it.Err != 0 {
			t.Errorf("%s: count %d err %d, want %d exact", it.Key, it.Count, it.Err, want[it.Key])
		}
		if i > 0 && top[i-1].Count < it.Count {
			t.Errorf("not heaviest first at %d: %d then %d", i, top[i-1].Count, it.Count)
		}
	}
	if got := s.Top(3); len(got) != 3 || got[0].Key != "k39" || got[2].Key != "k37" {
		t.Errorf("Top(3) = %+v", got)
	}
}

// TestHeavyHittersAmongNoise: ten keys with 3% of the weight each, among
// a million accesses to 200,000 light keys, are all found and ranked first
// with a capacity of 100 (which guarantees any key above 1%), and their
// counts bound the truth.
func TestHeavyHittersAmongNoise(t *testing.T) {
	s := New(100)
	r := rand.New(rand.NewPCG(1, 2))
	truth := map[string]uint64{}
	for i := range 1_000_000 {
		var k string
		if i%10 < 3 {
			k = fmt.Sprintf("hot:%d", r.IntN(10))
		} else {
			k = fmt.Sprintf("cold:%d", r.IntN(200_000))
		}
		w := uint64(1 + r.IntN(100))
		s.Add([]byte(k), w)
		truth[k] += w
	}
	top := s.Top(10)
	for _, it := range top {
		if it.Key[:4] != "hot:" {
			t.Errorf("light key %q ranked in the top 10: %+v", it.Key, top)
		}
		real := truth[it.Key]
		if it.Count < real || it.Count-it.Err > real {
			t.Errorf("%s: estimate [%d, %d] does not hold the true %d", it.Key, it.Count-it.Err, it.Count, real)
		}
	}
	if len(top) != 10 {
		t.Fatalf("found %d keys, want 10", len(top))
	}
}

// TestConcurrentAdds: writers on many goroutines lose no weight of the
// keys kept (run with -race).
func TestConcurrentAdds(t *testing.T) {
	s := New(64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10_000 {
				s.Add([]byte(fmt.Sprintf("key:%d", (i+g)%32)), 2)
			}
		}()
	}
	wg.Wait()
	var sum uint64
	for _, it := range s.Top(100) {
		sum += it.Count
	}
	if sum != 8*10_000*2 {
		t.Fatalf("total weight %d, want %d", sum, 8*10_000*2)
	}
}

// BenchmarkAddKept adds to keys the sketch keeps.
func BenchmarkAddKept(b *testing.B) { benchAdd(b, 64) }

// BenchmarkAddChurn adds to far more keys than the sketch keeps: nearly
// every Add replaces one.
func BenchmarkAddChurn(b *testing.B) { benchAdd(b, 100_000) }

func benchAdd(b *testing.B, nkeys int) {
	s := New(640)
	keys := make([][]byte, nkeys)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user:%d:profile", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Add(keys[i%len(keys)], 100)
	}
}
