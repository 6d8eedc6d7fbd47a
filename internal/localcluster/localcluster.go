// Package localcluster starts a real Redis Cluster made of redis-server
// processes on the loopback interface. The proxy's dev mode and every
// integration test run against it.
//
// Each node lives in its own directory, <Options.Dir>/node-<port>, holding a
// copy of the shared node settings (deploy.RedisConf, written as redis.conf),
// the cluster state file nodes.conf, the append-only files and redis.log, which
// receives the node's stdout and stderr. Per-node values (port, bind address,
// directory, passwords) are passed on the redis-server command line.
//
// The cluster is formed in Go (CLUSTER ADDSLOTSRANGE, MEET and REPLICATE over
// plain connections), not with redis-cli. Nodes run in their own process group
// with a parent-death signal, so they die with the Go process that started
// them; Cluster.Stop stops and reaps every one of them.
//
// Methods that wait (Start, WaitHealthy, Failover, RestartNode, migrations)
// poll every few tens of milliseconds; when ctx carries no deadline they are
// bounded by Options.StartTimeout.
package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// clientConfig is the launcher's TLS configuration (nil without TLS).
func (f *TLSFiles) clientConfig() (*tls.Config, error) {
	if f == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("localcluster: TLS certificate: %w", err)
	}
	ca, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("localcluster: TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("localcluster: TLS CA %s holds no certificate", f.CAFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// Defaults applied by Start to a zero Options field.
const (
	DefaultHost              = "127.0.0.1"
	DefaultMasters           = 3
	DefaultReplicasPerMaster = 1
	DefaultStartTimeout      = 30 * time.Second
)

// NoReplicas, as Options.ReplicasPerMaster, asks for a cluster of masters only
// (the zero value means DefaultReplicasPerMaster).
const NoReplicas = -1

const (
	busPortOffset = 10000 // a cluster node also listens on port+10000
	pollInterval  = 25 * time.Millisecond
	stopGrace     = 3 * time.Second // SIGTERM to SIGKILL
	opTimeout     = 2 * time.Second // one command to one node
	portAttempts  = 3               // fresh starts on picked ports that got taken meanwhile
	nodeDirPrefix = "node-"
)

// ErrRedisServerNotFound is returned, wrapped, by Start when the redis-server
// binary cannot be found.
var ErrRedisServerNotFound = errors.New("redis-server not found: install the redis-server package (make deps)")

// errStopped is returned by the methods of a stopped Cluster.
var errStopped = errors.New("localcluster: cluster is stopped")

// Options configures Start.
type Options struct {
	// Dir is the base directory; node i lives in Dir/node-<port>. Required.
	Dir string
	// Host is the IP address every node binds and announces. Default
	// "127.0.0.1".
	Host string
	// Ports are the client ports of the nodes, Masters*(1+ReplicasPerMaster)
	// of them; each node also uses port+10000 for the cluster bus. Nodes are
	// ordered by port: the lowest Masters ports are the masters, replica i
	// (counting from 0 after the masters) follows master i%Masters. Nil picks
	// free loopback ports.
	Ports []int
	// Masters is the number of masters; the 16384 slots are split evenly
	// between them as redis-cli does. Default 3.
	Masters int
	// ReplicasPerMaster is the number of replicas of each master. Default 1;
	// NoReplicas for none.
	ReplicasPerMaster int
	// RedisServer is the redis-server binary. Default "redis-server" looked up
	// in PATH.
	RedisServer string
	// Password, when set, is passed to every node as requirepass and
	// masterauth, and used by the launcher's own connections.
	Password string
	// TLS, when set, makes a TLS-only cluster: each node serves TLS on its
	// port (no plain port), and the cluster bus and replication use TLS too.
	// Nodes require client certificates signed by TLS.CAFile (Redis's
	// default); the launcher presents the node certificate, which must
	// therefore be valid for client authentication too.
	TLS *TLSFiles
	// ExtraArgs are appended to every redis-server command line, after the
	// launcher's own arguments (so they override them), e.g. "--save", "".
	ExtraArgs []string
	// Reuse keeps a cluster formed by an earlier run: if every node directory
	// holds a nodes.conf describing exactly these ports, Start only starts the
	// processes and waits for the cluster to be healthy. If the directories are
	// partial or inconsistent, or the old cluster does not become healthy in
	// half of StartTimeout, the node directories are wiped and a new cluster
	// is formed. Reuse requires Ports. Without Reuse, existing node
	// directories are always wiped.
	Reuse bool
	// Logger receives progress messages. Nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds Start as a whole (processes, formation, health),
	// and every later wait whose ctx has no deadline. Default 30s.
	StartTimeout time.Duration
}

// TLSFiles are the PEM files of a TLS cluster (Options.TLS).
type TLSFiles struct {
	CertFile, KeyFile string // every node's certificate and key
	CAFile            string // the CA that signs node and client certificates
}

// Cluster is a running local Redis Cluster. Its methods are safe for
// concurrent use.
type Cluster struct {
	opts  Options // normalized
	tls   *tls.Config
	bin   string // redis-server path
	log   *slog.Logger
	nodes []*Node // by port; fixed once Start returns

	mu      sync.Mutex
	clients map[string]*redis.Client // by node address
	stopped bool
}

// Node is one redis-server process of the cluster.
type Node struct {
	// Addr is "host:port".
	Addr string
	// Port is the client port; the cluster bus uses Port+10000.
	Port int
	// Dir is the node's working directory (nodes.conf, AOF, redis.log).
	Dir string

	mu   sync.Mutex
	proc *process // nil before the first start
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	p := n.process()
	return p != nil && !p.exited()
}

// PID returns the process id of the node's redis-server, or 0 when it is not
// running.
func (n *Node) PID() int {
	p := n.process()
	if p == nil || p.exited() {
		return 0
	}
	return p.pid
}

// LogPath returns the path of the file receiving the node's output.
func (n *Node) LogPath() string { return filepath.Join(n.Dir, "redis.log") }

func (n *Node) process() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Start launches the nodes described by opts, forms the cluster (or reuses
// one, see Options.Reuse) and waits until it is healthy. On failure every
// process it started is stopped.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	bin, err := lookRedisServer(o.RedisServer)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("localcluster: create base dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()

	tlsCfg, err := o.TLS.clientConfig()
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		tls:     tlsCfg,
		opts:    o,
		bin:     bin,
		log:     o.Logger,
		clients: make(map[string]*redis.Client),
	}
	began := time.Now()
	if o.Ports != nil {
		if err := checkPortsFree(ctx, o.Host, o.Ports); err != nil {
			return nil, err
		}
		c.setNodes(o.Ports)
		if o.Reuse {
			if ok, why := reusable(c.nodes); ok {
				err := c.startExisting(ctx)
				if err == nil {
					c.log.Info("localcluster: reused cluster", "dir", o.Dir, "nodes", len(c.nodes), "elapsed", time.Since(began).Round(time.Millisecond))
					return c, nil
				}
				if ctx.Err() != nil {
					return nil, err
				}
				c.log.Warn("localcluster: existing cluster unusable, forming a new one", "dir", o.Dir, "err", err)
			} else if why != "" {
				c.log.Warn("localcluster: existing node dirs unusable, forming a new cluster", "dir", o.Dir, "reason", why)
			}
		}
		if err := c.startFresh(ctx); err != nil {
			c.abort()
			return nil, err
		}
		c.log.Info("localcluster: formed cluster", "dir", o.Dir, "nodes", len(c.nodes), "elapsed", time.Since(began).Round(time.Millisecond))
		return c, nil
	}
	for attempt := 1; ; attempt++ {
		ports, err := pickPorts(o.Host, o.nodeCount())
		if err != nil {
			return nil, err
		}
		c.setNodes(ports)
		err = c.startFresh(ctx)
		if err == nil {
			c.log.Info("localcluster: formed cluster", "dir", o.Dir, "nodes", len(c.nodes), "elapsed", time.Since(began).Round(time.Millisecond))
			return c, nil
		}
		c.abort()
		if !errors.Is(err, errPortTaken) || attempt == portAttempts || ctx.Err() != nil {
			return nil, err
		}
		for _, n := range c.nodes {
			_ = os.RemoveAll(n.Dir)
		}
		c.log.Info("localcluster: picked port taken meanwhile, retrying", "err", err)
	}
}

func (o Options) normalize() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("localcluster: Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, fmt.Errorf("localcluster: base dir: %w", err)
	}
	o.Dir = dir
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if net.ParseIP(o.Host) == nil {
		return o, fmt.Errorf("localcluster: Options.Host %q is not an IP address", o.Host)
	}
	if o.Masters == 0 {
		o.Masters = DefaultMasters
	}
	switch {
	case o.ReplicasPerMaster == 0:
		o.ReplicasPerMaster = DefaultReplicasPerMaster
	case o.ReplicasPerMaster == NoReplicas:
		o.ReplicasPerMaster = 0
	case o.ReplicasPerMaster < 0:
		return o, fmt.Errorf("localcluster: invalid ReplicasPerMaster %d", o.ReplicasPerMaster)
	}
	if o.Masters < 1 || o.Masters > SlotCount {
		return o, fmt.Errorf("localcluster: invalid Masters %d", o.Masters)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.ExtraArgs = slices.Clone(o.ExtraArgs)
	if o.Ports != nil {
		o.Ports = slices.Clone(o.Ports)
		slices.Sort(o.Ports)
		if len(o.Ports) != o.nodeCount() {
			return o, fmt.Errorf("localcluster: %d ports for %d masters with %d replicas each: want %d",
				len(o.Ports), o.Masters, o.ReplicasPerMaster, o.nodeCount())
		}
		seen := make(map[int]bool)
		for _, p := range o.Ports {
			if p < 1 || p+busPortOffset > 65535 {
				return o, fmt.Errorf("localcluster: port %d: want 1..%d (the bus uses port+%d)", p, 65535-busPortOffset, busPortOffset)
			}
			if seen[p] || seen[p+busPortOffset] {
				return o, fmt.Errorf("localcluster: port %d collides with another node's port or bus port", p)
			}
			seen[p], seen[p+busPortOffset] = true, true
		}
	} else if o.Reuse {
		return o, errors.New("localcluster: Options.Reuse requires fixed Options.Ports")
	}
	return o, nil
}

func (o Options) nodeCount() int { return o.Masters * (1 + o.ReplicasPerMaster) }

func lookRedisServer(name string) (string, error) {
	if name == "" {
		name = "redis-server"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("localcluster: %w (%v)", ErrRedisServerNotFound, err)
	}
	return path, nil
}

func (c *Cluster) setNodes(ports []int) {
	c.nodes = make([]*Node, len(ports))
	for i, p := range ports {
		c.nodes[i] = &Node{
			Addr: net.JoinHostPort(c.opts.Host, strconv.Itoa(p)),
			Port: p,
			Dir:  filepath.Join(c.opts.Dir, nodeDirPrefix+strconv.Itoa(p)),
		}
	}
}

// startFresh wipes the node directories, starts every node and forms the
// cluster.
func (c *Cluster) startFresh(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := os.RemoveAll(n.Dir); err != nil {
			return fmt.Errorf("localcluster: wipe %s: %w", n.Dir, err)
		}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return fmt.Errorf("localcluster: create %s: %w", n.Dir, err)
		}
	}
	began := time.Now()
	if err := c.startAll(ctx); err != nil {
		return err
	}
	c.log.Debug("localcluster: nodes answer PING", "elapsed", time.Since(began).Round(time.Millisecond))
	return c.form(ctx)
}

// startExisting starts nodes that already hold a formed cluster and waits for
// it, bounded by half of what remains of ctx. On failure the nodes are stopped
// again.
func (c *Cluster) startExisting(ctx context.Context) error {
	wait := c.opts.StartTimeout / 2
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl) / 2
	}
	hctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := c.startAll(hctx)
	if err == nil {
		err = c.waitHealthy(hctx, true)
	}
	if err != nil {
		c.abort()
	}
	return err
}

// startAll starts every node in parallel and waits until each answers PING.
func (c *Cluster) startAll(ctx context.Context) error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() { errs[i] = c.startNode(ctx, n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Nodes returns the nodes, ordered by port.
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.nodes) }

// Addrs returns the addresses ("host:port") of all nodes, ordered by port.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr
	}
	return out
}

// Node returns the node listening on addr, or nil.
func (c *Cluster) Node(addr string) *Node {
	for _, n := range c.nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Password returns the password the nodes require, "" for none.
func (c *Cluster) Password() string { return c.opts.Password }

// Stop stops every node: SIGTERM, then SIGKILL after a short grace, and waits
// until each process has exited. It is idempotent; the Cluster is unusable
// afterwards.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	c.dropClients()
	return c.stopNodes()
}

// abort stops the nodes and closes the connections of a failed start.
func (c *Cluster) abort() {
	_ = c.stopNodes()
	c.dropClients()
}

func (c *Cluster) stopNodes() error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() {
			if p := n.process(); p != nil {
				if err := p.stop(stopGrace); err != nil {
					errs[i] = fmt.Errorf("localcluster: stop node %d: %w", n.Port, err)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// client returns the launcher's connection pool to one node.
func (c *Cluster) client(addr string) (*redis.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, errStopped
	}
	if cl, ok := c.clients[addr]; ok {
		return cl, nil
	}
	cl := redis.NewClient(&redis.Options{
		Addr:            addr,
		Password:        c.opts.Password,
		TLSConfig:       c.tls,
		Protocol:        2,
		DisableIdentity: true,
		DialTimeout:     opTimeout,
		DialerRetries:   1, // callers poll

		ReadTimeout:           opTimeout,
		WriteTimeout:          opTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		PoolSize:              4,
	})
	c.clients[addr] = cl
	return cl, nil
}

// dropClient closes the pool to addr, whose connections a restart broke.
func (c *Cluster) dropClient(addr string) {
	c.mu.Lock()
	cl := c.clients[addr]
	delete(c.clients, addr)
	c.mu.Unlock()
	if cl != nil {
		_ = cl.Close()
	}
}

func (c *Cluster) dropClients() {
	c.mu.Lock()
	clients := c.clients
	c.clients = make(map[string]*redis.Client)
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.Close()
	}
}

func (c *Cluster) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// bound gives ctx the default deadline when it has none.
func (c *Cluster) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.StartTimeout)
}

func (c *Cluster) runningNodes() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// TLSConfig returns a copy of the launcher's client TLS configuration (the
// CA and the node certificate as client certificate), nil without TLS.
func (c *Cluster) TLSConfig() *tls.Config {
	if c.tls == nil {
		return nil
	}
	return c.tls.Clone()
}
