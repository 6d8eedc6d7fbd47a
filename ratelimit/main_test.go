package ratelimit_test

import (
	"testing"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/ratelimit"
)

// shared is the six-node cluster of this package's tests (distinct keys
// per test).
var shared *localcluster.Cluster

func TestMain(m *testing.M) {
	testcluster.Main(m, func(c *localcluster.Cluster) int {
		shared = c
		return m.Run()
	})
}

// newLimiter returns a Limiter on a cluster client of the shared cluster.
func newLimiter(t *testing.T, opts ratelimit.Options) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(testcluster.NewClusterClient(t, shared), opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
