package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/load"
	"github.com/clusterproxy/clusterproxy/bench/internal/local"
	"github.com/clusterproxy/clusterproxy/bench/internal/procstat"
	"github.com/clusterproxy/clusterproxy/bench/internal/progress"
	"github.com/clusterproxy/clusterproxy/bench/internal/report"
	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
)

// rssSampleInterval is how often a target process's VmRSS is sampled during
// a round, for the peak.
const rssSampleInterval = 50 * time.Millisecond

func newScenario(name string) load.Scenario {
	switch name {
	case "getset", "pipeline", "conns":
		return load.GetSet{Label: name}
	case "mget":
		return load.Multi{}
	case "mset":
		return load.Multi{Set: true}
	case "pubsub":
		return load.PubSub{}
	case "llm":
		return load.LLM{}
	}
	return nil
}

// acc accumulates one target's rounds.
type acc struct {
	t       *load.Target
	rep     report.Target
	hist    *stats.Hist
	steps   []load.Step
	elapsed time.Duration
	bench   time.Duration
	proc    time.Duration
	machine procstat.Machine // the whole machine's CPU over the rounds
	mem     *report.Memory
	skip    bool
}

// run runs cfg's scenario against every target and writes the reports.
func run(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	started := time.Now().UTC()
	sc := newScenario(cfg.scenario)
	lc := cfg.load.Normalize()

	var targets []*load.Target
	if cfg.local {
		env, err := local.Start(ctx, local.Options{
			Dir: cfg.localDir, Procs: cfg.procs, ProxyBin: cfg.proxyBin,
			ProxyArgs: strings.Fields(cfg.proxyArgs),
			Logger:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			return err
		}
		defer func() {
			if err := env.Stop(); err != nil {
				fmt.Fprintf(stderr, "bench: %v\n", err)
			}
		}()
		targets = append(targets,
			&load.Target{Name: "proxy", Kind: load.Single, Addrs: []string{env.ProxyAddr}, PID: env.ProxyPID},
			&load.Target{Name: "direct", Kind: load.Cluster, Addrs: env.Cluster.Addrs()})
	}
	if cfg.proxy != "" {
		targets = append(targets, &load.Target{Name: "proxy", Kind: load.Single, Addrs: []string{cfg.proxy}, PID: cfg.proxyPID})
	}
	if len(cfg.direct) > 0 {
		targets = append(targets, &load.Target{Name: "direct", Kind: load.Cluster, Addrs: cfg.direct})
	}
	for _, o := range cfg.others {
		targets = append(targets, &load.Target{Name: o.name, Kind: load.Single, Addrs: []string{o.addr}, PID: cfg.otherPID[o.name]})
	}

	accs := make([]*acc, len(targets))
	for i, t := range targets {
		a := &acc{t: t, hist: stats.NewHist(3)}
		a.rep = report.Target{Name: t.Name, Kind: t.Kind.String(), Addr: strings.Join(t.Addrs, ","), PID: t.PID}
		accs[i] = a
		if err := t.Prepare(ctx); err != nil {
			a.rep.Failed, a.skip = err.Error(), true
			continue
		}
		if err := sc.Check(ctx, t, lc); err != nil {
			if errors.Is(err, load.ErrUnsupported) {
				a.rep.Unsupported = err.Error()
			} else {
				a.rep.Failed = err.Error()
			}
			a.skip = true
			fmt.Fprintf(stderr, "bench: %s: %v\n", t.Name, err)
			continue
		}
		if t.PID > 0 {
			m, err := procstat.Memory(t.PID)
			if err != nil {
				return fmt.Errorf("target %s: %w", t.Name, err)
			}
			a.mem = &report.Memory{Before: m.RSS, Peak: m.RSS}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	pr := progress.Printer{}
	if cfg.progress {
		pr = progress.Printer{Out: stderr, TTY: progress.IsTerminal(stderr)}
	}
	total := cfg.n
	if cfg.scenario == "pubsub" {
		total *= int64(lc.Subs) // progress counts deliveries
	}
	for r := range cfg.rounds {
		for k := range accs {
			a := accs[(k+r)%len(accs)] // rotate the order each round
			if a.skip {
				continue
			}
			if err := runRound(ctx, cfg, sc, lc, a, r, total, pr); err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("interrupted: %w", err)
				}
				a.rep.Failed, a.skip = err.Error(), true
				fmt.Fprintf(stderr, "bench: %s: %v\n", a.t.Name, err)
			}
		}
	}

	rep := &report.Report{
		Scenario: cfg.scenario,
		Date:     started.Format(time.RFC3339),
		Host:     fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		Command:  "go run ./bench " + strings.Join(cfg.args, " "),
		Params:   params(cfg, lc),
		Rounds:   cfg.rounds,
	}
	for _, a := range accs {
		rep.Targets = append(rep.Targets, a.finish())
	}
	rep.SetRatios("direct")
	rep.Warnings = warnings(rep, runtime.GOMAXPROCS(0))
	if err := writeReports(rep, cfg, stdout); err != nil {
		return err
	}
	// A target that failed makes the run fail (after its report); one that
	// does not support the scenario does not.
	var failed []string
	for _, t := range rep.Targets {
		if t.Failed != "" {
			failed = append(failed, t.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("target(s) failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// runRound runs round r against one target and adds it to a.
func runRound(ctx context.Context, cfg *config, sc load.Scenario, lc load.Config, a *acc, r int, total int64, pr progress.Printer) error {
	rctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	pid := a.t.PID
	var cpu0 time.Duration
	var peak int64
	var sampler sync.WaitGroup
	stopSampling := make(chan struct{})
	if pid > 0 {
		var err error
		if cpu0, err = procstat.CPU(pid); err != nil {
			return err
		}
		sampler.Go(func() {
			tick := time.NewTicker(rssSampleInterval)
			defer tick.Stop()
			for {
				if m, err := procstat.Memory(pid); err == nil {
					peak = max(peak, m.RSS)
				}
				select {
				case <-stopSampling:
					return
				case <-tick.C:
				}
			}
		})
	}
	live := &load.Live{}
	label := fmt.Sprintf("[%s round %d/%d]", a.t.Name, r+1, cfg.rounds)
	stop := pr.Start(label, total, func() (int64, int64) { return live.Ops.Load(), live.Errors.Load() })
	mach0, err := procstat.MachineCPU()
	if err != nil {
		return err
	}
	self0 := procstat.SelfCPU()
	res, err := sc.Run(rctx, a.t, lc, load.Budget{N: cfg.n, Duration: cfg.duration}, live)
	self1 := procstat.SelfCPU()
	mach1, machErr := procstat.MachineCPU()
	stop()
	close(stopSampling)
	sampler.Wait()
	if err != nil {
		return err
	}
	if machErr != nil {
		return machErr
	}
	a.bench += self1 - self0
	d := mach1.Sub(mach0)
	a.machine.Busy += d.Busy
	a.machine.Idle += d.Idle
	if pid > 0 {
		cpu1, err := procstat.CPU(pid)
		if err != nil {
			return err
		}
		a.proc += cpu1 - cpu0
		m, err := procstat.Memory(pid)
		if err != nil {
			return err
		}
		a.mem.Peak = max(a.mem.Peak, peak, m.RSS)
		a.mem.After, a.mem.HWM = m.RSS, m.HWM
	}
	a.add(res)
	return nil
}

func (a *acc) add(res load.Round) {
	a.rep.Ops += res.Ops
	a.rep.Errors += res.Errors
	if a.rep.FirstError == "" {
		a.rep.FirstError = res.FirstError
	}
	a.elapsed += res.Elapsed
	a.rep.RoundOpsPerSec = append(a.rep.RoundOpsPerSec, stats.Rate(res.Ops, res.Elapsed))
	a.hist.Merge(res.Latency)
	if a.steps == nil {
		for _, s := range res.Steps {
			a.steps = append(a.steps, load.Step{Name: s.Name, Latency: stats.NewHist(3)})
		}
	}
	for i, s := range res.Steps {
		if i < len(a.steps) {
			a.steps[i].Latency.Merge(s.Latency)
		}
	}
	for k, v := range res.Extra {
		if a.rep.Extra == nil {
			a.rep.Extra = map[string]any{}
		}
		prev, _ := a.rep.Extra[k].(float64)
		a.rep.Extra[k] = prev + v
	}
}

// finish computes the target's report entry.
func (a *acc) finish() report.Target {
	t := a.rep
	if t.Failed != "" || t.Unsupported != "" {
		return t
	}
	t.Seconds = a.elapsed.Seconds()
	t.OpsPerSec = stats.Rate(t.Ops, a.elapsed)
	t.Latency = a.hist.Summary()
	for _, s := range a.steps {
		t.Steps = append(t.Steps, report.Step{Name: s.Name, Latency: s.Latency.Summary()})
	}
	if n := len(t.RoundOpsPerSec); n > 0 && t.Extra != nil {
		// Rates add up over rounds; report their mean.
		if v, ok := t.Extra["published_per_sec"].(float64); ok {
			t.Extra["published_per_sec"] = v / float64(n)
		}
		if v, ok := t.Extra["fanout"].(float64); ok {
			t.Extra["fanout"] = v / float64(n)
		}
	}
	if a.elapsed > 0 {
		t.BenchCPU = a.bench.Seconds() / a.elapsed.Seconds()
	}
	if t.Ops > 0 && a.machine.Busy > 0 {
		t.MachineCPUPerOp = float64(a.machine.Busy.Microseconds()) / float64(t.Ops)
		t.MachineIdle = a.machine.Idle.Seconds() / (a.machine.Busy + a.machine.Idle).Seconds()
	}
	if a.t.PID > 0 {
		t.ProcCPUSeconds = a.proc.Seconds()
		if a.proc > 0 {
			t.OpsPerCPUSecond = float64(t.Ops) / a.proc.Seconds()
		}
		t.Memory = a.mem
	}
	return t
}

// params lists the load parameters relevant to the scenario.
func params(cfg *config, lc load.Config) map[string]any {
	p := map[string]any{"conns": lc.Conns, "pipeline": lc.Pipeline}
	if cfg.duration > 0 {
		p["duration"] = cfg.duration.String()
	} else {
		p["n"] = cfg.n
	}
	switch cfg.scenario {
	case "getset", "pipeline", "conns":
		p["keys"], p["size"], p["ratio"] = lc.Keys, lc.Size, fmt.Sprintf("%d:%d", lc.SetRatio, lc.GetRatio)
	case "mget", "mset":
		p["keys"], p["size"], p["multi"] = lc.Keys, lc.Size, lc.Multi
	case "pubsub":
		p["size"], p["pubs"], p["subs"], p["channels"] = lc.Size, lc.Pubs, lc.Subs, lc.Channels
	case "llm":
		delete(p, "pipeline")
		p["turns"], p["prompt"], p["answer"], p["tenants"], p["hit_ratio"] = lc.Turns, lc.Prompt, lc.Answer, lc.Tenants, lc.HitRatio
	}
	if cfg.local {
		p["proxy_procs"] = cfg.procs
	}
	return p
}

func writeReports(rep *report.Report, cfg *config, stdout io.Writer) error {
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	outs := []struct {
		path  string
		write func(io.Writer) error
	}{
		{cfg.jsonOut, rep.WriteJSON},
		{cfg.mdOut, rep.WriteMarkdown},
		{cfg.svgOut, rep.WriteSVG},
	}
	for _, o := range outs {
		if o.path == "" {
			continue
		}
		f, err := os.Create(o.path)
		if err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		werr := o.write(f)
		if err := f.Close(); err != nil && werr == nil {
			werr = fmt.Errorf("write report %s: %w", o.path, err)
		}
		if werr != nil {
			return werr
		}
	}
	return nil
}

// benchCPUWarn is the share of the usable cores above which the load
// generator is likely the bottleneck.
const benchCPUWarn = 0.8

// warnings lists what makes the figures of rep doubtful.
func warnings(rep *report.Report, procs int) []string {
	var out []string
	for _, t := range rep.Targets {
		if t.BenchCPU >= benchCPUWarn*float64(procs) {
			out = append(out, fmt.Sprintf("%s: the load generator used %.2f of %d cores: it may be the bottleneck (fewer -conns, more -pipeline, or run it on another machine)", t.Name, t.BenchCPU, procs))
		}
		if t.Errors > 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d operations failed", t.Name, t.Errors, t.Ops+t.Errors))
		}
	}
	return out
}
