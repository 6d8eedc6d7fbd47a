package localcluster

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pickPorts returns n ports, ascending, such that each port and its bus port
// (port+10000) are free on host and no two nodes' ports collide. Another
// process may still take one before redis-server binds it; Start then retries.
func pickPorts(host string, n int) ([]int, error) {
	lo, hi := portRange()
	used := make(map[int]bool)
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 2000 {
			return nil, fmt.Errorf("localcluster: found only %d free port pairs in %d-%d on %s", len(out), lo, hi, host)
		}
		p := lo + rand.IntN(hi-lo+1)
		if used[p] || used[p+busPortOffset] || !portFree(host, p) || !portFree(host, p+busPortOffset) {
			continue
		}
		used[p], used[p+busPortOffset] = true, true
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// portRange is where pickPorts draws client ports from: when the kernel's
// ephemeral range leaves room, ports whose bus port stays below it, so that
// outgoing connections cannot grab a chosen port before the node binds it.
func portRange() (lo, hi int) {
	const floor = 12000
	ephemeralLo := 32768 // Linux default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				ephemeralLo = v
			}
		}
	}
	if top := ephemeralLo - 1 - busPortOffset; top-floor >= 2000 {
		return floor, top
	}
	return 20000, 40000
}

// portFree reports whether port can be listened on at host.
func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// checkPortsFree fails when a port or bus port of the cluster is in use,
// naming a redis-server left over by an earlier run when one answers there.
func checkPortsFree(ctx context.Context, host string, ports []int) error {
	for _, p := range ports {
		if !portFree(host, p) {
			if answersPing(ctx, host, p) {
				return fmt.Errorf("localcluster: port %d on %s is served by a running redis-server "+
					"(a previous run still alive?): stop it first, e.g. redis-cli -p %d shutdown", p, host, p)
			}
			return fmt.Errorf("localcluster: port %d on %s is in use by another program", p, host)
		}
		if bus := p + busPortOffset; !portFree(host, bus) {
			return fmt.Errorf("localcluster: port %d on %s (cluster bus of node %d) is in use", bus, host, p)
		}
	}
	return nil
}

// answersPing reports whether something speaking RESP listens at host:port.
// A password-protected redis answers -NOAUTH, which counts.
func answersPing(ctx context.Context, host string, port int) bool {
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return false
	}
	for _, prefix := range []string{"+PONG", "-NOAUTH", "-LOADING", "-DENIED", "-ERR"} {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}
