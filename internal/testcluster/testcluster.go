// Package testcluster gives integration tests a real Redis Cluster, started
// with package localcluster: one shared by a whole test package (Main, from
// TestMain) or one dedicated to a test that mutates the cluster (Start).
//
// The tests need redis-server in PATH (make deps). When it is missing they
// fail; they are never skipped.
package testcluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/redis/go-redis/v9"
)

// Main starts a six-node cluster (three masters with one replica each) in a
// temporary directory, calls run with it, stops the cluster and exits the
// test binary with run's result. run must call m.Run and return its code, so
// that it can prepare and tear down more around the tests; a nil run just
// calls m.Run. From TestMain:
//
//	var cluster *localcluster.Cluster
//
//	func TestMain(m *testing.M) {
//		testcluster.Main(m, func(c *localcluster.Cluster) int {
//			cluster = c
//			return m.Run()
//		})
//	}
//
// When the cluster cannot start, redis-server missing included, Main prints
// why and exits with status 1. When the tests fail, the node directories
// (with each node's redis.log) are kept and their path printed.
func Main(m *testing.M, run func(c *localcluster.Cluster) int) {
	os.Exit(mainCode(m, run))
}

func mainCode(m *testing.M, run func(c *localcluster.Cluster) int) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	var logger *slog.Logger
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	dir, err := os.MkdirTemp("", "clusterproxy-testcluster-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		return 1
	}
	c, err := localcluster.Start(context.Background(), localcluster.Options{Dir: dir, Logger: logger})
	if err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: %v%s\n", err, hint(err))
		if errors.Is(err, localcluster.ErrRedisServerNotFound) {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "testcluster: node directories kept in %s\n", dir)
		}
		return 1
	}
	code := 1
	func() {
		// A panicking run must not leave the nodes behind (they would die
		// with the process anyway, by their parent-death signal).
		defer func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
				code = 1
			}
		}()
		if run == nil {
			code = m.Run()
		} else {
			code = run(c)
		}
	}()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "testcluster: tests failed; node directories (redis.log) kept in %s\n", dir)
		return code
	}
	_ = os.RemoveAll(dir)
	return 0
}

// Start starts a six-node cluster dedicated to one test, for tests that
// mutate the cluster (failover, migration, killed nodes). Its nodes live in
// tb.TempDir() and are stopped by tb.Cleanup. A cluster that cannot start
// fails the test.
func Start(tb testing.TB) *localcluster.Cluster {
	tb.Helper()
	return StartWith(tb, localcluster.Options{})
}

// StartWith is Start with options (a password, another shape); a zero
// opts.Dir means tb.TempDir().
func StartWith(tb testing.TB, opts localcluster.Options) *localcluster.Cluster {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	c, err := localcluster.Start(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("testcluster: %v%s", err, hint(err))
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("testcluster: %v", err)
		}
	})
	return c
}

// NewClusterClient returns a go-redis cluster client of c (with its
// password), closed by tb.Cleanup.
func NewClusterClient(tb testing.TB, c *localcluster.Cluster) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:           c.Addrs(),
		Password:        c.Password(),
		DisableIdentity: true,
	})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

func hint(err error) string {
	if errors.Is(err, localcluster.ErrRedisServerNotFound) {
		return "\ntestcluster: the integration tests need a real redis-server: run `make deps` (or install the redis-server package)"
	}
	return ""
}
