package localcluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// manualFailoverRetry is how long Failover waits before repeating CLUSTER
// FAILOVER: redis gives up a manual failover after 5 s without telling the
// client.
const manualFailoverRetry = 6 * time.Second

// migrateTimeout is the MIGRATE timeout, in milliseconds.
const migrateTimeout = 5000

// DefaultMigrateBatch is the number of keys MigrateSlot moves per MIGRATE.
const DefaultMigrateBatch = 100

// MasterAddrs returns the addresses of the current masters, ordered by port,
// as a running node sees them; masters flagged as failed are left out.
// Roles change after a failover.
func (c *Cluster) MasterAddrs(ctx context.Context) ([]string, error) {
	entries, err := c.view(ctx)
	if err != nil {
		return nil, fmt.Errorf("localcluster: masters: %w", err)
	}
	var ports []int
	for _, e := range entries {
		if e.has("master") && !e.has("fail") {
			ports = append(ports, e.port)
		}
	}
	return c.addrsOf(ports), nil
}

// ReplicasOf returns the addresses of the replicas of the master at
// masterAddr, ordered by port, as a running node sees them; replicas flagged
// as failed are left out.
func (c *Cluster) ReplicasOf(ctx context.Context, masterAddr string) ([]string, error) {
	m := c.Node(masterAddr)
	if m == nil {
		return nil, fmt.Errorf("localcluster: replicas of %s: unknown node", masterAddr)
	}
	entries, err := c.view(ctx)
	if err != nil {
		return nil, fmt.Errorf("localcluster: replicas of %s: %w", masterAddr, err)
	}
	me := findPort(entries, m.Port)
	if me == nil {
		return nil, fmt.Errorf("localcluster: replicas of %s: not in the cluster", masterAddr)
	}
	return c.addrsOf(replicaPorts(entries, me.id)), nil
}

func replicaPorts(entries []nodeEntry, masterID string) []int {
	var ports []int
	for _, e := range entries {
		if e.has("slave") && e.masterID == masterID && !e.has("fail") {
			ports = append(ports, e.port)
		}
	}
	return ports
}

func (c *Cluster) addrsOf(ports []int) []string {
	slices.Sort(ports)
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = c.addrOf(p)
	}
	return out
}

// SlotOwner returns the address of the master serving slot, as a running
// node sees it.
func (c *Cluster) SlotOwner(ctx context.Context, slot int) (string, error) {
	if slot < 0 || slot >= SlotCount {
		return "", fmt.Errorf("localcluster: slot %d out of range", slot)
	}
	entries, err := c.view(ctx)
	if err != nil {
		return "", fmt.Errorf("localcluster: owner of slot %d: %w", slot, err)
	}
	port := owners(entries)[slot]
	if port == 0 {
		return "", fmt.Errorf("localcluster: slot %d is not assigned", slot)
	}
	return c.addrOf(port), nil
}

// Failover promotes a replica of the master at masterAddr with CLUSTER
// FAILOVER (FORCE when the master is not running or flagged as failed) and
// waits until every running node sees the replica as the master of all the
// old master's slots and reports cluster_state:ok, then until the cluster is
// healthy (see WaitHealthy). A running old master is made to announce at
// once that it became a replica of the new one. Failover returns the new
// master's address.
func (c *Cluster) Failover(ctx context.Context, masterAddr string) (string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	newMaster, err := c.failover(ctx, masterAddr)
	if err != nil {
		return "", fmt.Errorf("localcluster: failover of %s: %w", masterAddr, err)
	}
	c.log.Info("localcluster: failover done", "old", masterAddr, "new", newMaster)
	return newMaster, nil
}

func (c *Cluster) failover(ctx context.Context, masterAddr string) (string, error) {
	m := c.Node(masterAddr)
	if m == nil {
		return "", errors.New("unknown node")
	}
	entries, err := c.view(ctx)
	if err != nil {
		return "", err
	}
	me := findPort(entries, m.Port)
	switch {
	case me == nil:
		return "", errors.New("not in the cluster")
	case !me.has("master") || len(me.slots) == 0:
		return "", errors.New("not a master serving slots")
	}
	var r *Node
	for _, p := range replicaPorts(entries, me.id) {
		if n := c.Node(c.addrOf(p)); n != nil && n.Running() {
			r = n
			break
		}
	}
	if r == nil {
		return "", errors.New("no running replica")
	}
	rcl, err := c.client(r.Addr)
	if err != nil {
		return "", err
	}
	args := []any{"CLUSTER", "FAILOVER"}
	if !m.Running() || me.has("fail") {
		args = append(args, "FORCE")
	} else {
		// A manual failover waits for the replica to reach the master's
		// offset, which never happens while the initial sync is running.
		err := poll(ctx, func() error {
			info, err := rcl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if v := infoField(info, "master_link_status"); v != "up" {
				return fmt.Errorf("replica %s: master_link_status:%s", r.Addr, v)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	var sent time.Time
	err = poll(ctx, func() error {
		if time.Since(sent) > manualFailoverRetry {
			if err := rcl.Do(ctx, args...).Err(); err != nil {
				return stopPolling{fmt.Errorf("%s: %v: %w", r.Addr, args, err)}
			}
			sent = time.Now()
		}
		return c.checkOwners(ctx, me.slots, r.Port)
	})
	if err != nil {
		return "", err
	}
	if m.Running() {
		// The old master turns into a replica of the new one; spread that
		// now rather than within the next 2.5 s of pings.
		err := poll(ctx, func() error {
			entries, err := c.clusterNodes(ctx, m)
			if err != nil {
				return err
			}
			self := findPort(entries, m.Port)
			if self == nil || !self.has("slave") || findID(entries, self.masterID) == nil || findID(entries, self.masterID).port != r.Port {
				return fmt.Errorf("%s does not see itself as a replica of %s yet", m.Addr, r.Addr)
			}
			return nil
		})
		if err == nil {
			err = c.announce(ctx, m)
		}
		if err != nil {
			return "", err
		}
	}
	if err := c.waitHealthy(ctx, false); err != nil {
		return "", err
	}
	return r.Addr, nil
}

// checkOwners checks that every running node reports cluster_state:ok and
// sees the node with client port owner as the master of all slots.
func (c *Cluster) checkOwners(ctx context.Context, slots [][2]int, owner int) error {
	for _, n := range c.runningNodes() {
		if _, err := c.stateOK(ctx, n); err != nil {
			return err
		}
		entries, err := c.clusterNodes(ctx, n)
		if err != nil {
			return err
		}
		own := owners(entries)
		for _, s := range slots {
			for slot := s[0]; slot <= s[1]; slot++ {
				if own[slot] != owner {
					return fmt.Errorf("%s: slot %d is served by %d, want %d", n.Addr, slot, own[slot], owner)
				}
			}
		}
	}
	return nil
}

// KillNode kills the node at addr with SIGKILL, as a crash would, and waits
// for the process to exit. The cluster notices after the node timeout (5 s).
func (c *Cluster) KillNode(addr string) error {
	if c.isStopped() {
		return errStopped
	}
	n := c.Node(addr)
	if n == nil {
		return fmt.Errorf("localcluster: kill %s: unknown node", addr)
	}
	p := n.process()
	if p == nil || p.exited() {
		return fmt.Errorf("localcluster: kill %s: not running", addr)
	}
	if err := p.kill(); err != nil {
		return fmt.Errorf("localcluster: kill %s: %w", addr, err)
	}
	c.dropClient(addr)
	c.log.Info("localcluster: killed node", "addr", addr)
	return nil
}

// RestartNode starts again the stopped node at addr, with the same
// directory and port, so that it rejoins from its nodes.conf, and waits until
// the cluster is healthy (see WaitHealthy).
func (c *Cluster) RestartNode(ctx context.Context, addr string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	n := c.Node(addr)
	if n == nil {
		return fmt.Errorf("localcluster: restart %s: unknown node", addr)
	}
	if n.Running() {
		return fmt.Errorf("localcluster: restart %s: already running", addr)
	}
	c.dropClient(addr)
	if err := c.startNode(ctx, n); err != nil {
		return err
	}
	if err := c.waitHealthy(ctx, false); err != nil {
		return fmt.Errorf("localcluster: restart %s: wait healthy: %w", addr, err)
	}
	c.log.Info("localcluster: restarted node", "addr", addr)
	return nil
}

// migration resolves the nodes of a slot migration.
func (c *Cluster) migration(ctx context.Context, slot int, from, to string) (src, dst *redis.Client, srcID, dstID string, err error) {
	if slot < 0 || slot >= SlotCount {
		return nil, nil, "", "", fmt.Errorf("slot %d out of range", slot)
	}
	if from == to {
		return nil, nil, "", "", errors.New("source and target are the same node")
	}
	for _, addr := range []string{from, to} {
		if c.Node(addr) == nil {
			return nil, nil, "", "", fmt.Errorf("unknown node %s", addr)
		}
	}
	if src, err = c.client(from); err != nil {
		return nil, nil, "", "", err
	}
	if dst, err = c.client(to); err != nil {
		return nil, nil, "", "", err
	}
	if srcID, err = src.ClusterMyID(ctx).Result(); err != nil {
		return nil, nil, "", "", fmt.Errorf("%s: cluster myid: %w", from, err)
	}
	if dstID, err = dst.ClusterMyID(ctx).Result(); err != nil {
		return nil, nil, "", "", fmt.Errorf("%s: cluster myid: %w", to, err)
	}
	return src, dst, srcID, dstID, nil
}

// BeginMigration starts moving slot from the master at from to the master at
// to: CLUSTER SETSLOT IMPORTING on the target, then MIGRATING on the source.
// From then on the source answers ASK for keys it no longer holds.
func (c *Cluster) BeginMigration(ctx context.Context, slot int, from, to string) error {
	src, dst, srcID, dstID, err := c.migration(ctx, slot, from, to)
	if err == nil {
		err = dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err()
	}
	if err == nil {
		err = src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err()
	}
	if err != nil {
		return fmt.Errorf("localcluster: begin migration of slot %d from %s to %s: %w", slot, from, to, err)
	}
	return nil
}

// MigrateKeys moves the keys of slot from the source to the target, batch
// keys per MIGRATE (DefaultMigrateBatch when batch <= 0), until the source
// holds none. It returns how many keys it moved. BeginMigration must have
// been called.
func (c *Cluster) MigrateKeys(ctx context.Context, slot int, from, to string, batch int) (int, error) {
	if batch <= 0 {
		batch = DefaultMigrateBatch
	}
	moved := 0
	src, _, _, _, err := c.migration(ctx, slot, from, to)
	if err != nil {
		return 0, fmt.Errorf("localcluster: migrate keys of slot %d from %s to %s: %w", slot, from, to, err)
	}
	dstNode := c.Node(to)
	host, port := c.opts.Host, strconv.Itoa(dstNode.Port)
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, batch).Result()
		if err != nil {
			return moved, fmt.Errorf("localcluster: migrate keys of slot %d from %s to %s: getkeysinslot: %w", slot, from, to, err)
		}
		if len(keys) == 0 {
			return moved, nil
		}
		args := []any{"MIGRATE", host, port, "", 0, migrateTimeout}
		if c.opts.Password != "" {
			args = append(args, "AUTH2", "default", c.opts.Password)
		}
		args = append(args, "KEYS")
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(ctx, args...).Err(); err != nil {
			return moved, fmt.Errorf("localcluster: migrate keys of slot %d from %s to %s: %w", slot, from, to, err)
		}
		moved += len(keys)
	}
}

// FinishMigration assigns slot to the target: CLUSTER SETSLOT NODE on the
// target, the source, then every other master; it then waits until every
// running node sees the target as the slot's master. The source must hold no
// key of the slot any more.
func (c *Cluster) FinishMigration(ctx context.Context, slot int, from, to string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.finishMigration(ctx, slot, from, to); err != nil {
		return fmt.Errorf("localcluster: finish migration of slot %d from %s to %s: %w", slot, from, to, err)
	}
	return nil
}

func (c *Cluster) finishMigration(ctx context.Context, slot int, from, to string) error {
	src, dst, _, dstID, err := c.migration(ctx, slot, from, to)
	if err != nil {
		return err
	}
	if err := dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(); err != nil {
		return fmt.Errorf("%s: %w", to, err)
	}
	if err := src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	masters, err := c.MasterAddrs(ctx)
	if err != nil {
		return err
	}
	for _, addr := range masters {
		n := c.Node(addr)
		if addr == from || addr == to || n == nil || !n.Running() {
			continue
		}
		cl, err := c.client(addr)
		if err != nil {
			return err
		}
		if err := cl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err(); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
	}
	return poll(ctx, func() error {
		return c.checkOwners(ctx, [][2]int{{slot, slot}}, c.Node(to).Port)
	})
}

// MigrateSlot moves slot and its keys from the master at from to the master
// at to: BeginMigration, MigrateKeys, FinishMigration.
func (c *Cluster) MigrateSlot(ctx context.Context, slot int, from, to string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.BeginMigration(ctx, slot, from, to); err != nil {
		return err
	}
	if _, err := c.MigrateKeys(ctx, slot, from, to, DefaultMigrateBatch); err != nil {
		return err
	}
	return c.FinishMigration(ctx, slot, from, to)
}
