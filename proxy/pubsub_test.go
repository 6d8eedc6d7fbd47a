package proxy_test

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
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
	// Keyspace notifications are subscribed on every master: after the
	// failover, the promoted replica's are heard too.
	if err := pub.ConfigSet(ctx, "notify-keyspace-events", "K$").Err(); err != nil {
		t.Fatal(err)
	}
	ks := p.client(t, proto).PSubscribe(ctx, "__keyspace@0__:surv:*")
	if _, err := ks.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	ksMsgs := ks.Channel()
	victimKey := ""
	for i := 0; victimKey == ""; i++ {
		if k := fmt.Sprintf("surv:%d", i); p.Router.MasterOf(router.Slot([]byte(k))) == victim {
			victimKey = k
		}
	}
	if err := cl.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for restored := false; !restored; {
		pub.Publish(ctx, "ps:survive", "after")
		select {
		case m := <-msgs:
			if m.Payload != "after" {
				t.Fatalf("got %q", m.Payload)
			}
			restored = true
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("subscription not restored after the node was lost")
		}
	}
	for {
		pub.Set(ctx, victimKey, "after", 0)
		select {
		case m := <-ksMsgs:
			if m.Channel == "__keyspace@0__:"+victimKey {
				return
			}
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no keyspace notification for %s from the promoted master", victimKey)
		}
	}
}

// TestPubSubReplyOrder pipelines pub/sub commands with commands the proxy
// answers itself (PING, a refused GET) and one a shared node connection
// answers (GET in RESP3): every reply comes in request order, the
// confirmations from the subscriber connections included, as Redis writes
// them.
func TestPubSubReplyOrder(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	for _, proto := range []int{2, 3} {
		for round := range 3 {
			t.Run(fmt.Sprintf("resp%d/%d", proto, round), func(t *testing.T) {
				conn, err := net.Dial("tcp", p.Addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				rd := resp.NewReplyReader(conn, resp.Limits{})
				if proto == 3 {
					if _, err := conn.Write(resp.AppendCommandStrings(nil, "HELLO", "3")); err != nil {
						t.Fatal(err)
					}
					if _, err := rd.ReadReply(); err != nil {
						t.Fatal(err)
					}
				}
				pre := fmt.Sprintf("po%d%d:", proto, round)
				// Two shard channels on different masters: two shard
				// connections.
				var shardCh []string
				for i := 0; len(shardCh) < 2; i++ {
					ch := fmt.Sprintf("%sshard%d", pre, i)
					if len(shardCh) == 0 || p.Router.MasterOf(router.Slot([]byte(ch))) != p.Router.MasterOf(router.Slot([]byte(shardCh[0]))) {
						shardCh = append(shardCh, ch)
					}
				}
				var out []byte
				for _, cmd := range [][]string{
					{"SUBSCRIBE", pre + "a", pre + "b"},
					{"PSUBSCRIBE", pre + "p*"},
					{"SSUBSCRIBE", shardCh[0]},
					{"SSUBSCRIBE", shardCh[1]},
					{"PING", "one"},
					{"GET", pre + "k"},
					{"UNSUBSCRIBE"},
					{"PUNSUBSCRIBE", pre + "p*"},
					{"SUNSUBSCRIBE"},
					{"SUNSUBSCRIBE"}, // both shard connections hold nothing now: one answer
					{"PING", "two"},
				} {
					out = resp.AppendCommandStrings(out, cmd...)
				}
				if _, err := conn.Write(out); err != nil {
					t.Fatal(err)
				}
				get := "-ERR Can't execute 'get'" // refused while subscribed
				if proto == 3 {
					get = "_" // any command is allowed: the node's nil
				}
				// The counts are the client's, as Redis reports them:
				// channels and patterns together, shard channels apart,
				// whichever connection holds them. An unsubscribe from
				// everything names the channels in any order (see
				// matches).
				want := []string{
					"subscribe " + pre + "a 1", "subscribe " + pre + "b 2", "psubscribe " + pre + "p? 3",
					"ssubscribe " + shardCh[0] + " 1", "ssubscribe " + shardCh[1] + " 2", "pong one", get + "*",
					"unsubscribe " + pre + "? 2", "unsubscribe " + pre + "? 1", "punsubscribe " + pre + "p? 0",
					"sunsubscribe " + pre + "shard? 1", "sunsubscribe " + pre + "shard? 0",
					"sunsubscribe $-1 0",
					"two", // no longer subscribed: a plain PING reply
				}
				if proto == 3 {
					want[5] = "one" // PING answers as it does unsubscribed
					want[12] = "sunsubscribe _ 0"
				}
				for i, w := range want {
					frame, err := rd.ReadReply()
					if err != nil {
						t.Fatalf("reply %d: %v", i, err)
					}
					if got := describeFrame(frame); !matches(w, got) {
						t.Fatalf("reply %d: got %q, want %q", i, got, w)
					}
				}
			})
		}
	}
}

// describeFrame renders a reply for the pub/sub order tests: an
// aggregate's elements (bulk strings and integers) separated by spaces, a
// bulk string's payload, or the frame itself.
func describeFrame(frame []byte) string {
	els, _, err := resp.Elements(frame, nil)
	if err != nil || len(els) < 2 {
		if v, ok := resp.BulkValue(frame); ok {
			return string(v)
		}
		return strings.TrimSpace(string(frame))
	}
	var parts []string
	for _, e := range els {
		if v, ok := resp.BulkValue(e); ok {
			parts = append(parts, string(v))
		} else {
			parts = append(parts, strings.TrimPrefix(strings.TrimSpace(string(e)), ":"))
		}
	}
	return strings.Join(parts, " ")
}

// matches reports whether got matches want, where * stands for any text
// and ? for one character.
func matches(want, got string) bool {
	re := strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(want))
	return regexp.MustCompile("^" + re + "$").MatchString(got)
}

// TestPubSubRefusedInOrder: when a node refuses a SUBSCRIBE (an ACL user
// without that channel), its error is the command's reply, in request order,
// without holding up the replies behind it, and the client is not counted
// as subscribed to the refused channels.
func TestPubSubRefusedInOrder(t *testing.T) {
	ctx := context.Background()
	for _, addr := range shared.Addrs() {
		n := redis.NewClient(&redis.Options{Addr: addr, Password: shared.Password()})
		if err := n.Do(ctx, "ACL", "SETUSER", "po-user", "on", ">po-pass", "~*", "resetchannels", "&po:ok*", "+@all").Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			n.Do(context.Background(), "ACL", "DELUSER", "po-user")
			n.Close()
		})
	}
	p := startProxy(t, shared, proxy.Config{}, router.Options{Username: "po-user", Password: "po-pass"})
	conn, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	var out []byte
	out = resp.AppendCommandStrings(out, "SUBSCRIBE", "po:ok1")
	out = resp.AppendCommandStrings(out, "SUBSCRIBE", "po:deny", "po:ok2")
	out = resp.AppendCommandStrings(out, "PING")
	out = resp.AppendCommandStrings(out, "SUBSCRIBE", "po:ok3")
	// The refused channels are not held: unsubscribing from everything is
	// confirmed twice, then the client is no longer subscribed.
	out = resp.AppendCommandStrings(out, "UNSUBSCRIBE")
	out = resp.AppendCommandStrings(out, "PING")
	start := time.Now()
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	rd := resp.NewReplyReader(conn, resp.Limits{})
	for i, w := range []string{"subscribe po:ok1 1", "-NOPERM*", "pong ", "subscribe po:ok3 2", "unsubscribe po:ok? 1", "unsubscribe po:ok? 0", "+PONG"} {
		frame, err := rd.ReadReply()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if got := describeFrame(frame); !matches(w, got) {
			t.Fatalf("reply %d: got %q, want %q", i, got, w)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("replies took %v: the refusal held them up", d)
	}
}

// TestKeyspaceNotifications: a node publishes keyspace notifications only
// for its own keys; through the proxy, a client subscribed to them hears
// every master's, each once, with confirmations and counts as one Redis
// gives them (a command mixing them with plain channels included).
func TestKeyspaceNotifications(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	admin := p.client(t, 2)
	if err := admin.ConfigSet(ctx, "notify-keyspace-events", "K$").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.ConfigSet(context.Background(), "notify-keyspace-events", "") })
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			pre := fmt.Sprintf("ksn%d", proto)
			keys := keysOnEveryMaster(t, p, pre, 12)
			conn, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			rd := resp.NewReplyReader(conn, resp.Limits{})
			next := func() string {
				t.Helper()
				frame, err := rd.ReadReply()
				if err != nil {
					t.Fatal(err)
				}
				return describeFrame(frame)
			}
			expect := func(i int, want string) {
				t.Helper()
				if got := next(); !matches(want, got) {
					t.Fatalf("reply %d: got %q, want %q", i, got, want)
				}
			}
			if proto == 3 {
				conn.Write(resp.AppendCommandStrings(nil, "HELLO", "3"))
				next()
			}
			pattern := "__keyspace@0__:" + pre + ":*"
			channel := "__keyspace@0__:" + keys[0]
			var out []byte
			out = resp.AppendCommandStrings(out, "PSUBSCRIBE", pattern)
			out = resp.AppendCommandStrings(out, "SUBSCRIBE", pre+":plain", channel)
			out = resp.AppendCommandStrings(out, "PING", "x")
			conn.Write(out)
			expect(0, "psubscribe "+pattern+" 1")
			expect(1, "subscribe "+pre+":plain 2")
			expect(2, "subscribe "+channel+" 3")
			pong := "pong x"
			if proto == 3 {
				pong = "x"
			}
			expect(3, pong)

			for _, k := range keys {
				if err := admin.Set(ctx, k, "v", 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			// Every key's notification once through the pattern, and
			// keys[0]'s once more through its channel: a duplicate or a
			// missing master shows as a count other than one.
			seen := map[string]int{}
			for range len(keys) + 1 {
				seen[next()]++
			}
			for _, k := range keys {
				if n := seen["pmessage "+pattern+" __keyspace@0__:"+k+" set"]; n != 1 {
					t.Fatalf("notification of %s through the pattern: %d times (all: %v)", k, n, seen)
				}
			}
			if n := seen["message "+channel+" set"]; n != 1 {
				t.Fatalf("notification through the channel: %d times (all: %v)", n, seen)
			}

			out = resp.AppendCommandStrings(nil, "UNSUBSCRIBE")
			out = resp.AppendCommandStrings(out, "PUNSUBSCRIBE")
			out = resp.AppendCommandStrings(out, "PING")
			conn.Write(out)
			got := []string{next(), next()}
			slices.Sort(got)
			if want := []string{"unsubscribe " + channel + " ?", "unsubscribe " + pre + ":plain ?"}; !matches(want[0], got[0]) || !matches(want[1], got[1]) {
				t.Fatalf("UNSUBSCRIBE: %q", got)
			}
			expect(6, "punsubscribe "+pattern+" 0")
			expect(7, "+PONG")
			// Nothing more: each notification came once.
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if frame, err := rd.ReadReply(); err == nil {
				t.Fatalf("unexpected frame after unsubscribing: %q", frame)
			}
		})
	}
}
