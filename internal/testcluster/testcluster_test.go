package testcluster_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
)

var shared *localcluster.Cluster

func TestMain(m *testing.M) {
	testcluster.Main(m, func(c *localcluster.Cluster) int {
		shared = c
		return m.Run()
	})
}

func TestShared(t *testing.T) {
	masters, err := shared.MasterAddrs(t.Context())
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters = %v, %v; want 3", masters, err)
	}
	if n := len(shared.Nodes()); n != 6 {
		t.Fatalf("%d nodes, want 6", n)
	}
	cc := testcluster.NewClusterClient(t, shared)
	if err := cc.Set(t.Context(), "shared", "ok", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := cc.Get(t.Context(), "shared").Result(); err != nil || got != "ok" {
		t.Fatalf("GET = %q, %v", got, err)
	}
}

func TestStartStopsOnCleanup(t *testing.T) {
	var pids []int
	t.Run("dedicated", func(t *testing.T) {
		c := testcluster.StartWith(t, localcluster.Options{Password: "pw"})
		for _, n := range c.Nodes() {
			pids = append(pids, n.PID())
		}
		cc := testcluster.NewClusterClient(t, c)
		if err := cc.Set(t.Context(), "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if shared.Addrs()[0] == c.Addrs()[0] {
			t.Fatal("dedicated cluster shares ports with the shared one")
		}
	})
	if len(pids) != 6 {
		t.Fatalf("%d pids, want 6", len(pids))
	}
	for _, pid := range pids {
		if pid == 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			t.Errorf("node process %d still exists after the test's cleanup", pid)
		}
	}
}

// TestMainFailsWithoutRedisServer runs this test binary again with an empty
// PATH: its TestMain must exit non-zero, saying how to get redis-server.
func TestMainFailsWithoutRedisServer(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "make deps") {
		t.Fatalf("stderr does not mention make deps:\n%s", stderr.String())
	}
}
