package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
)

// Topology is a snapshot of which master serves each hash slot.
type Topology struct {
	// Nodes are the master addresses ("host:port").
	Nodes []string
	// Slots maps each slot to an index in Nodes.
	Slots [router.SlotCount]uint16
}

// LoadTopology asks the first seed that answers for CLUSTER SLOTS and
// returns the masters and the slot map. Every slot must be covered.
func LoadTopology(ctx context.Context, seeds []string) (*Topology, error) {
	var errs []error
	for _, s := range seeds {
		t, err := loadTopology(ctx, s)
		if err == nil {
			return t, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("load: cluster topology: %w", errors.Join(errs...))
}

func loadTopology(ctx context.Context, seed string) (*Topology, error) {
	c, err := dial(ctx, seed)
	if err != nil {
		return nil, err
	}
	defer c.close()
	f, err := c.doStrings("CLUSTER", "SLOTS")
	if err != nil {
		return nil, err
	}
	if err := replyError(f); err != nil {
		return nil, fmt.Errorf("load: CLUSTER SLOTS on %s: %w", seed, err)
	}
	ranges, _, err := resp.Elements(f, nil)
	if err != nil {
		return nil, fmt.Errorf("load: CLUSTER SLOTS on %s: %w", seed, err)
	}
	t := &Topology{}
	index := map[string]int{}
	var covered [router.SlotCount]bool
	for _, r := range ranges {
		el, _, err := resp.Elements(r, nil)
		if err != nil || len(el) < 3 {
			return nil, fmt.Errorf("load: CLUSTER SLOTS on %s: malformed range", seed)
		}
		lo, ok1 := resp.IntValue(el[0])
		hi, ok2 := resp.IntValue(el[1])
		master, _, err := resp.Elements(el[2], nil)
		if !ok1 || !ok2 || err != nil || len(master) < 2 || lo < 0 || hi >= router.SlotCount || lo > hi {
			return nil, fmt.Errorf("load: CLUSTER SLOTS on %s: malformed range", seed)
		}
		host, _ := text(master[0])
		port, ok := resp.IntValue(master[1])
		if !ok {
			return nil, fmt.Errorf("load: CLUSTER SLOTS on %s: malformed node", seed)
		}
		if host == "" {
			host, _, _ = net.SplitHostPort(seed)
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
		i, ok := index[addr]
		if !ok {
			i = len(t.Nodes)
			index[addr] = i
			t.Nodes = append(t.Nodes, addr)
		}
		for s := lo; s <= hi; s++ {
			t.Slots[s] = uint16(i)
			covered[s] = true
		}
	}
	for s, ok := range covered {
		if !ok {
			return nil, fmt.Errorf("load: CLUSTER SLOTS on %s: slot %d is not served", seed, s)
		}
	}
	return t, nil
}
