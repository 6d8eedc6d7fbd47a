package load

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
)

// Kind says how a target is reached.
type Kind int

const (
	// Single is one endpoint speaking RESP: the proxy or any other server.
	Single Kind = iota
	// Cluster is a Redis Cluster reached directly, routed by slot.
	Cluster
)

// String returns "single" or "cluster".
func (k Kind) String() string {
	if k == Cluster {
		return "cluster"
	}
	return "single"
}

// Target is one endpoint under test.
type Target struct {
	// Name labels the target in reports ("proxy", "direct", or a user's name).
	Name string
	// Kind says whether Addrs is one endpoint or cluster seeds.
	Kind Kind
	// Addrs is the endpoint address, or the cluster's seed addresses.
	Addrs []string
	// PID is the local process serving the target, for CPU and memory
	// figures; 0 when unknown.
	PID int

	topo *Topology // Cluster only, set by Prepare
}

// Prepare loads what a target needs before rounds run (the slot map of a
// cluster) and checks it answers PING.
func (t *Target) Prepare(ctx context.Context) error {
	if len(t.Addrs) == 0 {
		return fmt.Errorf("load: target %s has no address", t.Name)
	}
	if t.Kind == Cluster {
		topo, err := LoadTopology(ctx, t.Addrs)
		if err != nil {
			return fmt.Errorf("load: target %s: %w", t.Name, err)
		}
		t.topo = topo
		return nil
	}
	c, err := dial(ctx, t.Addrs[0])
	if err != nil {
		return err // names the address
	}
	defer c.close()
	f, err := c.doStrings("PING")
	if err != nil {
		return err
	}
	if err := replyError(f); err != nil {
		return fmt.Errorf("load: target %s: PING: %w", t.Name, err)
	}
	return nil
}

// Topology returns the slot map of a prepared Cluster target, nil otherwise.
func (t *Target) Topology() *Topology { return t.topo }

// anyAddr returns the address of one node able to answer a non-keyed
// command: the endpoint, or the i-th master (mod their number) of a cluster.
func (t *Target) anyAddr(i int) string {
	if t.Kind == Cluster && t.topo != nil {
		return t.topo.Nodes[i%len(t.topo.Nodes)]
	}
	return t.Addrs[0]
}

// ErrUnsupported marks a scenario a target cannot run (for example gateway
// commands against a plain cluster). Reports show the reason instead of
// figures.
var ErrUnsupported = errors.New("unsupported by target")

// Live holds counters that workers update while a round runs, read by the
// progress display.
type Live struct {
	Ops    atomic.Int64
	Errors atomic.Int64
}

// Budget bounds a round: a number of operations (N > 0) or a duration.
type Budget struct {
	N        int64
	Duration time.Duration
}

// Round is what one round of a scenario against one target measured.
type Round struct {
	// Ops counts completed operations (requests, flows, delivered messages).
	Ops int64
	// Errors counts error replies and failed operations.
	Errors int64
	// FirstError is the text of the first error seen, "" if none.
	FirstError string
	// Elapsed is the wall time the operations took.
	Elapsed time.Duration
	// Latency holds one value per operation.
	Latency *stats.Hist
	// Steps holds per-step latencies, in Step order (llm).
	Steps []Step
	// Extra holds scenario-specific figures by name.
	Extra map[string]float64
}

// Step is the latency of one named part of an operation.
type Step struct {
	Name    string
	Latency *stats.Hist
}

// Config is the load shape shared by the scenarios. Zero fields take the
// documented defaults via Normalize.
type Config struct {
	Conns    int     // connections (workers); default 50
	Pipeline int     // commands in flight per connection; default 1
	Keys     int     // key space; default 100000
	Size     int     // value size in bytes; default 64
	SetRatio int     // SETs per SetRatio+GetRatio ops (getset); default 1
	GetRatio int     // GETs; default 1
	Multi    int     // keys per MGET/MSET; default 10
	Prefix   string  // key prefix; default "bench:"
	Seed     int64   // random seed; 0: fixed default 1 (reproducible key sequence)
	Pubs     int     // pubsub publishers; default 1
	Subs     int     // pubsub subscribers; default 10
	Channels int     // pubsub channels; default 1
	Turns    int     // llm: turns per conversation; default 20
	Prompt   int     // llm: prompt bytes; default 2048
	Answer   int     // llm: answer bytes; default 1024
	Tenants  int     // llm: tenants; default 8
	HitRatio float64 // llm: share of requests repeating a popular prompt; 0: none
}

// Normalize fills defaults.
func (c Config) Normalize() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Conns, 50)
	def(&c.Pipeline, 1)
	def(&c.Keys, 100000)
	def(&c.Size, 64)
	if c.SetRatio == 0 && c.GetRatio == 0 {
		c.SetRatio, c.GetRatio = 1, 1
	}
	def(&c.Multi, 10)
	if c.Prefix == "" {
		c.Prefix = "bench:"
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	def(&c.Pubs, 1)
	def(&c.Subs, 10)
	def(&c.Channels, 1)
	def(&c.Turns, 20)
	def(&c.Prompt, 2048)
	def(&c.Answer, 1024)
	def(&c.Tenants, 8)
	return c
}

// histSigFigs picks the histogram precision: 3 significant figures, 2 when
// there are so many workers that per-worker histograms would use too much
// memory.
func histSigFigs(workers int) int {
	if workers > 128 {
		return 2
	}
	return 3
}

// Scenario is one kind of load.
type Scenario interface {
	// Name is the scenario's flag value.
	Name() string
	// Check reports, wrapping ErrUnsupported, when t cannot run the
	// scenario; it may prepare data.
	Check(ctx context.Context, t *Target, cfg Config) error
	// Run runs one round against a prepared target.
	Run(ctx context.Context, t *Target, cfg Config, b Budget, live *Live) (Round, error)
}

// budget hands out operations to workers: from a shared count, or until a
// deadline.
type budget struct {
	left     atomic.Int64
	counted  bool
	deadline time.Time
}

func newBudget(b Budget) *budget {
	bg := &budget{counted: b.N > 0}
	if bg.counted {
		bg.left.Store(b.N)
	} else {
		bg.deadline = time.Now().Add(b.Duration)
	}
	return bg
}

// take returns how many of want operations the caller may run, 0 when the
// budget is spent.
func (b *budget) take(want int) int {
	if !b.counted {
		if time.Now().After(b.deadline) {
			return 0
		}
		return want
	}
	for {
		left := b.left.Load()
		if left <= 0 {
			return 0
		}
		n := min(int64(want), left)
		if b.left.CompareAndSwap(left, left-n) {
			return int(n)
		}
	}
}
