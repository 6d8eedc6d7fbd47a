package proxy_test

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
)

// infoField returns a numeric INFO field.
func infoField(t *testing.T, info, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `:(\d+)\r?$`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("INFO has no %s:\n%s", name, info)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestInfoStats: INFO has the fields monitoring tools read (Stats, Memory
// summed over the masters, blocked clients), and `redis-cli --stat`
// through the proxy shows numbers.
func TestInfoStats(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	for i := range 50 {
		c.Set(ctx, "infostats:"+strconv.Itoa(i), "v", 0)
	}
	info := c.Info(ctx).Val()
	for _, section := range []string{"# Server", "# Clients", "# Memory", "# Stats", "# Cluster", "# Keyspace"} {
		if !strings.Contains(info, section+"\r\n") {
			t.Fatalf("INFO has no %s section:\n%s", section, info)
		}
	}
	if n := infoField(t, info, "total_commands_processed"); n < 50 {
		t.Fatalf("total_commands_processed = %d after 50 SETs", n)
	}
	if n := infoField(t, info, "total_connections_received"); n < 1 {
		t.Fatalf("total_connections_received = %d", n)
	}
	if n := infoField(t, info, "used_memory"); n < 1<<20 {
		t.Fatalf("used_memory = %d: not the masters' sum", n)
	}
	infoField(t, info, "maxmemory")
	infoField(t, info, "instantaneous_ops_per_sec")
	if n := infoField(t, info, "blocked_clients"); n != 0 {
		t.Fatalf("blocked_clients = %d, want 0", n)
	}
	// Sections asked by name come alone, in Redis's order.
	if got := c.Info(ctx, "stats", "memory").Val(); !strings.HasPrefix(got, "# Memory\r\n") || !strings.Contains(got, "\r\n\r\n# Stats\r\n") || strings.Contains(got, "# Keyspace") {
		t.Fatalf("INFO stats memory:\n%s", got)
	}
	// A blocked client is counted.
	b := dialFrames(t, p.Addr, 2)
	b.send(t, []string{"BLPOP", "infostats:l", "0"})
	waitFor(t, 10*time.Second, "blocked_clients:1", func() bool {
		return strings.Contains(c.Info(ctx, "clients").Val(), "blocked_clients:1\r\n")
	})

	// redis-cli --stat: every column a number (a missing field shows as
	// -9223372036854775808).
	cmd := exec.Command("stdbuf", "-oL", "redis-cli", "-h", "127.0.0.1", "-p", p.Addr[strings.LastIndex(p.Addr, ":")+1:], "--stat", "-i", "0.2")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	row := regexp.MustCompile(`^(\d+)\s+[\d.]+[BKMGTP]\s+(\d+)\s+(\d+)\s+(\d+) \(\+\d+\)\s+(\d+)\s*$`)
	sc := bufio.NewScanner(out)
	rows := 0
	deadline := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() && rows < 3 {
		line := sc.Text()
		if strings.HasPrefix(line, "---") || strings.HasPrefix(line, "keys") {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("redis-cli --stat row %q", line)
		}
		if m[3] != "1" {
			t.Fatalf("redis-cli --stat shows %s blocked clients, want 1: %q", m[3], line)
		}
		rows++
	}
	if rows < 3 {
		t.Fatalf("redis-cli --stat printed %d rows", rows)
	}
}
