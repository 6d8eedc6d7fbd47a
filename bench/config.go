package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/load"
)

// Limits on the load flags; values outside are refused with a clear error.
const (
	maxConns    = 50000
	maxPipeline = 10000
	maxSize     = 64 << 20
	maxMulti    = 1000
	maxRounds   = 100
	maxSubs     = 10000
)

// scenarios are the -scenario values, with their default load shape.
var scenarioNames = []string{"getset", "pipeline", "mget", "mset", "pubsub", "llm", "conns"}

// other is one -other name=ADDR target.
type other struct {
	name, addr string
}

// config is the parsed command line.
type config struct {
	proxy    string
	proxyPID int
	direct   []string
	others   []other
	otherPID map[string]int

	local     bool
	procs     int
	localDir  string
	proxyBin  string
	proxyArgs string

	scenario string
	rounds   int
	n        int64
	duration time.Duration
	timeout  time.Duration
	load     load.Config

	jsonOut, mdOut, svgOut string
	progress               bool
	args                   []string
}

type otherList struct{ c *config }

func (o otherList) String() string { return "" }
func (o otherList) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" || addr == "" {
		return fmt.Errorf("want name=host:port, got %q", v)
	}
	o.c.others = append(o.c.others, other{name: name, addr: addr})
	return nil
}

type pidList struct{ c *config }

func (p pidList) String() string { return "" }
func (p pidList) Set(v string) error {
	name, pid, ok := strings.Cut(v, "=")
	n, err := strconv.Atoi(pid)
	if !ok || name == "" || err != nil || n <= 0 {
		return fmt.Errorf("want name=PID (a positive process id), got %q", v)
	}
	p.c.otherPID[name] = n
	return nil
}

// parseArgs reads and validates the command line.
func parseArgs(args []string, out io.Writer) (*config, error) {
	c := &config{otherPID: map[string]int{}, args: args}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	var direct, ratio string
	var n int64
	fs.StringVar(&c.proxy, "proxy", "", "`host:port` of the proxy (a single endpoint)")
	fs.IntVar(&c.proxyPID, "proxy-pid", 0, "`pid` of the proxy process, for its CPU time and memory (automatic with -local)")
	fs.StringVar(&direct, "direct", "", "comma-separated cluster `seeds` (host:port), reached directly with slot routing")
	fs.Var(otherList{c}, "other", "another endpoint as `name=host:port` (repeatable), e.g. another proxy")
	fs.Var(pidList{c}, "other-pid", "`name=pid` of an -other target's process, for its CPU time and memory (repeatable)")
	fs.BoolVar(&c.local, "local", false, "start a local six-node cluster and the proxy (built from ./cmd/proxy) and target both")
	fs.IntVar(&c.procs, "procs", 1, "with -local: the proxy's -procs (GOMAXPROCS); 0: Go's default")
	fs.StringVar(&c.localDir, "local-dir", "", "with -local: `directory` for the cluster and proxy (default: a temporary one, removed at exit)")
	fs.StringVar(&c.proxyBin, "proxy-bin", "", "with -local: run this proxy `binary` instead of building ./cmd/proxy")
	fs.StringVar(&c.proxyArgs, "proxy-args", "", "with -local: extra proxy `flags`, space-separated")
	fs.StringVar(&c.scenario, "scenario", "getset", "load: "+strings.Join(scenarioNames, ", "))
	fs.IntVar(&c.rounds, "rounds", 3, "rounds; each round runs every target once, in rotating order")
	fs.Int64Var(&n, "n", 0, "operations per target per round (default depends on the scenario: 100000; llm 2000 flows; pubsub 20000 messages; conns 10 batches per connection)")
	fs.DurationVar(&c.duration, "duration", 0, "run each target this long per round instead of -n operations")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "abort a round that takes longer")
	fs.IntVar(&c.load.Conns, "conns", 0, "connections (default 50; conns: 1000; llm: 16)")
	fs.IntVar(&c.load.Pipeline, "pipeline", 0, "commands in flight per connection (default 1; pipeline: 16; conns: 100)")
	fs.IntVar(&c.load.Keys, "keys", 100000, "key space")
	fs.IntVar(&c.load.Size, "size", 64, "value (and pubsub payload) size in bytes")
	fs.StringVar(&ratio, "ratio", "1:1", "getset/pipeline/conns: `SET:GET` ratio")
	fs.IntVar(&c.load.Multi, "multi", 10, "mget/mset: keys per command")
	fs.IntVar(&c.load.Pubs, "pubs", 1, "pubsub: publishers")
	fs.IntVar(&c.load.Subs, "subs", 10, "pubsub: subscribers, each on every channel (fan-out)")
	fs.IntVar(&c.load.Channels, "channels", 1, "pubsub: channels")
	fs.IntVar(&c.load.Turns, "turns", 20, "llm: requests per conversation")
	fs.IntVar(&c.load.Prompt, "prompt", 2048, "llm: prompt size in bytes")
	fs.IntVar(&c.load.Answer, "answer", 1024, "llm: answer size in bytes")
	fs.IntVar(&c.load.Tenants, "tenants", 8, "llm: tenants")
	fs.Float64Var(&c.load.HitRatio, "hit-ratio", 0.3, "llm: share of requests repeating one of 16 popular prompts (cache hits once filled)")
	fs.StringVar(&c.load.Prefix, "prefix", "bench:", "key and channel prefix")
	fs.Int64Var(&c.load.Seed, "seed", 1, "random seed (same seed, same key sequence)")
	fs.StringVar(&c.jsonOut, "json", "", "also write the report as JSON to `file`")
	fs.StringVar(&c.mdOut, "md", "", "also write the report as Markdown to `file`")
	fs.StringVar(&c.svgOut, "svg", "", "also write a chart (throughput and p99 per target) as SVG to `file`")
	fs.BoolVar(&c.progress, "progress", true, "show progress on stderr (one updating line on a terminal, a line every 5 s otherwise)")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: go run ./bench [flags]\n\n"+
			"Runs one scenario against every target in alternating rounds and reports each target's\n"+
			"throughput, latency percentiles and ratio to direct. Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if direct != "" {
		for _, s := range strings.Split(direct, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.direct = append(c.direct, s)
			}
		}
	}
	var err error
	if c.load.SetRatio, c.load.GetRatio, err = parseRatio(ratio); err != nil {
		return nil, err
	}
	c.n = n
	c.applyScenarioDefaults(set)
	if err := c.validate(set); err != nil {
		return nil, err
	}
	return c, nil
}

// parseRatio parses "SET:GET" (non-negative integers, not both zero).
func parseRatio(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, ":")
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || x < 0 || y < 0 || x+y == 0 || x > 1000 || y > 1000 {
		return 0, 0, fmt.Errorf("-ratio %q: want SET:GET, two integers 0..1000, not both 0 (e.g. 1:10)", s)
	}
	return x, y, nil
}

// applyScenarioDefaults sets the load shape each scenario defaults to, for
// flags not given.
func (c *config) applyScenarioDefaults(set map[string]bool) {
	conns, pipeline := 50, 1
	switch c.scenario {
	case "pipeline":
		pipeline = 16
	case "conns":
		conns, pipeline = 1000, 100
	case "llm":
		conns = 16
	}
	if !set["conns"] {
		c.load.Conns = conns
	}
	if !set["pipeline"] {
		c.load.Pipeline = pipeline
	}
	if c.n == 0 && c.duration == 0 {
		switch c.scenario {
		case "llm":
			c.n = 2000
		case "pubsub":
			c.n = 20000
		case "conns":
			c.n = int64(c.load.Conns) * int64(c.load.Pipeline) * 10
		default:
			c.n = 100000
		}
	}
}

func (c *config) validate(set map[string]bool) error {
	known := false
	for _, s := range scenarioNames {
		known = known || s == c.scenario
	}
	if !known {
		return fmt.Errorf("-scenario %q: want one of %s", c.scenario, strings.Join(scenarioNames, ", "))
	}
	if c.local && (c.proxy != "" || len(c.direct) > 0) {
		return errors.New("-local starts its own proxy and cluster: drop -proxy and -direct")
	}
	if !c.local && c.proxy == "" && len(c.direct) == 0 && len(c.others) == 0 {
		return errors.New("no target: give -local, or at least one of -proxy, -direct, -other")
	}
	for _, f := range []string{"procs", "local-dir", "proxy-bin", "proxy-args"} {
		if set[f] && !c.local {
			return fmt.Errorf("-%s needs -local", f)
		}
	}
	if c.proxyPID != 0 && (c.proxyPID < 0 || c.proxy == "") {
		return errors.New("-proxy-pid needs -proxy and a positive process id")
	}
	addrs := map[string]string{}
	if c.proxy != "" {
		addrs["-proxy"] = c.proxy
	}
	for i, d := range c.direct {
		addrs[fmt.Sprintf("-direct seed %d", i+1)] = d
	}
	names := map[string]bool{"proxy": true, "direct": true}
	for _, o := range c.others {
		if names[o.name] {
			return fmt.Errorf("-other %s=%s: the name %q is taken", o.name, o.addr, o.name)
		}
		names[o.name] = true
		addrs["-other "+o.name] = o.addr
	}
	for name := range c.otherPID {
		if !names[name] || name == "proxy" || name == "direct" {
			return fmt.Errorf("-other-pid %s: no -other target named %q", name, name)
		}
	}
	for what, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("%s %q: want host:port", what, a)
		}
	}
	if set["n"] && set["duration"] {
		return errors.New("give -n or -duration, not both")
	}
	if c.n < 0 {
		return fmt.Errorf("-n %d: want a positive count", c.n)
	}
	if set["duration"] && c.duration <= 0 {
		return fmt.Errorf("-duration %s: want a positive duration", c.duration)
	}
	if c.timeout <= 0 {
		return fmt.Errorf("-timeout %s: want a positive duration", c.timeout)
	}
	if c.procs < 0 {
		return fmt.Errorf("-procs %d: want 0 or more", c.procs)
	}
	l := c.load
	checks := []struct {
		name      string
		v, lo, hi int
	}{
		{"rounds", c.rounds, 1, maxRounds},
		{"conns", l.Conns, 1, maxConns},
		{"pipeline", l.Pipeline, 1, maxPipeline},
		{"keys", l.Keys, 1, 1 << 30},
		{"size", l.Size, 1, maxSize},
		{"multi", l.Multi, 1, maxMulti},
		{"pubs", l.Pubs, 1, maxConns},
		{"subs", l.Subs, 1, maxSubs},
		{"channels", l.Channels, 1, 10000},
		{"turns", l.Turns, 1, 10000},
		{"prompt", l.Prompt, 16, maxSize},
		{"answer", l.Answer, 1, maxSize},
		{"tenants", l.Tenants, 1, 1 << 20},
	}
	for _, ch := range checks {
		if ch.v < ch.lo || ch.v > ch.hi {
			return fmt.Errorf("-%s %d: want %d..%d", ch.name, ch.v, ch.lo, ch.hi)
		}
	}
	if c.scenario == "pubsub" && l.Size < 24 {
		return fmt.Errorf("-size %d: pubsub payloads carry a timestamp, want at least 24 bytes", l.Size)
	}
	if l.HitRatio < 0 || l.HitRatio > 1 {
		return fmt.Errorf("-hit-ratio %g: want 0..1", l.HitRatio)
	}
	if l.Prefix == "" {
		return errors.New("-prefix: want a non-empty prefix")
	}
	return nil
}
