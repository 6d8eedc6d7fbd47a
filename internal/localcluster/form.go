package localcluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// form turns freshly started, empty nodes into a cluster and waits until it
// is healthy. Slots and epochs are assigned as redis-cli --cluster create
// does; the meeting is faster (see below). The floor is redis' own: a master
// reports cluster_state:ok no sooner than 2 s after it started.
func (c *Cluster) form(ctx context.Context) error {
	m := c.opts.Masters
	began := time.Now()
	ids := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		cl, err := c.client(n.Addr)
		if err != nil {
			return err
		}
		// Distinct epochs up front spare the cluster its collision
		// resolution, which would otherwise take a few gossip rounds.
		if err := cl.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("localcluster: form: set config epoch on %s: %w", n.Addr, err)
		}
		if i < m {
			lo, hi := slotRange(i, m)
			if err := cl.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
				return fmt.Errorf("localcluster: form: add slots %d-%d to %s: %w", lo, hi, n.Addr, err)
			}
		}
		if ids[i], err = cl.ClusterMyID(ctx).Result(); err != nil {
			return fmt.Errorf("localcluster: form: cluster myid on %s: %w", n.Addr, err)
		}
	}
	// Every pair meets directly, rather than everyone meeting one node and
	// learning the others from gossip, which takes from one to several
	// seconds depending on which random nodes get pinged.
	for i, a := range c.nodes {
		cl, err := c.client(a.Addr)
		if err != nil {
			return err
		}
		for _, b := range c.nodes[i+1:] {
			if err := cl.ClusterMeet(ctx, c.opts.Host, strconv.Itoa(b.Port)).Err(); err != nil {
				return fmt.Errorf("localcluster: form: %s meet %s: %w", a.Addr, b.Addr, err)
			}
		}
	}
	err := poll(ctx, func() error {
		for _, n := range c.nodes {
			entries, err := c.clusterNodes(ctx, n)
			if err != nil {
				return err
			}
			for i, id := range ids {
				e := findID(entries, id)
				if e == nil || e.has("handshake") || e.has("noaddr") {
					return fmt.Errorf("%s does not know %s yet", n.Addr, c.nodes[i].Addr)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("localcluster: form: nodes do not meet: %w", err)
	}
	c.log.Debug("localcluster: nodes met", "elapsed", time.Since(began).Round(time.Millisecond))
	for j, n := range c.nodes[m:] {
		cl, err := c.client(n.Addr)
		if err != nil {
			return err
		}
		if err := cl.ClusterReplicate(ctx, ids[j%m]).Err(); err != nil {
			return fmt.Errorf("localcluster: form: make %s a replica of %s: %w", n.Addr, c.nodes[j%m].Addr, err)
		}
	}
	// A node met through a handshake is known at once, but its slots and
	// role only with its next regular ping, up to 2.5 s later: announce
	// every node now.
	for _, n := range c.nodes {
		if err := c.announce(ctx, n); err != nil {
			return fmt.Errorf("localcluster: form: %w", err)
		}
	}
	if err := c.waitHealthy(ctx, true); err != nil {
		return fmt.Errorf("localcluster: form: %w", err)
	}
	c.log.Debug("localcluster: cluster healthy", "elapsed", time.Since(began).Round(time.Millisecond))
	return nil
}

// announce makes every running node learn n's current role, master and
// slots at once. They otherwise spread only through the regular pings, which
// reach every node within node-timeout/2 (2.5 s). A CLUSTER MEET of an
// already known node starts a handshake whose MEET packet carries n's
// header; the receiver applies it, and n drops the handshake entry as soon
// as the reply shows the node is already known.
func (c *Cluster) announce(ctx context.Context, n *Node) error {
	cl, err := c.client(n.Addr)
	if err != nil {
		return err
	}
	for _, o := range c.runningNodes() {
		if o == n {
			continue
		}
		if err := cl.ClusterMeet(ctx, c.opts.Host, strconv.Itoa(o.Port)).Err(); err != nil {
			return fmt.Errorf("announce %s to %s: %w", n.Addr, o.Addr, err)
		}
	}
	return nil
}

// slotRange returns the slots of master i of m, computed as redis-cli does
// (0-5460, 5461-10922, 10923-16383 for three masters).
func slotRange(i, m int) (first, last int) {
	per := float64(SlotCount) / float64(m)
	cursor := 0.0
	for k := 0; ; k++ {
		last = int(math.Round(cursor + per - 1))
		if last > SlotCount || k == m-1 {
			last = SlotCount - 1
		}
		if last < first {
			last = first
		}
		if k == i {
			return first, last
		}
		first = last + 1
		cursor += per
	}
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// all 16384 slots assigned, sees every other running node connected and not
// failing, agrees with the others on the owner and replicas of every slot,
// and, when it is a replica of a running master, has finished syncing.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.waitHealthy(ctx, false); err != nil {
		return fmt.Errorf("localcluster: wait healthy: %w", err)
	}
	return nil
}

// waitHealthy polls checkHealthy. exact also wants the cluster to have
// exactly the configured nodes and number of masters.
func (c *Cluster) waitHealthy(ctx context.Context, exact bool) error {
	last := ""
	return poll(ctx, func() error {
		err := c.checkHealthy(ctx, exact)
		if err != nil && err.Error() != last {
			last = err.Error()
			c.log.Debug("localcluster: waiting for health", "reason", last)
		}
		return err
	})
}

func (c *Cluster) checkHealthy(ctx context.Context, exact bool) error {
	running := c.runningNodes()
	if len(running) == 0 {
		return stopPolling{errors.New("no node is running")}
	}
	isRunning := make(map[int]bool)
	for _, n := range running {
		isRunning[n.Port] = true
	}
	var ref string
	var refNode *Node
	for _, n := range running {
		info, err := c.stateOK(ctx, n)
		if err != nil {
			return err
		}
		if v := infoField(info, "cluster_slots_assigned"); v != strconv.Itoa(SlotCount) {
			return fmt.Errorf("%s: cluster_slots_assigned:%s", n.Addr, v)
		}
		entries, err := c.clusterNodes(ctx, n)
		if err != nil {
			return err
		}
		var me *nodeEntry
		for _, other := range c.nodes {
			e := findPort(entries, other.Port)
			if e == nil {
				return fmt.Errorf("%s does not know %s", n.Addr, other.Addr)
			}
			if e.has("myself") {
				me = e
				continue
			}
			if !isRunning[other.Port] {
				continue
			}
			for _, bad := range []string{"fail", "fail?", "handshake", "noaddr"} {
				if e.has(bad) {
					return fmt.Errorf("%s flags %s %s", n.Addr, other.Addr, bad)
				}
			}
			if !e.connected {
				return fmt.Errorf("%s has no link to %s", n.Addr, other.Addr)
			}
		}
		if me == nil {
			return fmt.Errorf("%s: no myself entry in cluster nodes", n.Addr)
		}
		sig := signature(entries)
		if exact {
			if len(entries) != len(c.nodes) {
				return fmt.Errorf("%s knows %d nodes, want %d", n.Addr, len(entries), len(c.nodes))
			}
			if got := countSlotMasters(entries); got != c.opts.Masters {
				return fmt.Errorf("%s: %d masters serve slots, want %d", n.Addr, got, c.opts.Masters)
			}
		}
		if refNode == nil {
			ref, refNode = sig, n
		} else if sig != ref {
			return fmt.Errorf("%s and %s disagree on the slot layout:\n%s\nversus\n%s", refNode.Addr, n.Addr, ref, sig)
		}
		if me.has("slave") {
			master := findID(entries, me.masterID)
			if master == nil || !isRunning[master.port] {
				continue
			}
			cl, err := c.client(n.Addr)
			if err != nil {
				return stopPolling{err}
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Errorf("%s: info replication: %w", n.Addr, err)
			}
			if v := infoField(repl, "master_link_status"); v != "up" {
				return fmt.Errorf("%s: master_link_status:%s", n.Addr, v)
			}
		}
	}
	return nil
}

// infoField returns the value of one "name:value" line of an INFO-style reply.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// nodeEntry is one line of CLUSTER NODES (or nodes.conf).
type nodeEntry struct {
	id        string
	port      int // client port
	flags     []string
	masterID  string // of a replica
	connected bool
	slots     [][2]int // inclusive ranges
}

func (e *nodeEntry) has(flag string) bool { return slices.Contains(e.flags, flag) }

// parseClusterNodes parses CLUSTER NODES output; the "vars" line of a
// nodes.conf file is skipped.
func parseClusterNodes(text string) ([]nodeEntry, error) {
	var out []nodeEntry
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "vars" {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("malformed cluster nodes line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@") // ip:port@cport[,hostname]
		i := strings.LastIndexByte(addr, ':')
		port, err := strconv.Atoi(addr[i+1:])
		if i < 0 || err != nil {
			return nil, fmt.Errorf("malformed address in cluster nodes line %q", line)
		}
		e := nodeEntry{
			id:        f[0],
			port:      port,
			flags:     strings.Split(f[2], ","),
			connected: f[7] == "connected",
		}
		if f[3] != "-" {
			e.masterID = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // migrating or importing slot
			}
			lo, hi, isRange := strings.Cut(s, "-")
			a, err1 := strconv.Atoi(lo)
			b, err2 := a, error(nil)
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("malformed slot %q in cluster nodes line %q", s, line)
			}
			e.slots = append(e.slots, [2]int{a, b})
		}
		out = append(out, e)
	}
	return out, nil
}

func findID(entries []nodeEntry, id string) *nodeEntry {
	for i := range entries {
		if entries[i].id == id {
			return &entries[i]
		}
	}
	return nil
}

func findPort(entries []nodeEntry, port int) *nodeEntry {
	for i := range entries {
		if entries[i].port == port && !entries[i].has("handshake") {
			return &entries[i]
		}
	}
	return nil
}

// signature renders a node's view of slot ownership canonically, one line
// per slot range: "first-last master-port [replica-ports]". Failed replicas
// are left out, as CLUSTER SLOTS does.
func signature(entries []nodeEntry) string {
	var lines []string
	for _, e := range entries {
		if len(e.slots) == 0 || !e.has("master") {
			continue
		}
		var replicas []int
		for _, r := range entries {
			if r.masterID == e.id && r.has("slave") && !r.has("fail") {
				replicas = append(replicas, r.port)
			}
		}
		slices.Sort(replicas)
		for _, s := range e.slots {
			lines = append(lines, fmt.Sprintf("%05d-%05d %d %v\n", s[0], s[1], e.port, replicas))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "")
}

func countSlotMasters(entries []nodeEntry) int {
	n := 0
	for _, e := range entries {
		if len(e.slots) > 0 && e.has("master") {
			n++
		}
	}
	return n
}

// owners returns the client port of the master of every slot (0: none).
func owners(entries []nodeEntry) []int {
	out := make([]int, SlotCount)
	for _, e := range entries {
		if !e.has("master") {
			continue
		}
		for _, s := range e.slots {
			for slot := s[0]; slot <= s[1] && slot < SlotCount; slot++ {
				out[slot] = e.port
			}
		}
	}
	return out
}

// clusterNodes asks n for CLUSTER NODES.
func (c *Cluster) clusterNodes(ctx context.Context, n *Node) ([]nodeEntry, error) {
	cl, err := c.client(n.Addr)
	if err != nil {
		return nil, stopPolling{err}
	}
	text, err := cl.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: cluster nodes: %w", n.Addr, err)
	}
	entries, err := parseClusterNodes(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Addr, err)
	}
	return entries, nil
}

// reusable reports whether every node directory holds a nodes.conf that
// describes exactly these nodes. A reason is given when the directories hold
// something unusable, none when they hold nothing.
func reusable(nodes []*Node) (bool, string) {
	want := make([]int, len(nodes))
	for i, n := range nodes {
		want[i] = n.Port
	}
	missing := 0
	for _, n := range nodes {
		b, err := os.ReadFile(filepath.Join(n.Dir, "nodes.conf"))
		if err != nil || len(b) == 0 {
			missing++
			continue
		}
		entries, err := parseClusterNodes(string(b))
		if err != nil {
			return false, fmt.Sprintf("node %d: nodes.conf: %v", n.Port, err)
		}
		var got []int
		myself := 0
		for _, e := range entries {
			got = append(got, e.port)
			if e.has("myself") {
				myself = e.port
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) || myself != n.Port {
			return false, fmt.Sprintf("node %d: nodes.conf describes ports %v (myself %d), want %v", n.Port, got, myself, want)
		}
	}
	switch missing {
	case 0:
		return true, ""
	case len(nodes):
		return false, ""
	default:
		return false, fmt.Sprintf("%d of %d node dirs lack nodes.conf", missing, len(nodes))
	}
}

// view returns CLUSTER NODES as seen by the first running node that answers.
func (c *Cluster) view(ctx context.Context) ([]nodeEntry, error) {
	var errs []error
	for _, n := range c.runningNodes() {
		entries, err := c.clusterNodes(ctx, n)
		if err == nil {
			return entries, nil
		}
		var sp stopPolling
		if errors.As(err, &sp) {
			return nil, sp.err
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if c.isStopped() {
			return nil, errStopped
		}
		return nil, errors.New("no node is running")
	}
	return nil, errors.Join(errs...)
}

// addrOf returns the address of the node with this client port.
func (c *Cluster) addrOf(port int) string {
	for _, n := range c.nodes {
		if n.Port == port {
			return n.Addr
		}
	}
	return net.JoinHostPort(c.opts.Host, strconv.Itoa(port))
}

// stateOK returns n's CLUSTER INFO when it reports cluster_state:ok, else an
// error (stopPolling when n cannot be reached at all).
func (c *Cluster) stateOK(ctx context.Context, n *Node) (string, error) {
	cl, err := c.client(n.Addr)
	if err != nil {
		return "", stopPolling{err}
	}
	info, err := cl.ClusterInfo(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("%s: cluster info: %w", n.Addr, err)
	}
	if v := infoField(info, "cluster_state"); v != "ok" {
		return "", fmt.Errorf("%s: cluster_state:%s", n.Addr, v)
	}
	return info, nil
}
