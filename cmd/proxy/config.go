package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Config is everything the proxy binary can be told. Each field is a flag;
// the same setting can come from the environment (CLUSTERPROXY_<FLAG> with
// '-' as '_', upper case) or from a config file of "flag value" lines.
// Precedence: flag, then environment, then file, then default.
type Config struct {
	Listen       string
	Seeds        []string
	MetricsAddr  string
	AnnounceAddr string

	Password     string // clients must AUTH with it
	NodeUser     string
	NodePassword string
	Security     // users, password files, TLS (security.go)

	ConnsPerNode    int
	MaxClients      int
	MaxPipeline     int
	TrackingMaxKeys int
	MaxBulk         int64
	MaxArgs         int64
	IdleTimeout     time.Duration
	DialTimeout     time.Duration
	ReadTimeout     time.Duration
	RetryWindow     time.Duration
	RefreshInterval time.Duration
	StartTimeout    time.Duration
	ShutdownTimeout time.Duration

	// ClientWriteTimeout disconnects a client that accepts no reply bytes
	// for that long (0: never).
	ClientWriteTimeout time.Duration

	WriteReplicas        int
	WriteReplicasTimeout time.Duration

	Pprof bool
	Procs int

	LogLevel  string
	LogFormat string
	ReadFrom  string

	Dev      bool
	DevDir   string
	DevPorts string

	// Tracing turns on OpenTelemetry tracing (also turned on by the OTEL_*
	// variables, see internal/tracing). SlowlogThreshold (0: every command,
	// negative: off) and SlowlogMaxLen configure the proxy's SLOWLOG.
	Tracing          bool
	SlowlogThreshold time.Duration
	SlowlogMaxLen    int

	// args and getenv are what the settings were parsed from, so that
	// SIGHUP can parse them again (with the -config file re-read).
	args   []string
	getenv func(string) string
}

// envPrefix prefixes the environment variable of every flag.
const envPrefix = "CLUSTERPROXY_"

type seedList struct{ v *[]string }

func (s seedList) String() string {
	if s.v == nil {
		return ""
	}
	return strings.Join(*s.v, ",")
}

func (s seedList) Set(v string) error {
	*s.v = nil
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			*s.v = append(*s.v, a)
		}
	}
	return nil
}

func newFlagSet(c *Config, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:6380", "`address` to accept Redis clients on")
	fs.Var(seedList{&c.Seeds}, "seeds", "comma-separated `host:port` list of cluster nodes to discover the cluster from (required unless -dev)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "`address` for /metrics, /healthz and /readyz (empty: off)")
	fs.StringVar(&c.AnnounceAddr, "announce-addr", "", "`host:port` presented in CLUSTER SLOTS/SHARDS/NODES (default: the address each client connected to)")
	fs.StringVar(&c.Password, "password", "", "`password` clients must give with AUTH (empty: no client authentication)")
	fs.StringVar(&c.NodeUser, "node-user", "", "ACL `user` for connecting to the nodes (empty: default user)")
	fs.StringVar(&c.NodePassword, "node-password", "", "`password` for connecting to the nodes (empty: none)")
	fs.IntVar(&c.ConnsPerNode, "conns-per-node", 1, "multiplexed connections per node (and per RESP version); more than 1 only helps when large replies would hold up others")
	fs.IntVar(&c.MaxClients, "max-clients", 10000, "most client connections at once")
	fs.IntVar(&c.MaxPipeline, "max-pipeline", 1024, "most commands one client may have in flight before the proxy stops reading from it")
	fs.IntVar(&c.TrackingMaxKeys, "tracking-max-keys", 1_000_000, "most keys remembered for clients' caches (CLIENT TRACKING); beyond it a key is forgotten and its readers told it changed")
	fs.Int64Var(&c.MaxBulk, "max-bulk", 512<<20, "largest bulk string a client may send, in bytes")
	fs.Int64Var(&c.MaxArgs, "max-args", 1<<20, "most arguments in one client command")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 0, "close client connections idle this long (0: never)")
	fs.DurationVar(&c.ClientWriteTimeout, "client-write-timeout", 60*time.Second, "disconnect a client that accepts no reply bytes for this long, such as one that sends commands and never reads (0: never)")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 2*time.Second, "timeout for connecting to a node")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", 10*time.Second, "a node connection with unanswered requests and no reply for this long is dropped")
	fs.DurationVar(&c.RetryWindow, "retry-window", 15*time.Second, "how long a request is held and retried while its slot has no reachable master (failover)")
	fs.DurationVar(&c.RefreshInterval, "refresh-interval", 5*time.Second, "period of the background topology refresh")
	fs.IntVar(&c.WriteReplicas, "write-replicas", 0, "acknowledge a write only once this many replicas of its master have it (WAIT after each write; -NOREPLICAS when fewer did within -write-replicas-timeout); 0: off")
	fs.DurationVar(&c.WriteReplicasTimeout, "write-replicas-timeout", time.Second, "how long a write waits for -write-replicas replicas")
	fs.DurationVar(&c.StartTimeout, "start-timeout", 60*time.Second, "how long to wait for the cluster at start")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM, how long in-flight commands may take before connections are closed")
	fs.IntVar(&c.Procs, "procs", 0, "OS threads running Go code at once (GOMAXPROCS); 0: Go's default (the CPUs available). On a small host shared with Redis nodes, 1 is cheaper per request")
	fs.BoolVar(&c.Pprof, "pprof", false, "also serve /debug/pprof/ on -metrics-addr")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&c.ReadFrom, "read-from", "master", "where read-only commands go: master; prefer-master (a replica of the slot's master while the master is out of reach); or prefer-replica (a replica of the slot's master, the master when it has none or it fails). Replicas lag: a read from one may miss a write just acknowledged")
	fs.BoolVar(&c.Dev, "dev", false, "start a local six-node cluster of redis-server processes (see -dev-dir) and proxy it")
	fs.StringVar(&c.DevDir, "dev-dir", ".data/dev-cluster", "`directory` holding the -dev cluster's node data")
	fs.StringVar(&c.DevPorts, "dev-ports", "7001-7006", "`range` of ports for the -dev cluster's six nodes")
	addSecurityFlags(fs, c)
	fs.BoolVar(&c.Tracing, "tracing", false, "record an OpenTelemetry span per command, exported over OTLP as the OTEL_* environment variables say (also on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER=otlp is set)")
	fs.DurationVar(&c.SlowlogThreshold, "slowlog-threshold", 10*time.Millisecond, "commands taking at least this long go to the proxy's SLOWLOG (0: every command, negative: off)")
	fs.IntVar(&c.SlowlogMaxLen, "slowlog-max-len", 128, "entries the proxy's SLOWLOG keeps")
	fs.String("config", "", "`file` of \"flag value\" lines (same names as the flags)")
	return fs
}

// parseConfig reads flags from args, then the environment, then the config
// file, and validates the result.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := newFlagSet(c, out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: proxy [flags]\n       proxy healthcheck [-metrics-addr ADDR]\n\n"+
			"Every flag can also be set as %s<FLAG> in the environment (upper case, '-' as '_')\n"+
			"or as a \"flag value\" line in the -config file. Flags:\n", envPrefix)
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

	file := map[string]string{}
	path := fs.Lookup("config").Value.String()
	if !set["config"] {
		path = getenv(envName("config"))
	}
	if path != "" {
		var err error
		if file, err = readConfigFile(path); err != nil {
			return nil, err
		}
		for name := range file {
			if fs.Lookup(name) == nil || name == "config" {
				return nil, fmt.Errorf("config file %s: unknown setting %q", path, name)
			}
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "config" || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			set[f.Name] = true
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("environment %s: %w", envName(f.Name), e)
			}
		} else if v, ok := file[f.Name]; ok {
			set[f.Name] = true
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("config file %s: %s: %w", path, f.Name, e)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if c.Dev && !set["allow-dangerous"] {
		// A local development cluster: FLUSHALL, KEYS and CONFIG are what
		// its user is there for.
		c.AllowDangerous = true
	}
	c.args, c.getenv = args, getenv
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, c.readSecrets()
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func readConfigFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		out[strings.TrimPrefix(name, "-")] = strings.Trim(strings.TrimSpace(value), `"`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return out, nil
}

// Validate checks the settings and names the first one that is wrong.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("-listen is required"))
	}
	if len(c.Seeds) == 0 && !c.Dev {
		errs = append(errs, errors.New("-seeds is required (or -dev to start a local cluster)"))
	}
	for _, s := range c.Seeds {
		if !strings.Contains(s, ":") {
			errs = append(errs, fmt.Errorf("-seeds: %q is not host:port", s))
		}
	}
	positive := map[string]int64{
		"-conns-per-node": int64(c.ConnsPerNode), "-max-clients": int64(c.MaxClients),
		"-max-pipeline": int64(c.MaxPipeline), "-max-bulk": c.MaxBulk, "-max-args": c.MaxArgs,
		"-dial-timeout": int64(c.DialTimeout), "-read-timeout": int64(c.ReadTimeout),
		"-retry-window": int64(c.RetryWindow), "-refresh-interval": int64(c.RefreshInterval),
		"-start-timeout": int64(c.StartTimeout), "-shutdown-timeout": int64(c.ShutdownTimeout),
		"-slowlog-max-len": int64(c.SlowlogMaxLen), "-tracking-max-keys": int64(c.TrackingMaxKeys),
	}
	for name, v := range positive {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.ConnsPerNode > 64 {
		errs = append(errs, errors.New("-conns-per-node must be at most 64"))
	}
	if c.Procs < 0 {
		errs = append(errs, errors.New("-procs must not be negative"))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, errors.New("-idle-timeout must not be negative"))
	}
	if c.ClientWriteTimeout < 0 {
		errs = append(errs, errors.New("-client-write-timeout must not be negative"))
	}
	if c.WriteReplicas < 0 {
		errs = append(errs, errors.New("-write-replicas must not be negative"))
	}
	if c.WriteReplicas > 0 && c.WriteReplicasTimeout < time.Millisecond {
		errs = append(errs, errors.New("-write-replicas-timeout must be at least 1ms"))
	}
	errs = append(errs, c.validateSecurity()...)
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("-log-format must be text or json, not %q", c.LogFormat))
	}
	if c.ReadFrom != "master" && c.ReadFrom != "prefer-master" && c.ReadFrom != "prefer-replica" {
		errs = append(errs, fmt.Errorf("-read-from must be master, prefer-master or prefer-replica, not %q", c.ReadFrom))
	}
	if c.Dev {
		if _, err := parsePorts(c.DevPorts); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("-log-level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

// parsePorts parses "7001-7006" into six ports.
func parsePorts(s string) ([]int, error) {
	var lo, hi int
	if _, err := fmt.Sscanf(s, "%d-%d", &lo, &hi); err != nil || lo <= 0 || hi > 55535 || hi-lo != 5 {
		return nil, fmt.Errorf("-dev-ports: %q is not a range of six ports like 7001-7006 (each port+10000 is the cluster bus)", s)
	}
	ports := make([]int, 0, 6)
	for p := lo; p <= hi; p++ {
		ports = append(ports, p)
	}
	return ports, nil
}
