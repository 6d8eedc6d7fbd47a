// Package local starts what `bench -local` measures: a six-node Redis
// Cluster (package localcluster) and the proxy, built from this module's
// cmd/proxy and run as a separate process so its CPU time and memory can be
// read from /proc. Everything started is stopped by Env.Stop, and dies with
// the bench process (parent-death signal) if that is killed.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
)

// Defaults of Options.
const (
	DefaultReadyTimeout = 60 * time.Second
	stopGrace           = 5 * time.Second
)

// Options configures Start.
type Options struct {
	// Dir holds the cluster's node directories and the proxy binary and
	// log. Empty: a new temporary directory, removed by Stop.
	Dir string
	// Procs is the proxy's -procs flag (GOMAXPROCS); 0 leaves Go's default.
	Procs int
	// ProxyArgs are extra flags for the proxy.
	ProxyArgs []string
	// ProxyBin is a proxy binary to run instead of building cmd/proxy.
	ProxyBin string
	// ReadyTimeout bounds the wait for the proxy to answer PING; default
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// Env is a running cluster and proxy.
type Env struct {
	// Cluster is the six-node cluster.
	Cluster *localcluster.Cluster
	// Proxy is the proxy process in front of it.
	*Proxy

	dir   string
	rmDir bool
}

// Proxy is a running proxy process.
type Proxy struct {
	// ProxyAddr is the proxy's listen address.
	ProxyAddr string
	// ProxyPID is the proxy process id.
	ProxyPID int
	// ProxyLog is the file receiving the proxy's output.
	ProxyLog string

	cmd     *exec.Cmd
	waitErr chan error
}

// Start starts the cluster, builds the proxy (unless opts.ProxyBin) and
// starts it in front of the cluster. On failure everything started is
// stopped.
func Start(ctx context.Context, opts Options) (*Env, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Env{dir: opts.Dir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "clusterproxy-bench-")
		if err != nil {
			return nil, fmt.Errorf("local: temp dir: %w", err)
		}
		e.dir, e.rmDir = d, true
	}
	ok := false
	defer func() {
		if !ok {
			_ = e.Stop()
		}
	}()
	bin := opts.ProxyBin
	if bin == "" {
		var err error
		log.Info("local: building the proxy")
		if bin, err = Build(ctx, e.dir); err != nil {
			return nil, err
		}
	}
	log.Info("local: starting a six-node cluster")
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: filepath.Join(e.dir, "cluster"), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	e.Cluster = c
	p, err := StartProxy(ctx, bin, e.dir, c.Addrs(), opts)
	if err != nil {
		return nil, err
	}
	e.Proxy = p
	ok = true
	return e, nil
}

// Build compiles the module's cmd/proxy into dir and returns the binary's
// path.
func Build(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "proxy")
	cmd := exec.CommandContext(ctx, goBin(), "build", "-o", bin, "./cmd/proxy")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("local: go build ./cmd/proxy: %w\n%s", err, out.String())
	}
	return bin, nil
}

// goBin returns the go command: from GOROOT when set (go run, go test),
// else from PATH.
func goBin() string {
	if r := os.Getenv("GOROOT"); r != "" {
		if p := filepath.Join(r, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// moduleRoot finds the directory of this module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goBin(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("local: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("local: not inside the clusterproxy module (run bench from the repository)")
	}
	return filepath.Dir(mod), nil
}

// StartProxy starts the proxy binary bin in front of the cluster nodes
// seeds, on a free loopback port, logging to dir/proxy.log, and waits until
// it answers PING. Only opts.Procs, opts.ProxyArgs and opts.ReadyTimeout
// apply.
func StartProxy(ctx context.Context, bin, dir string, seeds []string, opts Options) (*Proxy, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		ProxyAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		ProxyLog:  filepath.Join(dir, "proxy.log"),
	}
	logf, err := os.Create(p.ProxyLog)
	if err != nil {
		return nil, fmt.Errorf("local: proxy log: %w", err)
	}
	defer logf.Close()
	args := []string{"-listen", p.ProxyAddr, "-seeds", strings.Join(seeds, ","), "-log-level", "warn"}
	if opts.Procs > 0 {
		args = append(args, "-procs", strconv.Itoa(opts.Procs))
	}
	args = append(args, opts.ProxyArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("local: start proxy: %w", err)
	}
	p.cmd = cmd
	p.ProxyPID = cmd.Process.Pid
	p.waitErr = make(chan error, 1)
	go func() { p.waitErr <- cmd.Wait() }()

	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	deadline := time.Now().Add(timeout)
	for {
		if pingOK(p.ProxyAddr) {
			return p, nil
		}
		var fail error
		select {
		case err := <-p.waitErr:
			p.waitErr <- err
			fail = fmt.Errorf("local: proxy exited at start (%v); log %s:\n%s", err, p.ProxyLog, tail(p.ProxyLog))
		case <-ctx.Done():
			fail = fmt.Errorf("local: waiting for the proxy: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
			if time.Now().After(deadline) {
				fail = fmt.Errorf("local: proxy not answering PING on %s after %s; log:\n%s", p.ProxyAddr, timeout, tail(p.ProxyLog))
			}
		}
		if fail != nil {
			p.Stop()
			return nil, fail
		}
	}
}

// Stop stops the proxy: SIGTERM, then SIGKILL to its process group after a
// grace period. It is idempotent.
func (p *Proxy) Stop() {
	if p == nil || p.cmd == nil {
		return
	}
	_ = syscall.Kill(p.ProxyPID, syscall.SIGTERM)
	select {
	case err := <-p.waitErr:
		p.waitErr <- err
	case <-time.After(stopGrace):
		_ = syscall.Kill(-p.ProxyPID, syscall.SIGKILL)
		p.waitErr <- <-p.waitErr
	}
	p.cmd = nil
}

func pingOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("+PONG"))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("local: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// Stop stops the proxy (SIGTERM, SIGKILL after a grace) and the cluster,
// and removes a temporary directory. It is idempotent.
func (e *Env) Stop() error {
	var errs []error
	if e.Proxy != nil {
		e.Proxy.Stop()
		e.Proxy = nil
	}
	if e.Cluster != nil {
		if err := e.Cluster.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("local: %w", err))
		}
		e.Cluster = nil
	}
	if e.rmDir {
		_ = os.RemoveAll(e.dir)
		e.rmDir = false
	}
	return errors.Join(errs...)
}
