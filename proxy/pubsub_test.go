package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

func receive(t *testing.T, ch <-chan *redis.Message, wantChannel, wantPayload string) {
	t.Helper()
	select {
	case m := <-ch:
		if m.Channel != wantChannel || m.Payload != wantPayload {
			t.Fatalf("got message %s=%q, want %s=%q", m.Channel, m.Payload, wantChannel, wantPayload)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no message on %s", wantChannel)
	}
}

// TestPubSub: SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE through the proxy in RESP2
// and RESP3, with PUBLISH/SPUBLISH from another client.
func TestPubSub(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		pub := p.client(t, proto)
		sub := c.Subscribe(ctx, "ps:news")
		if _, err := sub.Receive(ctx); err != nil { // subscribe confirmation
			t.Fatal(err)
		}
		if err := sub.PSubscribe(ctx, "ps:pat:*"); err != nil {
			t.Fatal(err)
		}
		msgs := sub.Channel()
		time.Sleep(100 * time.Millisecond)
		// In a cluster PUBLISH counts only the receiving node's subscribers;
		// delivery is what counts.
		if err := pub.Publish(ctx, "ps:news", "hello").Err(); err != nil {
			t.Fatal(err)
		}
		receive(t, msgs, "ps:news", "hello")
		pub.Publish(ctx, "ps:pat:1", "by pattern")
		receive(t, msgs, "ps:pat:1", "by pattern")
		sub.Close()

		// Sharded channels on different masters.
		ss := c.SSubscribe(ctx, "ps:shard:a")
		if _, err := ss.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ss.SSubscribe(ctx, "ps:shard:b"); err != nil {
			t.Fatal(err)
		}
		smsgs := ss.Channel()
		time.Sleep(100 * time.Millisecond)
		pub.SPublish(ctx, "ps:shard:a", "A")
		receive(t, smsgs, "ps:shard:a", "A")
		pub.SPublish(ctx, "ps:shard:b", "B")
		receive(t, smsgs, "ps:shard:b", "B")
		ss.Close()
	}
	// A subscribed RESP2 client may only use the pub/sub commands and PING.
	raw := dialRaw(t, p.Addr)
	if got := raw.do(t, "SUBSCRIBE", "ps:raw"); got != "*3\r\n" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	raw.reply(t)
	raw.reply(t)
	raw.reply(t)
	if got := raw.do(t, "GET", "x"); !strings.HasPrefix(got, "-ERR Can't execute 'get'") {
		t.Fatalf("GET while subscribed: %q", got)
	}
	if got := raw.do(t, "PING"); got != "*2\r\n" {
		t.Fatalf("PING while subscribed: %q", got)
	}
}

// TestPubSubSurvivesNodeLoss kills the master holding a client's
// subscription; the proxy subscribes again after the failover and the
// client keeps receiving messages.
func TestPubSubSurvivesNodeLoss(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) { pubSubSurvivesNodeLoss(t, proto) })
	}
}

func pubSubSurvivesNodeLoss(t *testing.T, proto int) {
	cl := testcluster.Start(t)
	p := startProxy(t, cl, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, proto)
	pub := p.client(t, proto)
	sub := c.Subscribe(ctx, "ps:survive")
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := sub.Channel()
	defer sub.Close()
	// Find the master holding the subscription and kill it.
	masters, err := cl.MasterAddrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := ""
	for _, m := range masters {
		nc := redis.NewClient(&redis.Options{Addr: m})
		n := nc.PubSubNumSub(ctx, "ps:survive").Val()["ps:survive"]
		nc.Close()
		if n > 0 {
			victim = m
		}
	}
	if victim == "" {
		t.Fatal("no master holds the subscription")
	}
	if err := cl.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pub.Publish(ctx, "ps:survive", "after")
		select {
		case m := <-msgs:
			if m.Payload != "after" {
				t.Fatalf("got %q", m.Payload)
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("subscription not restored after the node was lost")
		}
	}
}
