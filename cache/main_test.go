package cache_test

import (
	"testing"

	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
)

// cluster is the six-node cluster the package's tests share (a namespace
// per test).
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	testcluster.Main(m, func(c *localcluster.Cluster) int {
		cluster = c
		return m.Run()
	})
}
