package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// Batch is one pipeline of commands, grouped into operations. A workload
// fills it; the runner sends it whole and reads every reply.
type Batch struct {
	// Cluster is true when the batch goes to a cluster directly: multi-key
	// operations must then be split into single-slot commands.
	Cluster bool

	buf  []byte
	cmds []cmdRef
	ops  int
}

type cmdRef struct {
	start, end int // bytes in buf
	slot       int
	op         int
}

func (b *Batch) reset() {
	b.buf, b.cmds, b.ops = b.buf[:0], b.cmds[:0], 0
}

// Op starts a new operation; the commands added until the next Op belong to
// it, and its latency ends with the last of their replies.
func (b *Batch) Op() { b.ops++ }

// Cmd adds a command to the current operation, routed (on a cluster) by the
// slot of key.
func (b *Batch) Cmd(key []byte, args ...[]byte) {
	start := len(b.buf)
	b.buf = appendCommand(b.buf, args...)
	slot := 0
	if b.Cluster {
		slot = router.Slot(key)
	}
	b.cmds = append(b.cmds, cmdRef{start: start, end: len(b.buf), slot: slot, op: b.ops - 1})
}

// Workload fills batches for the pipelined scenarios.
type Workload interface {
	// Fill adds n operations to b. Each worker has its own rng and scratch
	// state (from NewWorker), so Fill needs no locking.
	Fill(b *Batch, w *Worker, n int)
}

// Worker is the per-connection state a Workload may use.
type Worker struct {
	Rng   *rand.Rand
	Value []byte   // a value of Config.Size bytes
	Keys  [][]byte // scratch key buffers
	Args  [][]byte // scratch argument list
	ID    int
}

// Key returns the i-th scratch buffer filled with prefix+n.
func (w *Worker) Key(i int, prefix string, n int) []byte {
	for len(w.Keys) <= i {
		w.Keys = append(w.Keys, make([]byte, 0, 64))
	}
	k := append(w.Keys[i][:0], prefix...)
	k = appendUint(k, n)
	w.Keys[i] = k
	return k
}

func appendUint(dst []byte, n int) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

// endpoint is where a worker sends a batch: one connection, or one per
// cluster master.
type endpoint struct {
	conns []*conn
	slots *[router.SlotCount]uint16 // nil for a single endpoint

	// cluster split state, reused
	per   [][]cmdRef
	wbufs [][]byte
}

func dialEndpoint(ctx context.Context, t *Target) (*endpoint, error) {
	if t.Kind != Cluster {
		c, err := dial(ctx, t.Addrs[0])
		if err != nil {
			return nil, err
		}
		return &endpoint{conns: []*conn{c}}, nil
	}
	if t.topo == nil {
		return nil, fmt.Errorf("load: target %s is not prepared", t.Name)
	}
	e := &endpoint{slots: &t.topo.Slots}
	for _, a := range t.topo.Nodes {
		c, err := dial(ctx, a)
		if err != nil {
			e.close()
			return nil, err
		}
		e.conns = append(e.conns, c)
	}
	e.per = make([][]cmdRef, len(e.conns))
	e.wbufs = make([][]byte, len(e.conns))
	return e, nil
}

func (e *endpoint) close() {
	for _, c := range e.conns {
		c.close()
	}
}

// errorSink collects error replies of one worker.
type errorSink struct {
	n     int64
	first string
}

func (s *errorSink) add(f []byte) {
	s.n++
	if s.first == "" {
		s.first = string(resp.ErrorText(f))
	}
}

// send writes the batch and reads every reply; done(op, t) is called when
// the last reply of op arrives, pending must hold the command count per op.
func (e *endpoint) send(b *Batch, start time.Time, pending []int, h *stats.Hist, errs *errorSink) error {
	if e.slots == nil {
		c := e.conns[0]
		if _, err := c.nc.Write(b.buf); err != nil {
			return fmt.Errorf("load: write to %s: %w", c.addr, err)
		}
		return e.read(c, b.cmds, start, pending, h, errs)
	}
	for i := range e.per {
		e.per[i] = e.per[i][:0]
		e.wbufs[i] = e.wbufs[i][:0]
	}
	for _, r := range b.cmds {
		n := e.slots[r.slot]
		e.per[n] = append(e.per[n], r)
		e.wbufs[n] = append(e.wbufs[n], b.buf[r.start:r.end]...)
	}
	for i, c := range e.conns {
		if len(e.wbufs[i]) == 0 {
			continue
		}
		if _, err := c.nc.Write(e.wbufs[i]); err != nil {
			return fmt.Errorf("load: write to %s: %w", c.addr, err)
		}
	}
	for i, c := range e.conns {
		if err := e.read(c, e.per[i], start, pending, h, errs); err != nil {
			return err
		}
	}
	return nil
}

func (e *endpoint) read(c *conn, cmds []cmdRef, start time.Time, pending []int, h *stats.Hist, errs *errorSink) error {
	for _, r := range cmds {
		f, err := c.rd.ReadReply()
		if err != nil {
			return fmt.Errorf("load: read from %s: %w", c.addr, err)
		}
		if resp.IsError(f) {
			errs.add(f)
		}
		pending[r.op]--
		if pending[r.op] == 0 {
			h.Record(time.Since(start))
		}
	}
	return nil
}

// runPipelined runs a pipelined workload: cfg.Conns workers, each sending
// batches of cfg.Pipeline operations until the budget is spent. All
// connections are open before the first batch is sent.
func runPipelined(ctx context.Context, t *Target, cfg Config, bud Budget, live *Live, wl Workload) (Round, error) {
	workers := cfg.Conns
	eps := make([]*endpoint, workers)
	var dialErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // dial in parallel, a bounded number at once
	for i := range eps {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			e, err := dialEndpoint(ctx, t)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if dialErr == nil {
					dialErr = err
				}
				return
			}
			eps[i] = e
		})
	}
	wg.Wait()
	closeAll := func() {
		for _, e := range eps {
			if e != nil {
				e.close()
			}
		}
	}
	if dialErr != nil {
		closeAll()
		return Round{}, fmt.Errorf("load: connect %d connections to %s: %w", workers, t.Name, dialErr)
	}
	// Cancelling ctx (a signal, a timeout) unblocks every read.
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
	}()

	sig := histSigFigs(workers)
	hists := make([]*stats.Hist, workers)
	sinks := make([]errorSink, workers)
	runErrs := make([]error, workers)
	bg := newBudget(bud)
	began := time.Now()
	for i := range workers {
		hists[i] = stats.NewHist(sig)
		wg.Go(func() {
			w := &Worker{Rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i))), Value: makeValue(cfg.Size), ID: i}
			b := &Batch{Cluster: t.Kind == Cluster}
			var pending []int
			e := eps[i]
			for {
				n := bg.take(cfg.Pipeline)
				if n == 0 {
					return
				}
				b.reset()
				wl.Fill(b, w, n)
				pending = pending[:0]
				for range b.ops {
					pending = append(pending, 0)
				}
				for _, r := range b.cmds {
					pending[r.op]++
				}
				before := sinks[i].n
				if err := e.send(b, time.Now(), pending, hists[i], &sinks[i]); err != nil {
					if ctx.Err() == nil {
						runErrs[i] = err
					}
					return
				}
				live.Ops.Add(int64(b.ops))
				if d := sinks[i].n - before; d > 0 {
					live.Errors.Add(d)
				}
			}
		})
	}
	wg.Wait()
	r := Round{Elapsed: time.Since(began), Latency: stats.NewHist(sig)}
	for i := range workers {
		r.Latency.Merge(hists[i])
		r.Errors += sinks[i].n
		if r.FirstError == "" {
			r.FirstError = sinks[i].first
		}
	}
	r.Ops = r.Latency.Count()
	if err := errors.Join(runErrs...); err != nil {
		return r, err
	}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("load: round against %s interrupted: %w", t.Name, err)
	}
	return r, nil
}

// makeValue returns a printable value of n bytes.
func makeValue(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}
