// Command chaos kills and restarts Redis masters in a loop under load and
// reports what clients of the proxy saw: errors (by kind), requests held
// during failovers and the longest hold, latency, and acknowledged writes
// that were lost (written, acknowledged by the proxy, then not read back at
// the end).
//
// It starts a local six-node cluster and the proxy (built from cmd/proxy,
// run as a separate process with -proxy-args), so that it can kill nodes.
//
//	go run ./bench/chaos -duration 5m
//	go run ./bench/chaos -duration 2m -clients 16 -proxy-args "-write-replicas 1"
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/local"
	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
	"github.com/redis/go-redis/v9"
)

// Config is one chaos run.
type Config struct {
	Duration  time.Duration // total time under load
	Clients   int           // concurrent client connections
	Keys      int           // keys per client
	Pause     time.Duration // healthy time between a restart and the next kill
	HeldAfter time.Duration // a request slower than this counts as held
	ProxyArgs []string      // extra proxy flags
	ProxyBin  string        // a proxy binary instead of building cmd/proxy
	Dir       string        // where the cluster lives (empty: a temp dir)
	Seed      uint64
	Log       *slog.Logger
}

// Result is what a run saw.
type Result struct {
	Duration     float64          `json:"duration_s"`
	Kills        int              `json:"kills"`
	Failovers    []float64        `json:"failover_s"` // kill to a healthy cluster again
	Ops          int64            `json:"ops"`
	Errors       int64            `json:"errors"`
	ErrorKinds   map[string]int64 `json:"error_kinds"`
	Held         int64            `json:"held"` // requests slower than HeldAfter
	HeldAfterMs  float64          `json:"held_after_ms"`
	MaxHoldMs    float64          `json:"max_hold_ms"`
	Latency      stats.Latency    `json:"latency"`
	AckedWrites  int64            `json:"acked_writes"`
	CheckedKeys  int              `json:"checked_keys"`
	LostWrites   int              `json:"lost_writes"`
	LostExamples []string         `json:"lost_examples,omitempty"`
}

func main() {
	cfg := Config{}
	var proxyArgs, jsonOut string
	flag.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long to run the load (kills repeat meanwhile)")
	flag.IntVar(&cfg.Clients, "clients", 8, "client connections, each writing and reading its own keys")
	flag.IntVar(&cfg.Keys, "keys", 2000, "keys per client")
	flag.DurationVar(&cfg.Pause, "pause", 5*time.Second, "healthy time after a restart before the next kill")
	flag.DurationVar(&cfg.HeldAfter, "held-after", 100*time.Millisecond, "a request slower than this counts as held")
	flag.StringVar(&proxyArgs, "proxy-args", "", "extra proxy flags, space-separated")
	flag.StringVar(&cfg.ProxyBin, "proxy-bin", "", "proxy binary to run (default: build ./cmd/proxy)")
	flag.StringVar(&cfg.Dir, "dir", "", "directory for the cluster and proxy (default: a temporary one, removed)")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "random seed (which master to kill)")
	flag.StringVar(&jsonOut, "json", "", "also write the result as JSON to this file")
	flag.Parse()
	cfg.ProxyArgs = strings.Fields(proxyArgs)
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	Print(os.Stdout, cfg, res)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			os.Exit(1)
		}
	}
	if res.LostWrites > 0 {
		os.Exit(3) // visible to scripts; asynchronous replication can cause it
	}
}

// worker is one client: it owns keys "chaos:<w>:<i>" and writes increasing
// values to them, reading one back now and then.
type worker struct {
	id    int
	acked []int64 // last value the proxy acknowledged per key (0: none)
	tried []int64 // last value attempted per key
	hist  *stats.Hist
	ops   int64
	acks  int64 // writes acknowledged
	held  int64
	max   time.Duration
	errs  map[string]int64
}

// Run starts a local cluster and proxy, runs the load and the kill loop
// for cfg.Duration, then checks every acknowledged write.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Clients <= 0 || cfg.Keys <= 0 || cfg.Duration <= 0 {
		return Result{}, errors.New("-clients, -keys and -duration must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	env, err := local.Start(ctx, local.Options{Dir: cfg.Dir, ProxyArgs: cfg.ProxyArgs, ProxyBin: cfg.ProxyBin, Logger: cfg.Log})
	if err != nil {
		return Result{}, err
	}
	defer env.Stop()
	cfg.Log.Info("chaos: cluster and proxy up", "proxy", env.ProxyAddr, "proxy_log", env.ProxyLog)

	client := redis.NewClient(&redis.Options{Addr: env.ProxyAddr, PoolSize: cfg.Clients + 2, MaxRetries: -1,
		ReadTimeout: time.Minute, WriteTimeout: time.Minute, DialTimeout: 5 * time.Second})
	defer client.Close()

	loadCtx, stopLoad := context.WithCancel(ctx)
	workers := make([]*worker, cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, acked: make([]int64, cfg.Keys), tried: make([]int64, cfg.Keys),
			hist: stats.NewHist(3), errs: map[string]int64{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(loadCtx, client, cfg)
		}()
	}

	res := Result{HeldAfterMs: float64(cfg.HeldAfter) / float64(time.Millisecond)}
	start := time.Now()
	killErr := killLoop(ctx, env, cfg, start.Add(cfg.Duration), &res)
	if killErr == nil {
		// The load goes on for a pause after the last restart, so that the
		// requests held through the last failover complete and count.
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Pause):
		}
	}
	stopLoad()
	wg.Wait()
	res.Duration = time.Since(start).Seconds()
	if killErr != nil && ctx.Err() == nil {
		return res, killErr
	}

	// Let the cluster settle, then read back every key a write was
	// acknowledged for.
	checkCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.Cluster.WaitHealthy(checkCtx); err != nil {
		return res, fmt.Errorf("cluster not healthy for the final check: %w", err)
	}
	h := stats.NewHist(3)
	res.ErrorKinds = map[string]int64{}
	for _, w := range workers {
		h.Merge(w.hist)
		res.Ops += w.ops
		res.Held += w.held
		res.AckedWrites += w.acks
		res.MaxHoldMs = max(res.MaxHoldMs, float64(w.max)/float64(time.Millisecond))
		for k, n := range w.errs {
			res.ErrorKinds[k] += n
			res.Errors += n
		}
		for i, a := range w.acked {
			if a == 0 {
				continue
			}
			res.CheckedKeys++
			key := keyName(w.id, i)
			v, err := client.Get(checkCtx, key).Result()
			n, _ := strconv.ParseInt(v, 10, 64)
			if err != nil || n < a {
				res.LostWrites++
				if len(res.LostExamples) < 10 {
					res.LostExamples = append(res.LostExamples, fmt.Sprintf("%s: acknowledged %d, read %q (%v)", key, a, v, err))
				}
			}
		}
	}
	res.Latency = h.Summary()
	return res, nil
}

func keyName(w, i int) string { return "chaos:" + strconv.Itoa(w) + ":" + strconv.Itoa(i) }

// run writes the next value of a random key, and reads one back one time in
// four, until ctx ends.
func (w *worker) run(ctx context.Context, c *redis.Client, cfg Config) {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w.id)))
	for ctx.Err() == nil {
		i := rng.IntN(len(w.acked))
		key := keyName(w.id, i)
		var err error
		t0 := time.Now()
		if rng.IntN(4) == 0 && w.acked[i] > 0 {
			var v string
			v, err = c.Get(ctx, key).Result()
			if err == nil {
				if n, _ := strconv.ParseInt(v, 10, 64); n < w.acked[i] {
					err = fmt.Errorf("stale read: %d after %d was acknowledged", n, w.acked[i])
				}
			}
		} else {
			next := w.tried[i] + 1
			w.tried[i] = next
			err = c.Set(ctx, key, next, 0).Err()
			if err == nil {
				w.acked[i] = next
				w.acks++
			}
		}
		d := time.Since(t0)
		if ctx.Err() != nil {
			return // the run ended while this request was out: not counted
		}
		w.ops++
		w.hist.Record(d)
		if d > cfg.HeldAfter {
			w.held++
		}
		w.max = max(w.max, d)
		if err != nil {
			w.errs[errKind(err)]++
		}
	}
}

// errKind shortens an error to its kind for the report.
func errKind(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "may or may not have been applied"):
		return "in flight when the node connection was lost (" + strings.SplitN(s, ";", 2)[0] + ")"
	case strings.HasPrefix(s, "stale read"):
		return "stale read"
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// killLoop kills a random master, waits for the cluster to fail over,
// restarts the node (it rejoins as a replica), waits cfg.Pause and repeats
// until the deadline.
func killLoop(ctx context.Context, env *local.Env, cfg Config, deadline time.Time, res *Result) error {
	rng := rand.New(rand.NewPCG(cfg.Seed, 1<<32))
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if !sleep(min(cfg.Pause, time.Until(deadline))) {
		return ctx.Err()
	}
	for time.Until(deadline) > 0 {
		masters, err := env.Cluster.MasterAddrs(ctx)
		if err != nil {
			return err
		}
		sort.Strings(masters)
		victim := masters[rng.IntN(len(masters))]
		cfg.Log.Info("chaos: killing master", "addr", victim)
		t0 := time.Now()
		if err := env.Cluster.KillNode(victim); err != nil {
			return err
		}
		res.Kills++
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err = waitPromoted(wctx, env, victim, len(masters))
		if err == nil {
			err = env.Cluster.WaitHealthy(wctx)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("no failover after killing %s: %w", victim, err)
		}
		res.Failovers = append(res.Failovers, time.Since(t0).Seconds())
		cfg.Log.Info("chaos: failed over", "after", time.Since(t0).Round(time.Millisecond))
		if err := env.Cluster.RestartNode(ctx, victim); err != nil {
			return err
		}
		cfg.Log.Info("chaos: restarted as a replica", "addr", victim)
		if time.Until(deadline) <= 0 {
			break // Run keeps the load on for a last pause
		}
		if !sleep(cfg.Pause) {
			return ctx.Err()
		}
	}
	return nil
}

// waitPromoted waits until the running nodes see n masters again, victim
// not among them: a replica took over its slots.
func waitPromoted(ctx context.Context, env *local.Env, victim string, n int) error {
	for {
		masters, err := env.Cluster.MasterAddrs(ctx)
		if err == nil && len(masters) == n && !slices.Contains(masters, victim) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a replica of %s to take over (masters %v): %w", victim, masters, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Print writes the result as a short report.
func Print(out io.Writer, cfg Config, r Result) {
	fmt.Fprintf(out, "chaos run: %.0f s, %d clients, %d kills of a master (kill -9, then restart)\n", r.Duration, cfg.Clients, r.Kills)
	if len(r.Failovers) > 0 {
		fs := make([]string, len(r.Failovers))
		for i, f := range r.Failovers {
			fs[i] = strconv.FormatFloat(f, 'f', 1, 64)
		}
		fmt.Fprintf(out, "failover times (kill to healthy): %s s\n", strings.Join(fs, ", "))
	}
	fmt.Fprintf(out, "requests: %d, errors: %d, held (> %.0f ms): %d, longest hold: %.0f ms\n",
		r.Ops, r.Errors, r.HeldAfterMs, r.Held, r.MaxHoldMs)
	kinds := make([]string, 0, len(r.ErrorKinds))
	for k := range r.ErrorKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(out, "  %6d  %s\n", r.ErrorKinds[k], k)
	}
	l := r.Latency
	fmt.Fprintf(out, "latency ms: p50 %.3f  p99 %.3f  p99.9 %.3f  max %.0f\n", l.P50, l.P99, l.P999, l.Max)
	fmt.Fprintf(out, "acknowledged writes: %d on %d keys; lost: %d\n", r.AckedWrites, r.CheckedKeys, r.LostWrites)
	for _, e := range r.LostExamples {
		fmt.Fprintf(out, "  lost: %s\n", e)
	}
}
