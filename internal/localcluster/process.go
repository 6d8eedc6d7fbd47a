package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clusterproxy/clusterproxy/deploy"
)

// errPortTaken marks a node that could not bind its port or bus port.
var errPortTaken = errors.New("address already in use")

const (
	logTailLines = 15                     // how much of redis.log a start failure quotes
	termRepeat   = 100 * time.Millisecond // SIGTERM again while a node does not exit
	// groupGoneWait bounds the wait for a node's fork children to be gone
	// once it exited.
	groupGoneWait = 2 * time.Second
)

// process is one redis-server, leader of its own process group.
type process struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // cmd.Wait's result, valid after done
}

func (p *process) wait() {
	p.err = p.cmd.Wait()
	// Sweep the group: a fork child (RDB save, AOF rewrite) must not outlive
	// its parent. The signal is delivered, and the child reaped by whoever
	// inherited it, a moment later: wait for that (bounded), so that a
	// stopped node has no process left.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	for end := time.Now().Add(groupGoneWait); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if errors.Is(syscall.Kill(-p.pid, 0), syscall.ESRCH) {
			break
		}
	}
	close(p.done)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process group.
func (p *process) signal(sig syscall.Signal) error {
	err := syscall.Kill(-p.pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil // already gone
	}
	return err
}

// stop sends SIGTERM, then SIGKILL to the group after grace, and waits for
// the exit. SIGTERM goes to redis-server alone (its fork children are its
// business) and is repeated: redis 7 refuses to shut down while it writes
// its initial AOF (a replica right after a full sync does), and does not
// retry by itself.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	term := func() error {
		if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	if err := term(); err != nil {
		return err
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	again := time.NewTicker(termRepeat)
	defer again.Stop()
	for {
		select {
		case <-p.done:
			return nil
		case <-again.C:
			if err := term(); err != nil {
				return err
			}
			continue
		case <-deadline.C:
		}
		break
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// kill sends SIGKILL and waits for the exit.
func (p *process) kill() error {
	if p.exited() {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// args returns the redis-server command line of n.
func (c *Cluster) args(n *Node, conf string) []string {
	args := []string{
		conf,
		"--port", strconv.Itoa(n.Port),
		"--bind", c.opts.Host,
		"--dir", n.Dir,
	}
	if t := c.opts.TLS; t != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(n.Port),
			"--tls-cluster", "yes", "--tls-replication", "yes",
			"--tls-cert-file", t.CertFile, "--tls-key-file", t.KeyFile, "--tls-ca-cert-file", t.CAFile)
	}
	if c.opts.Password != "" {
		args = append(args, "--requirepass", c.opts.Password, "--masterauth", c.opts.Password)
	}
	return append(args, c.opts.ExtraArgs...)
}

// startNode starts n's redis-server and waits until it answers PING.
func (c *Cluster) startNode(ctx context.Context, n *Node) error {
	if c.isStopped() {
		return errStopped
	}
	if err := c.launch(n); err != nil {
		return fmt.Errorf("localcluster: start node %d: %w", n.Port, err)
	}
	p := n.process()
	err := poll(ctx, func() error {
		if p.exited() {
			return stopPolling{fmt.Errorf("redis-server exited: %v", p.err)}
		}
		// Dial by hand until the port accepts connections: the go-redis
		// pool would log every refused dial and, after a few, answer with
		// its last dial error for a second.
		conn, err := net.DialTimeout("tcp", n.Addr, opTimeout)
		if err != nil {
			return err
		}
		_ = conn.Close()
		cl, err := c.client(n.Addr)
		if err != nil {
			return stopPolling{err}
		}
		return cl.Ping(ctx).Err()
	})
	if err == nil {
		return nil
	}
	_ = p.kill()
	c.dropClient(n.Addr)
	tail := logTail(n.LogPath())
	if strings.Contains(tail, "Address already in use") {
		err = fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return fmt.Errorf("localcluster: start node %d: %w\n--- tail of %s ---\n%s", n.Port, err, n.LogPath(), tail)
}

// launch writes n's configuration and starts its process.
func (c *Cluster) launch(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return errors.New("already running")
	}
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(n.Dir, "redis.conf")
	if err := os.WriteFile(conf, []byte(deploy.RedisConf), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := c.args(n, conf)
	fmt.Fprintf(logf, "\n### localcluster %s: %s %s\n", time.Now().Format(time.RFC3339Nano), c.bin, redactArgs(args))
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = n.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go p.wait()
	n.proc = p
	c.log.Debug("localcluster: started node", "addr", n.Addr, "pid", p.pid)
	return nil
}

// redactArgs joins args for the log, hiding password values.
func redactArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if i > 0 && (args[i-1] == "--requirepass" || args[i-1] == "--masterauth") {
			out[i] = "***"
		}
	}
	return strings.Join(out, " ")
}

// logTail returns the last lines of a node's log file.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxRead = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		_, _ = f.Seek(st.Size()-maxRead, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// stopPolling wraps an error that makes poll give up at once.
type stopPolling struct{ err error }

func (s stopPolling) Error() string { return s.err.Error() }

// poll calls check every pollInterval until it returns nil, returns a
// stopPolling error, or ctx ends; the error then says what was last wrong.
func poll(ctx context.Context, check func() error) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last error
	for {
		err := check()
		if err == nil {
			return nil
		}
		var sp stopPolling
		if errors.As(err, &sp) {
			return sp.err
		}
		if last == nil || ctx.Err() == nil {
			last = err // not the echo of ctx's own end
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}
