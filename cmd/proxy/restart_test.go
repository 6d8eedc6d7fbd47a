package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/redis/go-redis/v9"
)

// TestProxyRestart: the proxy keeps no data, so restarting it loses
// nothing; a client's pool reconnects to the new process on its own.
func TestProxyRestart(t *testing.T) {
	cl := testcluster.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "proxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := func() (*exec.Cmd, chan error) {
		cmd := exec.Command(bin, "-seeds", cl.Addrs()[0], "-listen", addr)
		logs := watchLog(t, cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		logs.wait(t, 0, regexp.MustCompile(`msg="proxy ready"`), 60*time.Second)
		return cmd, exited
	}
	cmd, exited := start()

	ctx := context.Background()
	// go-redis's defaults: a pooled connection found broken is retried on a
	// new one.
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 4})
	defer c.Close()
	const n = 500
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("restart-%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("proxy exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("proxy still running 30s after SIGTERM")
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered with no proxy running")
	}
	start()
	// A client that failed to dial retries in the background (go-redis
	// probes once a second): it is back within a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("client not reconnected 10s after the restart: %v", c.Ping(ctx).Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range n {
		v, err := c.Get(ctx, fmt.Sprintf("restart-%d", i)).Int()
		if err != nil || v != i {
			t.Fatalf("after restart, key %d = %v, %v", i, v, err)
		}
	}
}
