package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/redis/go-redis/v9"
)

// logWatch collects a process's log lines and waits for patterns in them.
type logWatch struct {
	mu    sync.Mutex
	lines []string
	cond  chan struct{} // closed and replaced on every new line
}

func watchLog(t *testing.T, cmd *exec.Cmd) *logWatch {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &logWatch{cond: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			close(w.cond)
			w.cond = make(chan struct{})
			w.mu.Unlock()
		}
	}()
	return w
}

// wait returns the first submatch of the first line from index from on that
// matches re, waiting up to d; it fails the test otherwise.
func (w *logWatch) wait(t *testing.T, from int, re *regexp.Regexp, d time.Duration) (string, int) {
	t.Helper()
	deadline := time.After(d)
	for {
		w.mu.Lock()
		for i := from; i < len(w.lines); i++ {
			if m := re.FindStringSubmatch(w.lines[i]); m != nil {
				w.mu.Unlock()
				if len(m) > 1 {
					return m[1], i + 1
				}
				return m[0], i + 1
			}
		}
		cond := w.cond
		all := strings.Join(w.lines, "\n")
		w.mu.Unlock()
		select {
		case <-cond:
		case <-deadline:
			t.Fatalf("no log line matching %q within %v; log:\n%s", re, d, all)
		}
	}
}

func (w *logWatch) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// TestSignals runs the real binary against a cluster. SIGHUP re-reads the
// -config file: the log level, max clients and slow log threshold change in
// place, a file that does not validate changes nothing, and a setting that
// needs a restart is reported. SIGTERM with commands in flight: every one is
// answered, new connections are refused, and the process exits 0.
func TestSignals(t *testing.T) {
	cl := testcluster.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "proxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "proxy.conf")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("log-level info\nmax-clients 100\nslowlog-threshold 1s\n")
	cmd := exec.Command(bin, "-seeds", cl.Addrs()[0], "-listen", "127.0.0.1:0", "-config", conf, "-shutdown-timeout", "20s")
	logs := watchLog(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()
	addr, next := logs.wait(t, 0, regexp.MustCompile(`msg="proxy ready" listen=(\S+)`), 60*time.Second)
	ctx := context.Background()
	newClient := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 30 * time.Second})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := newClient()
	c.Do(ctx, "SLOWLOG", "RESET")
	c.Ping(ctx)
	if n, err := c.Do(ctx, "SLOWLOG", "LEN").Int(); err != nil || n != 0 {
		t.Fatalf("SLOWLOG LEN with a 1s threshold = %v, %v", n, err)
	}

	// A protocol error is logged at debug level only: not yet.
	sendGarbage := func() {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("*1\r\n$x\r\n"))
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		conn.Read(buf)
		conn.Close()
	}
	sendGarbage()

	// SIGHUP with a new file: every command is slow, two clients at most,
	// debug logs; -retry-window needs a restart.
	write("log-level debug\nmax-clients 2\nslowlog-threshold 0\nretry-window 20s\n")
	mark := logs.len()
	cmd.Process.Signal(syscall.SIGHUP)
	_, next = logs.wait(t, mark, regexp.MustCompile(`msg="settings reloaded".*max_clients=2`), 10*time.Second)
	logs.wait(t, mark, regexp.MustCompile(`msg="changed settings take effect only after a restart" settings=\[RetryWindow\]`), 10*time.Second)
	c.Do(ctx, "SLOWLOG", "RESET")
	c.Ping(ctx)
	if n, err := c.Do(ctx, "SLOWLOG", "LEN").Int(); err != nil || n < 1 {
		t.Errorf("SLOWLOG LEN after reload to threshold 0 = %v, %v; want the PING logged", n, err)
	}
	// A garbage connection counts towards max-clients until its session has
	// ended: on a loaded machine the first one's may not have yet, and with
	// c it would fill the two places.
	onlyClient := func() {
		t.Helper()
		for wait := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			info, err := c.Info(ctx, "clients").Result()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(info, "connected_clients:1\r\n") {
				return
			}
			if time.Now().After(wait) {
				t.Fatalf("a garbage connection still counts: %q", info)
			}
		}
	}
	onlyClient()
	mark = logs.len()
	sendGarbage()
	logs.wait(t, mark, regexp.MustCompile(`level=DEBUG msg="client protocol error"`), 10*time.Second)
	// The garbage connection counts towards max-clients until its session
	// has ended, which may be just after the log line.
	onlyClient()
	c2 := newClient()
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Fatalf("second client: %v", err)
	}
	// A third connection is refused with Redis's error.
	refused := func() string {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return line
	}
	if got := refused(); got != "-ERR max number of clients reached\r\n" {
		t.Fatalf("third client with max-clients 2 got %q", got)
	}

	// A file that does not validate changes nothing.
	write("max-clients -1\n")
	mark = logs.len()
	cmd.Process.Signal(syscall.SIGHUP)
	logs.wait(t, mark, regexp.MustCompile(`msg="reload failed; settings unchanged".*max-clients must be positive`), 10*time.Second)
	if got := refused(); got != "-ERR max number of clients reached\r\n" {
		t.Fatalf("max-clients changed by a config that failed to validate: third client got %q", got)
	}
	c2.Close()
	write("max-clients 100\n")
	cmd.Process.Signal(syscall.SIGHUP)
	logs.wait(t, next, regexp.MustCompile(`msg="settings reloaded".*max_clients=100`), 10*time.Second)

	// SIGTERM while commands run on the nodes: all are answered.
	const inflight = 6
	results := make(chan error, inflight)
	for i := 0; i < inflight; i++ {
		ci := newClient()
		if err := ci.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		go func(i int) {
			v, err := ci.Eval(ctx, busyScript(600), []string{"sigterm:" + string(rune('a'+i))}).Result()
			if err == nil && v != "done" {
				err = context.DeadlineExceeded
			}
			results <- err
		}(i)
	}
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < inflight; i++ {
		if err := <-results; err != nil {
			t.Errorf("command in flight at SIGTERM: %v", err)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("proxy exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("proxy did not exit after SIGTERM")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("connection accepted after exit")
	}
}

// busyScript keeps its node busy for about ms milliseconds.
func busyScript(ms int) string {
	return "local t = redis.call('TIME'); local start = t[1]*1000000 + t[2]; " +
		"repeat t = redis.call('TIME') until t[1]*1000000 + t[2] - start > " + strconv.Itoa(ms*1000) + "; return 'done'"
}
