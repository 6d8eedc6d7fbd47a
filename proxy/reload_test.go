package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
)

// TestReloadIdleTimeout: an idle timeout set by Reload closes a client that
// stays idle after its next command; turned off again, it closes nobody.
func TestReloadIdleTimeout(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	raw := dialRaw(t, p.Addr)
	raw.do(t, "PING")
	p.Server.Reload(proxy.Settings{IdleTimeout: 300 * time.Millisecond})
	if st := p.Server.Settings(); st.IdleTimeout != 300*time.Millisecond || st.MaxClients != 10000 ||
		st.SlowlogThreshold != proxy.DefaultSlowlogThreshold || st.SlowlogMaxLen != proxy.DefaultSlowlogMaxLen {
		t.Fatalf("settings after Reload: %+v", st)
	}
	raw.do(t, "PING") // from here on the client is watched
	deadline := time.Now().Add(10 * time.Second)
	for p.Server.Clients() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle client not closed after the reloaded idle timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}

	p.Server.Reload(proxy.Settings{})
	c := p.client(t, 2)
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("client closed with the idle timeout off: %v", err)
	}
}
