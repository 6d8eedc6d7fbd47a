package load

import (
	"context"
)

var (
	cmdGET  = []byte("GET")
	cmdSET  = []byte("SET")
	cmdMGET = []byte("MGET")
	cmdMSET = []byte("MSET")
)

// GetSet is the GET/SET mix: each operation is one SET or one GET of a
// random key, in the ratio cfg.SetRatio:cfg.GetRatio.
type GetSet struct {
	// Label is the scenario name ("getset", "pipeline", "conns").
	Label string
}

// Name returns the scenario's name.
func (g GetSet) Name() string { return g.Label }

// Check accepts every target: GET and SET are everywhere.
func (GetSet) Check(context.Context, *Target, Config) error { return nil }

// Run runs one round.
func (g GetSet) Run(ctx context.Context, t *Target, cfg Config, b Budget, live *Live) (Round, error) {
	return runPipelined(ctx, t, cfg, b, live, getSetWorkload{cfg: cfg})
}

type getSetWorkload struct{ cfg Config }

func (g getSetWorkload) Fill(b *Batch, w *Worker, n int) {
	total := g.cfg.SetRatio + g.cfg.GetRatio
	for range n {
		b.Op()
		k := w.Key(0, g.cfg.Prefix, w.Rng.IntN(g.cfg.Keys))
		if w.Rng.IntN(total) < g.cfg.SetRatio {
			b.Cmd(k, cmdSET, k, w.Value)
		} else {
			b.Cmd(k, cmdGET, k)
		}
	}
}

// Multi is MGET or MSET of cfg.Multi random keys (on different slots, as
// random keys almost always are). Against a cluster reached directly each
// operation becomes one GET/SET per key, as a cluster client does; against
// a single endpoint it is one MGET/MSET.
type Multi struct {
	// Set selects MSET; false is MGET.
	Set bool
}

// Name returns "mset" or "mget".
func (m Multi) Name() string {
	if m.Set {
		return "mset"
	}
	return "mget"
}

// Check accepts every target.
func (Multi) Check(context.Context, *Target, Config) error { return nil }

// Run runs one round.
func (m Multi) Run(ctx context.Context, t *Target, cfg Config, b Budget, live *Live) (Round, error) {
	return runPipelined(ctx, t, cfg, b, live, multiWorkload{cfg: cfg, set: m.Set})
}

type multiWorkload struct {
	cfg Config
	set bool
}

func (m multiWorkload) Fill(b *Batch, w *Worker, n int) {
	k := m.cfg.Multi
	args := w.Args
	for range n {
		b.Op()
		for i := range k {
			w.Key(i, m.cfg.Prefix, w.Rng.IntN(m.cfg.Keys))
		}
		if b.Cluster {
			for i := range k {
				key := w.Keys[i]
				if m.set {
					b.Cmd(key, cmdSET, key, w.Value)
				} else {
					b.Cmd(key, cmdGET, key)
				}
			}
			continue
		}
		args = args[:0]
		if m.set {
			args = append(args, cmdMSET)
			for i := range k {
				args = append(args, w.Keys[i], w.Value)
			}
		} else {
			args = append(args, cmdMGET)
			args = append(args, w.Keys[:k]...)
		}
		b.Cmd(nil, args...)
	}
	w.Args = args
}
