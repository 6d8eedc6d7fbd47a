// Package router sends commands to the nodes of a Redis Cluster: hash slot
// math, the topology snapshot and its refresh, multiplexed pipelined node
// connections, and the handling of MOVED, ASK, TRYAGAIN, CLUSTERDOWN and
// LOADING replies. Callers never see a redirection.
//
// Data path: Send routes a Request by slot through the current immutable
// topology snapshot to a node pipe; the pipe's writer batches requests into
// one write; its reader completes them in FIFO order; Wait follows redirects
// and retries within a bounded window.
package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/redis/go-redis/v9"
)

// node is one cluster node: its multiplexed pipes per protocol version.
// RESP2 pipes exist from the start; RESP3 pipes are created on first use.
type node struct {
	addr   string
	opts   *Options
	pipes2 []*pipe
	pipes3 atomic.Pointer[[]*pipe]

	mu     sync.Mutex // guards creating pipes3, closed and idle
	closed bool
	idle   [2][]*Dedicated // idle dedicated connections, by protocol (RESP2, RESP3)
}

func newNode(addr string, opts *Options) *node {
	n := &node{addr: addr, opts: opts, pipes2: make([]*pipe, opts.ConnsPerNode)}
	for i := range n.pipes2 {
		n.pipes2[i] = newPipe(addr, resp.RESP2, opts)
	}
	return n
}

func (n *node) pipe(conn, proto int) *pipe {
	if conn < 0 {
		conn = -conn
	}
	if proto != resp.RESP3 {
		return n.pipes2[conn%len(n.pipes2)]
	}
	ps := n.pipes3.Load()
	if ps == nil {
		n.mu.Lock()
		if ps = n.pipes3.Load(); ps == nil {
			created := make([]*pipe, n.opts.ConnsPerNode)
			for i := range created {
				created[i] = newPipe(n.addr, resp.RESP3, n.opts)
				if n.closed {
					created[i].close() // requests to a closed node fail with ErrClosed
				}
			}
			ps = &created
			n.pipes3.Store(ps)
		}
		n.mu.Unlock()
	}
	return (*ps)[conn%len(*ps)]
}

func (n *node) allPipes() []*pipe {
	ps := append([]*pipe(nil), n.pipes2...)
	if p3 := n.pipes3.Load(); p3 != nil {
		ps = append(ps, *p3...)
	}
	return ps
}

func (n *node) close() {
	n.mu.Lock()
	n.closed = true
	idle := n.idle
	n.idle = [2][]*Dedicated{}
	n.mu.Unlock()
	for _, ds := range idle {
		for _, d := range ds {
			d.Close()
		}
	}
	for _, p := range n.allPipes() {
		p.close()
	}
}

// Router routes requests to the nodes of one cluster. It is safe for
// concurrent use.
type Router struct {
	opts Options

	topo atomic.Pointer[topology]

	mu      sync.Mutex               // guards nodes, control, retired
	nodes   map[string]*node         // every node the proxy may talk to, by address
	control map[string]*redis.Client // control-plane clients, by address
	retired map[string]time.Time     // nodes gone from the topology, with the time they left

	refreshCh chan string // lazy refresh requests (reason); capacity 1
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New returns a Router for the cluster reached through opts.Seeds. It does
// not connect; call Start.
func New(opts Options) (*Router, error) {
	if len(opts.Seeds) == 0 {
		return nil, errors.New("router: no seed addresses")
	}
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		opts:      opts,
		nodes:     map[string]*node{},
		control:   map[string]*redis.Client{},
		retired:   map[string]time.Time{},
		refreshCh: make(chan string, 1),
		ctx:       ctx,
		cancel:    cancel,
	}
	return r, nil
}

// Start loads the topology, retrying until ctx ends, then starts the
// background refresh and the connection watchdog.
func (r *Router) Start(ctx context.Context) error {
	var err error
	for {
		if err = r.refresh(ctx, "start"); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("router: initial topology: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	r.wg.Add(2)
	go r.refreshLoop()
	go r.watchdog()
	return nil
}

// Close stops background work and closes every connection. Requests still
// queued fail with ErrClosed.
func (r *Router) Close() {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	nodes := r.nodes
	control := r.control
	r.nodes, r.control = map[string]*node{}, map[string]*redis.Client{}
	r.mu.Unlock()
	for _, n := range nodes {
		n.close()
	}
	for _, c := range control {
		c.Close()
	}
}

// node returns the node for addr, creating it (connections are dialled on
// first use, never here).
func (r *Router) node(addr string) *node {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.nodes[addr]
	if n == nil {
		n = newNode(addr, &r.opts)
		r.nodes[addr] = n
	}
	delete(r.retired, addr)
	return n
}

// controlClient returns the control-plane client for addr (topology, COMMAND).
func (r *Router) controlClient(addr string) *redis.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.control[addr]
	if c == nil {
		c = redis.NewClient(&redis.Options{
			Addr:            addr,
			Username:        r.opts.Username,
			Password:        r.opts.Password,
			TLSConfig:       r.opts.TLS,
			Protocol:        2,
			DialTimeout:     r.opts.DialTimeout,
			ReadTimeout:     r.opts.DialTimeout,
			WriteTimeout:    r.opts.DialTimeout,
			PoolSize:        2,
			MaxRetries:      -1,
			DisableIdentity: true,
		})
		r.control[addr] = c
	}
	return c
}

// Client returns a go-redis client for a master, for control-plane commands
// such as COMMAND. It must not be closed by the caller.
func (r *Router) Client() (*redis.Client, error) {
	t := r.topo.Load()
	if t == nil || len(t.masters) == 0 {
		return nil, ErrNoTopology
	}
	return r.controlClient(t.masters[rand.IntN(len(t.masters))].addr), nil
}

// Shards returns the current layout (a copy), for CLUSTER-style introspection.
func (r *Router) Shards() []Shard {
	t := r.topo.Load()
	if t == nil {
		return nil
	}
	return append([]Shard(nil), t.shards...)
}

// Masters returns the addresses of the current masters.
func (r *Router) Masters() []string {
	t := r.topo.Load()
	if t == nil {
		return nil
	}
	out := make([]string, len(t.masters))
	for i, n := range t.masters {
		out[i] = n.addr
	}
	return out
}

// MastersBySlot returns the current masters ordered by the lowest slot each
// serves. A master's position survives a failover (its replica takes over
// the same slots), which makes it fit for cursors that span the cluster.
func (r *Router) MastersBySlot() []string {
	t := r.topo.Load()
	if t == nil {
		return nil
	}
	shards := append([]Shard(nil), t.shards...)
	sort.Slice(shards, func(a, b int) bool { return shards[a].Slots[0][0] < shards[b].Slots[0][0] })
	out := make([]string, len(shards))
	for i, sh := range shards {
		out[i] = sh.Master.Addr
	}
	return out
}

// Nodes returns the addresses of every node in the current topology:
// masters, then replicas.
func (r *Router) Nodes() []string {
	t := r.topo.Load()
	if t == nil {
		return nil
	}
	var out []string
	for _, sh := range t.shards {
		out = append(out, sh.Master.Addr)
	}
	for _, sh := range t.shards {
		for _, rep := range sh.Replicas {
			out = append(out, rep.Addr)
		}
	}
	return out
}

// MasterOf returns the address of the master serving slot, or "".
func (r *Router) MasterOf(slot int) string {
	t := r.topo.Load()
	if t == nil || slot < 0 || slot >= SlotCount || t.slots[slot] == 0 {
		return ""
	}
	return t.master(slot).addr
}

// SlotsCovered returns how many slots have a master in the current topology.
func (r *Router) SlotsCovered() int {
	if t := r.topo.Load(); t != nil {
		return t.covered
	}
	return 0
}

// LayoutVersion identifies the cluster layout requests are routed by: it
// changes each time a refresh finds the layout changed (slots moved, a
// failover, nodes added or removed), and is 0 before the first. A client
// whose earlier requests are still unanswered when it changes can wait for
// them before routing the next, so that one routed by the old layout (and
// about to be redirected) does not run after a later one routed by the new.
func (r *Router) LayoutVersion() uint64 {
	if t := r.topo.Load(); t != nil {
		return t.version
	}
	return 0
}

// Refresh asks for a topology refresh soon (lazily, with a cooldown).
func (r *Router) Refresh(reason string) {
	select {
	case r.refreshCh <- reason:
	default: // one is already pending
	}
}

func (r *Router) refreshLoop() {
	defer r.wg.Done()
	tick := time.NewTicker(r.opts.RefreshInterval)
	defer tick.Stop()
	var last time.Time
	for {
		reason := "periodic"
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		case reason = <-r.refreshCh:
			if wait := r.opts.RefreshCooldown - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-r.ctx.Done():
					return
				}
			}
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(r.ctx, 2*r.opts.DialTimeout)
		if err := r.refresh(ctx, reason); err != nil && r.ctx.Err() == nil {
			r.opts.Logger.Warn("topology refresh failed", "reason", reason, "err", err)
		}
		cancel()
		r.closeRetired()
	}
}

// refresh asks the known masters, then replicas, then the seeds, for the
// layout, and installs the first answer as the new snapshot.
func (r *Router) refresh(ctx context.Context, reason string) error {
	var cands []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			cands = append(cands, a)
		}
	}
	if t := r.topo.Load(); t != nil {
		perm := rand.Perm(len(t.shards))
		for _, i := range perm {
			add(t.shards[i].Master.Addr)
		}
		for _, i := range perm {
			for _, rep := range t.shards[i].Replicas {
				add(rep.Addr)
			}
		}
	}
	for _, s := range r.opts.Seeds {
		add(s)
	}
	var errs []error
	for _, addr := range cands {
		shards, err := discover(ctx, r.controlClient(addr), r.opts.TLS != nil)
		if err == nil && len(shards) == 0 {
			err = errors.New("node reports no slot owners")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r.install(shards, reason)
		return nil
	}
	err := fmt.Errorf("router: topology refresh: %w", errors.Join(errs...))
	r.opts.Observer.TopologyRefreshed(reason, r.SlotsCovered(), err)
	return err
}

func (r *Router) install(shards []Shard, reason string) {
	old := r.topo.Load()
	if old != nil && sameLayout(old.shards, shards) {
		r.opts.Observer.TopologyRefreshed(reason, old.covered, nil)
		return
	}
	t := &topology{shards: shards, version: 1}
	if old != nil {
		t.version = old.version + 1
	}
	for _, sh := range shards {
		t.masters = append(t.masters, r.node(sh.Master.Addr))
		var reps []*node
		for _, rep := range sh.Replicas {
			reps = append(reps, r.node(rep.Addr))
		}
		t.replicas = append(t.replicas, reps)
		idx := uint16(len(t.masters)) // 1 + index; a cluster has far fewer than 65,535 shards
		for _, rg := range sh.Slots {
			for s := max(rg[0], 0); s <= min(rg[1], SlotCount-1); s++ {
				if t.slots[s] == 0 {
					t.covered++
				}
				t.slots[s] = idx
			}
		}
	}
	r.topo.Store(t)
	// Nodes no longer in the layout are closed after a grace period.
	inUse := map[string]bool{}
	for _, sh := range shards {
		inUse[sh.Master.Addr] = true
		for _, rep := range sh.Replicas {
			inUse[rep.Addr] = true
		}
	}
	r.mu.Lock()
	for addr := range r.nodes {
		if !inUse[addr] {
			if _, ok := r.retired[addr]; !ok {
				r.retired[addr] = time.Now()
			}
		}
	}
	r.mu.Unlock()
	r.opts.Logger.Info("topology updated", "reason", reason, "masters", len(t.masters), "slots_covered", t.covered)
	r.opts.Observer.TopologyRefreshed(reason, t.covered, nil)
}

func (r *Router) closeRetired() {
	var victims []*node
	r.mu.Lock()
	for addr, since := range r.retired {
		if time.Since(since) < r.opts.RetiredGrace {
			continue
		}
		if n := r.nodes[addr]; n != nil {
			victims = append(victims, n)
			delete(r.nodes, addr)
		}
		if c := r.control[addr]; c != nil {
			c.Close()
			delete(r.control, addr)
		}
		delete(r.retired, addr)
	}
	r.mu.Unlock()
	for _, n := range victims {
		n.close()
	}
}

// watchdog kills connections that hold requests without any reply for
// ReadTimeout (a node that accepts TCP but never answers).
func (r *Router) watchdog() {
	defer r.wg.Done()
	tick := max(r.opts.ReadTimeout/10, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var pipes []*pipe
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		pipes = pipes[:0]
		r.mu.Lock()
		for _, n := range r.nodes {
			pipes = append(pipes, n.allPipes()...)
		}
		r.mu.Unlock()
		for _, p := range pipes {
			if w := p.cur.Load(); w != nil {
				w.check(tick, r.opts.ReadTimeout)
			}
		}
	}
}

// Send routes req and queues it on a node connection. It may block while
// that connection's queue is full (backpressure). Follow with Wait.
func (r *Router) Send(req *Request) {
	req.state.Store(reqPending) // a new attempt
	req.asking, req.toReplica = false, false
	n, err := r.route(req)
	if err != nil {
		req.complete(nil, err)
		return
	}
	r.sendTo(n, req)
}

// route returns the node req must go to now.
func (r *Router) route(req *Request) (*node, error) {
	var n *node
	if req.Addr != "" {
		n = r.node(req.Addr)
	} else if t := r.topo.Load(); t == nil {
		return nil, ErrNoTopology
	} else if req.Slot >= 0 {
		i := int(t.slots[req.Slot&(SlotCount-1)]) - 1
		if i < 0 {
			return nil, ErrNoRoute
		}
		n = t.masters[i]
		if req.ReadOnly && r.opts.ReadFrom == ReadPreferReplica && !req.noReplica {
			if rep := pickReplica(t.replicas[i], req.Conn); rep != nil {
				n = rep
				req.toReplica = true
			}
		}
	} else if len(t.masters) > 0 {
		c := req.Conn
		if c < 0 {
			c = -c
		}
		n = t.masters[c%len(t.masters)]
	}
	if n == nil {
		return nil, ErrNoRoute
	}
	return n, nil
}

// replicaOf returns the replica of req's slot's master that req.Conn
// picks, or nil when there is none.
func (r *Router) replicaOf(req *Request) *node {
	t := r.topo.Load()
	if t == nil || req.Slot < 0 {
		return nil
	}
	i := int(t.slots[req.Slot&(SlotCount-1)]) - 1
	if i < 0 {
		return nil
	}
	return pickReplica(t.replicas[i], req.Conn)
}

// pickReplica returns the replica of reps that the client connection conn
// reads from (one per client, so that its reads stay in order), or nil.
func pickReplica(reps []*node, conn int) *node {
	if len(reps) == 0 {
		return nil
	}
	if conn < 0 {
		conn = -conn
	}
	return reps[conn%len(reps)]
}

func (r *Router) sendTo(n *node, req *Request) {
	req.state.Store(reqPending) // a new attempt
	req.Reply, req.Err, req.written = nil, nil, false
	req.node = n
	n.pipe(req.Conn, req.Proto).send(req)
}

// Wait waits for req to complete, following MOVED and ASK redirections and
// retrying TRYAGAIN, CLUSTERDOWN, LOADING and unreachable nodes within the
// retry window. On return Reply holds the final reply, or Err why there is
// none.
func (r *Router) Wait(req *Request) {
	if req.group != nil {
		req.group = nil // Group.Wait returned: retries are waited for one by one
	}
	for {
		req.wait()
		if !r.retry(req) {
			return
		}
	}
}

// Do is Send followed by Wait.
func (r *Router) Do(req *Request) {
	r.Send(req)
	r.Wait(req)
}

// retry decides whether the attempt that just ended must be made again, and
// if so sends it again.
func (r *Router) retry(req *Request) bool {
	if r.opts.ReadFrom == ReadPreferMaster && req.ReadOnly && !req.toReplica && !req.noReplica &&
		req.Addr == "" && !req.asking && req.redirects == 0 && req.Err != nil && (!req.written || req.Resendable) &&
		(errors.Is(req.Err, ErrUnavailable) || errors.Is(req.Err, ErrConnLost) || errors.Is(req.Err, ErrTimeout)) {
		// The master is out of reach: a replica answers, at once.
		if n := r.replicaOf(req); n != nil {
			req.toReplica, req.fellBack = true, true
			r.sendTo(n, req)
			return true
		}
	}
	if req.toReplica && (req.Err != nil || isUnavailable(req.Reply)) {
		// The replica failed the read, is loading, or lost its master:
		// the master answers it (at once: it is not the master that failed,
		// unless the read came to the replica because it had; then the
		// master is retried as any failed request is, or not after a
		// timeout).
		req.noReplica = true
		if !req.fellBack && (req.Err == nil || !req.written || req.Resendable) {
			r.Send(req)
			return true
		}
	}
	if req.Err != nil {
		if req.written && !req.Resendable {
			return false // may have been applied: the client must decide
		}
		if errors.Is(req.Err, ErrTimeout) {
			// The node accepts connections but does not answer: another
			// attempt would wait ReadTimeout on it again, holding even a
			// read for the whole retry window. ReadTimeout bounds the wait.
			return false
		}
		if errors.Is(req.Err, ErrClosed) && r.ctx.Err() != nil {
			return false
		}
		r.Refresh("error")
		return r.resendLater(req)
	}
	switch r.redirect(req) {
	case redirectNow:
		r.sendTo(r.node(req.redirectTo), req)
		return true
	case redirectLater:
		return r.resendLater(req)
	}
	return false
}

type redirectAction int

const (
	redirectNone  redirectAction = iota // final reply
	redirectNow                         // MOVED/ASK: send again at once to req.Addr (req.asking set)
	redirectLater                       // TRYAGAIN, CLUSTERDOWN, LOADING: back off, route again
)

// redirect looks at req's reply. For MOVED and ASK it points req at the
// node named in the reply (req.Addr; for MOVED only for this attempt, the
// topology refresh does the rest) and sets req.asking.
func (r *Router) redirect(req *Request) redirectAction {
	if len(req.Reply) == 0 || req.Reply[0] != '-' {
		return redirectNone
	}
	msg := resp.ErrorText(req.Reply)
	switch {
	case bytes.HasPrefix(msg, []byte("MOVED ")), bytes.HasPrefix(msg, []byte("ASK ")):
		ask := msg[0] == 'A'
		_, addr, ok := parseRedirect(msg)
		if !ok {
			return redirectNone
		}
		if addr[0] == ':' && req.node != nil {
			// "MOVED 3999 :6381": the host is unknown to the cluster and is
			// the one of the node that answered.
			host, _, _ := net.SplitHostPort(req.node.addr)
			addr = net.JoinHostPort(host, addr[1:])
		}
		if req.redirects++; req.redirects > r.opts.MaxRedirects {
			req.Reply, req.Err = nil, ErrTooManyRedirects
			return redirectNone
		}
		if ask {
			r.opts.Observer.Redirected("ask")
		} else {
			r.opts.Observer.Redirected("moved")
			r.Refresh("moved")
		}
		// asking is read by the pipe's writer goroutine once queued: it is
		// set before sending and not touched until the attempt completes.
		req.asking = ask
		req.redirectTo = addr
		return redirectNow
	case bytes.HasPrefix(msg, []byte("TRYAGAIN")):
		r.opts.Observer.Redirected("tryagain")
		return redirectLater
	case bytes.HasPrefix(msg, []byte("CLUSTERDOWN")):
		r.opts.Observer.Redirected("clusterdown")
		r.Refresh("clusterdown")
		return redirectLater
	case bytes.HasPrefix(msg, []byte("LOADING")), bytes.HasPrefix(msg, []byte("MASTERDOWN")):
		r.opts.Observer.Redirected("loading")
		return redirectLater
	}
	return redirectNone
}

// backoff waits before the next attempt of req, growing with its attempts,
// within the retry window. It reports false once the window has passed (or
// the router is closing); req keeps its last reply or error then.
func (r *Router) backoff(req *Request) bool {
	now := time.Now()
	if req.deadline.IsZero() {
		req.deadline = now.Add(r.opts.RetryWindow)
	}
	left := req.deadline.Sub(now)
	if left <= 0 {
		if errors.Is(req.Err, ErrNoRoute) || errors.Is(req.Err, ErrNoTopology) {
			req.Err = fmt.Errorf("%w (retried for %v)", req.Err, r.opts.RetryWindow)
		}
		return false
	}
	req.attempts++
	wait := min(time.Duration(1<<min(req.attempts, 8))*5*time.Millisecond, 250*time.Millisecond, left)
	select {
	case <-time.After(wait):
		return true
	case <-r.ctx.Done():
		return false
	}
}

// resendLater backs off, then routes req again by the current topology.
func (r *Router) resendLater(req *Request) bool {
	if !r.backoff(req) {
		return false
	}
	r.Send(req)
	return true
}

// isUnavailable reports whether reply says the node cannot serve now
// (LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN).
func isUnavailable(reply []byte) bool {
	if len(reply) == 0 || reply[0] != '-' {
		return false
	}
	msg := resp.ErrorText(reply)
	for _, p := range [][]byte{[]byte("LOADING"), []byte("MASTERDOWN"), []byte("CLUSTERDOWN"), []byte("TRYAGAIN")} {
		if bytes.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// parseRedirect parses "MOVED 3999 127.0.0.1:6381" or "ASK ...".
func parseRedirect(msg []byte) (slot int, addr string, ok bool) {
	f := bytes.Fields(msg)
	if len(f) != 3 {
		return 0, "", false
	}
	s, err := strconv.Atoi(string(f[1]))
	if err != nil || s < 0 || s >= SlotCount {
		return 0, "", false
	}
	return s, string(f[2]), true
}

// Inflight returns, by node address, the requests written to the node's
// shared connections and not yet answered (dedicated connections excluded).
// It reads counters the connections keep anyway, so it costs the data path
// nothing; metrics call it at scrape time.
func (r *Router) Inflight() map[string]int {
	r.mu.Lock()
	nodes := make([]*node, 0, len(r.nodes))
	for _, n := range r.nodes {
		nodes = append(nodes, n)
	}
	r.mu.Unlock()
	out := make(map[string]int, len(nodes))
	for _, n := range nodes {
		sum := 0
		for _, p := range n.allPipes() {
			sum += p.inflight()
		}
		out[n.addr] = sum
	}
	return out
}
