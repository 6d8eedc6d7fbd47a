package proxy

import (
	"slices"
	"sync"
	"time"
)

// workerIdle is how long an idle worker waits for a job before it exits.
const workerIdle = 10 * time.Second

// workers runs functions on long-lived goroutines. A gateway command's
// handler goes through the gateway packages, go-redis's script calls and
// the router, deep enough that a fresh goroutine grows (copies) its stack
// several times per command; a worker that ran one before starts from the
// stack it grew. A worker is made whenever none is idle, without bound (a
// handler may wait long, as CACHE.GET WAIT does; the session's pipeline
// limit bounds how many a client can start); one idle for workerIdle
// exits. The zero value is ready to use.
type workers struct {
	idleFor time.Duration // workerIdle when 0 (tests shorten it)

	mu     sync.Mutex
	idle   []*worker // most recently used last: its stack is the warmest
	closed bool
}

type worker struct {
	job chan func() // buffered: handing a job never blocks
}

// run calls f on an idle worker, or on a new one.
func (p *workers) run(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.job <- f
		return
	}
	p.mu.Unlock()
	w := &worker{job: make(chan func(), 1)}
	go w.loop(p, f)
}

// loop runs f, then the jobs handed to w, until w has been idle for
// workerIdle or the pool is closed.
func (w *worker) loop(p *workers, f func()) {
	var idle *time.Timer
	for {
		f()
		f = nil
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		wait := p.idleFor
		if wait <= 0 {
			wait = workerIdle
		}
		if idle == nil {
			idle = time.NewTimer(wait)
		} else {
			idle.Reset(wait)
		}
		var ok bool
		select {
		case f, ok = <-w.job:
		case <-idle.C:
			p.mu.Lock()
			if i := slices.Index(p.idle, w); i >= 0 {
				p.idle = slices.Delete(p.idle, i, i+1)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			f, ok = <-w.job // run took w just now: its job is on the way
		}
		if !ok {
			return // closed
		}
	}
}

// close makes the idle workers exit, and the busy ones once their job is
// done. A run after close still runs its function, on a worker that then
// exits.
func (p *workers) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, w := range idle {
		close(w.job)
	}
}

// idleCount reports how many workers wait for a job.
func (p *workers) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
