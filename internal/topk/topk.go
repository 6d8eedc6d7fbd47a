// Package topk finds the heaviest keys of a weighted stream in bounded
// memory: the weighted Space-Saving algorithm, split into shards by key
// hash so that concurrent writers rarely contend.
//
// Each shard keeps at most its capacity of keys in a min-heap by count. A
// key already kept gains its weight; a new key takes a free place, or
// replaces the lightest key and starts from that key's count plus its own
// weight. A count is therefore never below the key's true total and above
// it by at most the count it inherited (Item.Err). Any key whose true total
// exceeds its shard's total divided by the shard's capacity is kept.
package topk

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
)

// shards is the number of independently locked parts of a Sketch.
const shards = 8

// Item is a key and its estimated total weight. The true total lies in
// [Count-Err, Count].
type Item struct {
	Key   string
	Count uint64
	Err   uint64
}

// Sketch is a concurrency-safe weighted top-K summary. The zero value is
// not usable: use New.
type Sketch struct {
	seed  maphash.Seed
	parts [shards]shard
}

type shard struct {
	mu   sync.Mutex
	cap  int
	heap []*entry          // min-heap by count
	pos  map[string]*entry // the same entries by key
	_    [40]byte          // keep shards' locks on separate cache lines
}

// entry is one kept key; idx is its place in the heap, so that moving it
// touches no map.
type entry struct {
	key        string
	count, err uint64
	idx        int
}

// New returns a Sketch that keeps about capacity keys in all (at least 8
// per shard).
func New(capacity int) *Sketch {
	per := max((capacity+shards-1)/shards, 8)
	s := &Sketch{seed: maphash.MakeSeed()}
	for i := range s.parts {
		s.parts[i].cap = per
		s.parts[i].pos = make(map[string]*entry, per)
		s.parts[i].heap = make([]*entry, 0, per)
	}
	return s
}

// Add adds weight w to key. A zero weight changes nothing. key is copied
// only when the sketch starts keeping it.
func (s *Sketch) Add(key []byte, w uint64) {
	if w == 0 {
		return
	}
	sh := &s.parts[maphash.Bytes(s.seed, key)%shards]
	sh.mu.Lock()
	sh.add(key, w)
	sh.mu.Unlock()
}

func (sh *shard) add(key []byte, w uint64) {
	if e, ok := sh.pos[string(key)]; ok {
		e.count += w
		sh.down(e.idx)
		return
	}
	if len(sh.heap) < sh.cap {
		e := &entry{key: string(key), count: w, idx: len(sh.heap)}
		sh.heap = append(sh.heap, e)
		sh.pos[e.key] = e
		sh.up(e.idx)
		return
	}
	// Replace the lightest key: the newcomer inherits its count, which
	// bounds the error of the newcomer's estimate.
	low := sh.heap[0]
	delete(sh.pos, low.key)
	low.key = string(key)
	low.err = low.count
	low.count += w
	sh.pos[low.key] = low
	sh.down(0)
}

func (sh *shard) less(i, j int) bool { return sh.heap[i].count < sh.heap[j].count }

func (sh *shard) swap(i, j int) {
	h := sh.heap
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

func (sh *shard) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !sh.less(i, p) {
			return
		}
		sh.swap(i, p)
		i = p
	}
}

func (sh *shard) down(i int) {
	n := len(sh.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && sh.less(r, l) {
			m = r
		}
		if !sh.less(m, i) {
			return
		}
		sh.swap(i, m)
		i = m
	}
}

// Top returns up to n kept keys, those with the largest guaranteed weight
// (Count-Err) first, ties by key. Ranking by the guaranteed weight keeps a
// light key that just replaced another, and inherited its count, from
// looking heavy.
func (s *Sketch) Top(n int) []Item {
	var all []Item
	for i := range s.parts {
		sh := &s.parts[i]
		sh.mu.Lock()
		for _, e := range sh.heap {
			all = append(all, Item{Key: e.key, Count: e.count, Err: e.err})
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b Item) int {
		if c := cmp.Compare(b.Count-b.Err, a.Count-a.Err); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	if len(all) > n {
		all = all[:n]
	}
	return all
}
