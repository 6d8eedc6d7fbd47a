package router

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Shard describes one master, its replicas and the slot ranges it serves.
type Shard struct {
	Master   NodeInfo
	Replicas []NodeInfo
	Slots    [][2]int // inclusive ranges, ascending
}

// NodeInfo is one node as the cluster describes it.
type NodeInfo struct {
	ID   string
	Addr string // host:port the proxy dials
}

// topology is an immutable snapshot of slot ownership. A new one replaces it
// atomically on every refresh that changed something.
type topology struct {
	// slots holds, per slot, 1 + the index in masters of the slot's master,
	// or 0 where no master serves it: 32 KiB instead of 128 KiB of pointers,
	// so the lookup on every request mostly hits the CPU cache.
	slots   [SlotCount]uint16
	masters []*node // the shards' masters, in shard order
	// replicas are each master's healthy replicas (same index).
	replicas [][]*node
	shards   []Shard
	covered  int    // slots with a master
	version  uint64 // 1 for the first snapshot, +1 for each later one
}

// master returns the master serving slot, or nil.
func (t *topology) master(slot int) *node {
	i := int(t.slots[slot&(SlotCount-1)])
	if i == 0 {
		return nil
	}
	return t.masters[i-1]
}

// discover asks one node for the cluster layout: CLUSTER SHARDS, or CLUSTER
// SLOTS on servers older than 7.0.
func discover(ctx context.Context, c *redis.Client, tlsPorts bool) ([]Shard, error) {
	shards, err := c.ClusterShards(ctx).Result()
	if err == nil {
		return fromShards(shards, tlsPorts), nil
	}
	if !strings.Contains(strings.ToLower(err.Error()), "unknown") {
		return nil, fmt.Errorf("cluster shards: %w", err)
	}
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster slots: %w", err)
	}
	return fromSlots(slots), nil
}

func fromShards(in []redis.ClusterShard, tlsPorts bool) []Shard {
	var out []Shard
	for _, s := range in {
		var sh Shard
		masterOK := false
		for _, n := range s.Nodes {
			host := n.Endpoint
			if host == "" || host == "?" {
				host = n.IP
			}
			port := n.Port
			if tlsPorts && n.TLSPort != 0 {
				port = n.TLSPort
			}
			info := NodeInfo{ID: n.ID, Addr: net.JoinHostPort(host, strconv.FormatInt(port, 10))}
			switch {
			case n.Role == "master" && n.Health != "fail" && !masterOK:
				sh.Master, masterOK = info, true
			case n.Role != "master" && n.Health != "fail":
				// Redis 7.0 reports a replica whose replication offset is
				// still 0 as "loading" even when it is up; only "fail" means
				// it cannot be reached.
				sh.Replicas = append(sh.Replicas, info)
			}
		}
		if !masterOK || len(s.Slots) == 0 {
			continue // a shard without a live master serves nothing
		}
		for _, r := range s.Slots {
			sh.Slots = append(sh.Slots, [2]int{int(r.Start), int(r.End)})
		}
		out = append(out, sh)
	}
	return normalize(out)
}

func fromSlots(in []redis.ClusterSlot) []Shard {
	byMaster := map[string]*Shard{}
	for _, s := range in {
		if len(s.Nodes) == 0 {
			continue
		}
		m := s.Nodes[0]
		sh := byMaster[m.Addr]
		if sh == nil {
			sh = &Shard{Master: NodeInfo{ID: m.ID, Addr: m.Addr}}
			for _, r := range s.Nodes[1:] {
				sh.Replicas = append(sh.Replicas, NodeInfo{ID: r.ID, Addr: r.Addr})
			}
			byMaster[m.Addr] = sh
		}
		sh.Slots = append(sh.Slots, [2]int{s.Start, s.End})
	}
	out := make([]Shard, 0, len(byMaster))
	for _, sh := range byMaster {
		out = append(out, *sh)
	}
	return normalize(out)
}

// normalize sorts shards by master address and slot ranges ascending, so
// that two descriptions of the same layout compare equal.
func normalize(shards []Shard) []Shard {
	for i := range shards {
		sort.Slice(shards[i].Slots, func(a, b int) bool { return shards[i].Slots[a][0] < shards[i].Slots[b][0] })
		sort.Slice(shards[i].Replicas, func(a, b int) bool { return shards[i].Replicas[a].Addr < shards[i].Replicas[b].Addr })
	}
	sort.Slice(shards, func(a, b int) bool { return shards[a].Master.Addr < shards[b].Master.Addr })
	return shards
}

func sameLayout(a, b []Shard) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Master != b[i].Master || len(a[i].Slots) != len(b[i].Slots) || len(a[i].Replicas) != len(b[i].Replicas) {
			return false
		}
		for j := range a[i].Slots {
			if a[i].Slots[j] != b[i].Slots[j] {
				return false
			}
		}
		for j := range a[i].Replicas {
			if a[i].Replicas[j] != b[i].Replicas[j] {
				return false
			}
		}
	}
	return true
}
