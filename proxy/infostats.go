package proxy

import (
	"bytes"
	"math"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// This file holds what INFO reports beyond single fields: client counts by
// state, the commands processed and their rate, and the masters' memory.

// clientCounts are the clients INFO counts by state.
type clientCounts struct {
	blocked int // waiting in a blocking command
	pubsub  int // holding subscriptions
}

func (s *Server) clientStats() clientCounts {
	var n clientCounts
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		if sess.flags.Load()&flagBlocked != 0 {
			n.blocked++
		}
		if sess.pubsubClient() {
			n.pubsub++
		}
	}
	return n
}

// commandsProcessed is the number of commands read from clients since the
// server started.
func (s *Server) commandsProcessed() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := s.cmdsClosed
	for sess := range s.sessions {
		total += sess.cmds.Load()
	}
	return total
}

// opsRate derives instantaneous_ops_per_sec from the command totals INFO
// reads: the rate since a reading about a second old (between 0.1 and 2
// seconds), else since the last one (up to a minute old). INFO called once
// a second or more often, as monitoring does, gives the last second's rate.
type opsRate struct {
	mu    sync.Mutex
	times [16]time.Time
	vals  [16]int64
	next  int
}

func (r *opsRate) sample(now time.Time, total int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	best, bestScore := -1, time.Duration(math.MaxInt64)
	for i := range r.times {
		if r.times[i].IsZero() {
			continue
		}
		age := now.Sub(r.times[i])
		var score time.Duration
		switch {
		case age < 100*time.Millisecond || age > time.Minute:
			continue
		case age <= 2*time.Second:
			score = absDur(age - time.Second) // at most 1 s
		default:
			score = age // after every reading within 2 s; the newest first
		}
		if score < bestScore {
			best, bestScore = i, score
		}
	}
	var rate int64
	if best >= 0 {
		rate = int64(float64(total-r.vals[best]) / now.Sub(r.times[best]).Seconds())
	}
	// Keep at most one reading per 100 ms, so a burst of INFO calls does
	// not push out the older ones.
	last := (r.next + len(r.times) - 1) % len(r.times)
	if r.times[last].IsZero() || now.Sub(r.times[last]) >= 100*time.Millisecond {
		r.times[r.next], r.vals[r.next] = now, total
		r.next = (r.next + 1) % len(r.times)
	}
	return max(rate, 0)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// sumMemory sums used_memory over the masters' INFO replies, and their
// maxmemory (0, no limit, when any master has none).
func sumMemory(replies [][]byte) (used, maxmem int64) {
	unlimited := false
	eachInfoField(replies, func(k, v []byte) {
		switch string(k) {
		case "used_memory":
			n, _ := strconv.ParseInt(string(v), 10, 64)
			used += n
		case "maxmemory":
			n, _ := strconv.ParseInt(string(v), 10, 64)
			if n == 0 {
				unlimited = true
			}
			maxmem += n
		}
	})
	if unlimited {
		maxmem = 0
	}
	return used, maxmem
}

// eachInfoField calls f with each "key:value" line of the nodes' INFO
// replies (bulk strings); other replies and lines are skipped.
func eachInfoField(replies [][]byte, f func(key, value []byte)) {
	for _, r := range replies {
		text, ok := resp.BulkValue(r)
		if !ok {
			continue
		}
		for _, line := range bytes.Split(text, []byte("\r\n")) {
			if k, v, found := bytes.Cut(line, []byte(":")); found {
				f(k, v)
			}
		}
	}
}

// humanBytes formats n as Redis's INFO does: 1023B, 1.50K, 9.34M, 2.00G.
func humanBytes(n int64) string {
	const units = "KMGTP"
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	v := float64(n)
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + string(units[i])
}

// proxyHeap is the proxy's own heap in use, in bytes.
func proxyHeap() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}
