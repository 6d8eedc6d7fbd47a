package proxy_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
)

// TestGracefulShutdown: a command in flight when Shutdown starts is still
// answered; new connections are refused; Shutdown returns before its
// deadline.
func TestGracefulShutdown(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// A script that keeps its node busy for about 300 ms.
	slow := "local t = redis.call('TIME'); local start = t[1]*1000000 + t[2]; " +
		"repeat t = redis.call('TIME') until t[1]*1000000 + t[2] - start > 300000; return 'done'"
	res := make(chan error, 1)
	go func() {
		v, err := c.Eval(ctx, slow, []string{"shutdown:k"}).Result()
		if err == nil && v != "done" {
			err = context.DeadlineExceeded
		}
		res <- err
	}()
	time.Sleep(100 * time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Server.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-res; err != nil {
		t.Fatalf("in-flight command during shutdown: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if conn, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("new connection accepted after Shutdown")
	}
}
