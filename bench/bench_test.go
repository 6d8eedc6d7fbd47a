package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/local"
	"github.com/clusterproxy/clusterproxy/bench/internal/report"
	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/redis/go-redis/v9"
)

// The shared cluster, the proxy binary built from cmd/proxy, and one proxy
// process in front of the cluster, as -local sets them up.
var (
	cluster  *localcluster.Cluster
	proxyBin string
	proxy    *local.Proxy
)

func TestMain(m *testing.M) {
	testcluster.Main(m, func(c *localcluster.Cluster) int {
		cluster = c
		dir, err := os.MkdirTemp("", "clusterproxy-bench-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// BENCH_TEST_PROXY_BIN runs the tests against another proxy build
		// (for example one with more gateway commands) instead of this
		// module's cmd/proxy.
		if proxyBin = os.Getenv("BENCH_TEST_PROXY_BIN"); proxyBin == "" {
			if proxyBin, err = local.Build(context.Background(), dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		if proxy, err = local.StartProxy(context.Background(), proxyBin, dir, c.Addrs(), local.Options{Procs: 1}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer proxy.Stop()
		return m.Run()
	})
}

// runBench runs the tool with args against the shared proxy and cluster
// and returns the JSON report.
func runBench(t *testing.T, args ...string) *report.Report {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	args = append([]string{"-json", out, "-progress=false"}, args...)
	if err := mainErr(t.Context(), args, io.Discard, io.Discard); err != nil {
		t.Fatalf("bench %q: %v", args, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func targets() []string {
	return []string{"-proxy", proxy.ProxyAddr, "-proxy-pid", strconv.Itoa(proxy.ProxyPID),
		"-direct", strings.Join(cluster.Addrs(), ",")}
}

// checkSane asserts a target ran every operation without error and that
// its figures are consistent.
func checkSane(t *testing.T, tg report.Target, wantOps int64) {
	t.Helper()
	if tg.Failed != "" || tg.Unsupported != "" {
		t.Fatalf("%s: failed %q unsupported %q", tg.Name, tg.Failed, tg.Unsupported)
	}
	l := tg.Latency
	if tg.Ops != wantOps || l.Count != wantOps || tg.Errors != 0 {
		t.Errorf("%s: %d ops (%d latencies), %d errors (%q); want %d ops, no error", tg.Name, tg.Ops, l.Count, tg.Errors, tg.FirstError, wantOps)
	}
	if tg.OpsPerSec <= 0 || tg.Seconds <= 0 || len(tg.RoundOpsPerSec) != 2 {
		t.Errorf("%s: %v ops/s over %v s, rounds %v", tg.Name, tg.OpsPerSec, tg.Seconds, tg.RoundOpsPerSec)
	}
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("%s: percentiles out of order: %+v", tg.Name, l)
	}
	if l.Max > 30_000 {
		t.Errorf("%s: max latency %v ms", tg.Name, l.Max)
	}
	if tg.Ratio == nil || *tg.Ratio <= 0 || tg.BenchCPU <= 0 {
		t.Errorf("%s: ratio %v, bench CPU %v", tg.Name, tg.Ratio, tg.BenchCPU)
	}
	// A short round may see no /proc/stat tick (10 ms) of busy time;
	// TestMachineCPU checks the figures on a longer one.
	if tg.MachineCPUPerOp < 0 || tg.MachineIdle < 0 || tg.MachineIdle > 1 || (tg.CPURatio != nil && *tg.CPURatio <= 0) {
		t.Errorf("%s: machine CPU %v us per op, idle %v, CPU ratio %v", tg.Name, tg.MachineCPUPerOp, tg.MachineIdle, tg.CPURatio)
	}
	if tg.Name == "proxy" {
		m := tg.Memory
		if tg.PID != proxy.ProxyPID || m == nil || m.Before <= 0 || m.Peak < m.Before || m.HWM < m.Peak || tg.ProcCPUSeconds < 0 {
			t.Errorf("proxy process figures: pid %d cpu %v memory %+v", tg.PID, tg.ProcCPUSeconds, m)
		}
	} else if tg.Memory != nil || tg.ProcCPUSeconds != 0 {
		t.Errorf("%s: process figures without a pid", tg.Name)
	}
}

// countKeys counts the keys with prefix on every master.
func countKeys(t *testing.T, prefix string) int {
	t.Helper()
	cc := testcluster.NewClusterClient(t, cluster)
	var n atomic.Int64
	err := cc.ForEachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error {
		keys, err := scanAll(ctx, c, prefix+"*")
		n.Add(int64(len(keys)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return int(n.Load())
}

func scanAll(ctx context.Context, c *redis.Client, match string) ([]string, error) {
	var all []string
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, 1000).Result()
		if err != nil {
			return nil, err
		}
		all = append(all, keys...)
		if cursor = next; cursor == 0 {
			return all, nil
		}
	}
}

func TestScenarios(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		args     []string
		ops      int64 // per round per target
		writes   bool  // leaves keys behind
	}{
		{"getset", []string{"-n", "400", "-conns", "4"}, 400, true},
		{"pipeline", []string{"-n", "640", "-conns", "4", "-ratio", "1:0"}, 640, true},
		{"mget", []string{"-n", "100", "-conns", "3", "-multi", "5"}, 100, false},
		{"mset", []string{"-n", "100", "-conns", "3", "-multi", "5"}, 100, true},
		{"pubsub", []string{"-n", "200", "-subs", "3", "-channels", "2", "-pipeline", "4"}, 200 * 3, false},
		{"conns", []string{"-conns", "40", "-pipeline", "10"}, 40 * 10 * 10, true},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			prefix := "bench-it-" + tc.scenario + ":"
			args := append(append(targets(), "-scenario", tc.scenario, "-rounds", "2", "-prefix", prefix), tc.args...)
			r := runBench(t, args...)
			if r.Scenario != tc.scenario || r.Rounds != 2 || len(r.Targets) != 2 {
				t.Fatalf("report %+v", r)
			}
			for _, tg := range r.Targets {
				checkSane(t, tg, 2*tc.ops)
			}
			if d := r.Targets[1]; d.Name != "direct" || *d.Ratio != 1 {
				t.Errorf("second target %s ratio %v, want direct at 1", d.Name, d.Ratio)
			}
			if tc.scenario == "pubsub" {
				if p := r.Targets[0].Extra; p["published"] != 400.0 || p["lost"] != 0.0 || p["fanout"] != 3.0 {
					t.Errorf("pubsub extras %v", p)
				}
			}
			if tc.writes {
				if n := countKeys(t, prefix); n == 0 {
					t.Errorf("no %s* key in the cluster after %s", prefix, tc.scenario)
				}
			}
		})
	}
}

// TestMachineCPU checks the whole machine's CPU figures on rounds long
// enough for /proc/stat's 10 ms ticks.
func TestMachineCPU(t *testing.T) {
	r := runBench(t, append(targets(), "-duration", "400ms", "-conns", "2", "-rounds", "1", "-prefix", "bench-it-machine:")...)
	if len(r.Targets) != 2 {
		t.Fatalf("targets %+v", r.Targets)
	}
	for _, tg := range r.Targets {
		if tg.Ops == 0 || tg.MachineCPUPerOp <= 0 || tg.CPURatio == nil || *tg.CPURatio <= 0 {
			t.Errorf("%s: %d ops, machine CPU %v us per op, CPU ratio %v", tg.Name, tg.Ops, tg.MachineCPUPerOp, tg.CPURatio)
		}
		if tg.MachineIdle < 0 || tg.MachineIdle > 1 {
			t.Errorf("%s: machine idle share %v", tg.Name, tg.MachineIdle)
		}
	}
	if d := r.Targets[1]; d.CPURatio == nil || *d.CPURatio != 1 {
		t.Errorf("direct CPU ratio %v, want 1", d.CPURatio)
	}
	if n := countKeys(t, "bench-it-machine:"); n == 0 {
		t.Error("no key written")
	}
}

// TestReportFiles checks the Markdown and SVG outputs of a real run.
func TestReportFiles(t *testing.T) {
	dir := t.TempDir()
	md, svg := filepath.Join(dir, "r.md"), filepath.Join(dir, "r.svg")
	runBench(t, append(targets(), "-n", "100", "-conns", "2", "-rounds", "1", "-md", md, "-svg", svg, "-prefix", "bench-it-files:")...)
	m, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m), "| proxy | ") || !strings.Contains(string(m), "| direct | ") {
		t.Errorf("markdown lacks the target rows:\n%s", m)
	}
	s, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(s), "<svg ") || !strings.Contains(string(s), ">proxy</text>") {
		t.Errorf("svg:\n%s", s)
	}
}

// TestLLM runs the gateway flow. A cluster reached directly has no gateway
// commands: it must be reported unsupported. The proxy runs the flow when
// it has the commands, and is reported unsupported (not a crash) when it
// does not.
func TestLLM(t *testing.T) {
	r := runBench(t, append(targets(), "-scenario", "llm", "-n", "30", "-conns", "2", "-turns", "4", "-rounds", "1",
		"-prefix", "bench-it-llm:")...)
	p, d := r.Targets[0], r.Targets[1]
	if !strings.Contains(d.Unsupported, "unsupported by target") || !strings.Contains(d.Unsupported, "unknown command") {
		t.Errorf("direct: unsupported %q, want the unknown gateway command named", d.Unsupported)
	}
	if d.Failed != "" || d.Ops != 0 {
		t.Errorf("direct: failed %q, %d ops", d.Failed, d.Ops)
	}
	if p.Unsupported != "" {
		if !strings.Contains(p.Unsupported, "unknown command") {
			t.Errorf("proxy unsupported for another reason: %q", p.Unsupported)
		}
		t.Logf("this proxy has no gateway commands: %s", p.Unsupported)
		return
	}
	if p.Failed != "" || p.Ops != 30 || p.Errors != 0 {
		t.Fatalf("proxy llm: failed %q, %d flows, %d errors (%q); want 30 flows, no error", p.Failed, p.Ops, p.Errors, p.FirstError)
	}
	if len(p.Steps) != 7 {
		t.Fatalf("steps %+v", p.Steps)
	}
	for _, s := range p.Steps {
		switch s.Name {
		case "rl.acquire", "cache.get", "ctx.window", "rl.settle", "ctx.append":
			if s.Latency.Count != 30 {
				t.Errorf("step %s ran %d times, want once per flow (30)", s.Name, s.Latency.Count)
			}
		case "cache.set", "cache.key":
			if s.Latency.Count < 1 || s.Latency.Count > 30 {
				t.Errorf("step %s ran %d times, want 1..30", s.Name, s.Latency.Count)
			}
		}
	}
	if hits, misses := p.Extra["cache_hits"].(float64), p.Extra["cache_misses"].(float64); hits+misses+p.Extra["cache_waits"].(float64) != 30 || misses < 1 {
		t.Errorf("cache outcomes %v", p.Extra)
	}
}

// TestLocal runs -local end to end (with the binary built by TestMain) and
// checks that everything it started is gone afterwards.
func TestLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "local")
	r := runBench(t, "-local", "-local-dir", dir, "-proxy-bin", proxyBin, "-procs", "1",
		"-n", "200", "-conns", "2", "-rounds", "1")
	if len(r.Targets) != 2 || r.Targets[0].Name != "proxy" || r.Targets[1].Name != "direct" {
		t.Fatalf("targets %+v", r.Targets)
	}
	for _, tg := range r.Targets {
		if tg.Failed != "" || tg.Ops != 200 || tg.Errors != 0 {
			t.Errorf("%s: failed %q, %d ops, %d errors", tg.Name, tg.Failed, tg.Ops, tg.Errors)
		}
	}
	pid := r.Targets[0].PID
	if pid <= 0 || r.Targets[0].Memory == nil || r.Params["proxy_procs"] != 1.0 {
		t.Fatalf("proxy pid %d, memory %v, params %v", pid, r.Targets[0].Memory, r.Params)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("proxy process %d still exists after the run (kill 0: %v)", pid, err)
	}
	for _, a := range strings.Split(r.Targets[1].Addr, ",") {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("cluster node %s still accepts connections after the run", a)
		}
	}
}

// TestFailedTarget: an unreachable target is reported as failed, the others
// are measured, and the run ends with an error naming it.
func TestFailedTarget(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r.json")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	args := append(targets(), "-other", "dead="+dead, "-n", "50", "-conns", "2", "-rounds", "1", "-json", out,
		"-progress=false", "-prefix", "bench-it-failed:")
	err = mainErr(t.Context(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "target(s) failed: dead") {
		t.Fatalf("err %v, want the dead target named", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Targets) != 3 || r.Targets[0].Ops != 50 || r.Targets[1].Ops != 50 ||
		!strings.Contains(r.Targets[2].Failed, "connection refused") {
		t.Errorf("targets %+v", r.Targets)
	}
}
