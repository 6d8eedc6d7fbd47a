package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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
				c := dialFrames(t, p.Addr, proto)
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
				c.send(t,
					[]string{"SUBSCRIBE", pre + "a", pre + "b"},
					[]string{"PSUBSCRIBE", pre + "p*"},
					[]string{"SSUBSCRIBE", shardCh[0]},
					[]string{"SSUBSCRIBE", shardCh[1]},
					[]string{"PING", "one"},
					[]string{"GET", pre + "k"},
					[]string{"UNSUBSCRIBE"},
					[]string{"PUNSUBSCRIBE", pre + "p*"},
					[]string{"SUNSUBSCRIBE"},
					[]string{"SUNSUBSCRIBE"}, // both shard connections hold nothing now: one answer
					[]string{"PING", "two"},
				)
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
					c.expect(t, i, w)
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

// frameConn is a raw client connection whose replies are read frame by
// frame.
type frameConn struct {
	net.Conn
	rd *resp.Reader
}

// dialFrames connects to the proxy (a 20 s deadline, closed at cleanup),
// in RESP3 after HELLO 3 when proto is 3.
func dialFrames(tb testing.TB, addr string, proto int) *frameConn {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &frameConn{Conn: conn, rd: resp.NewReplyReader(conn, resp.Limits{})}
	if proto == 3 {
		c.send(tb, []string{"HELLO", "3"})
		c.next(tb)
	}
	return c
}

// send writes the commands in one write (a pipeline).
func (c *frameConn) send(tb testing.TB, cmds ...[]string) {
	tb.Helper()
	var out []byte
	for _, cmd := range cmds {
		out = resp.AppendCommandStrings(out, cmd...)
	}
	if _, err := c.Write(out); err != nil {
		tb.Fatal(err)
	}
}

// next reads the next reply, rendered by describeFrame.
func (c *frameConn) next(tb testing.TB) string {
	tb.Helper()
	frame, err := c.rd.ReadReply()
	if err != nil {
		tb.Fatal(err)
	}
	return describeFrame(frame)
}

// expect reads reply i and checks it against want (see matches).
func (c *frameConn) expect(tb testing.TB, i int, want string) {
	tb.Helper()
	if got := c.next(tb); !matches(want, got) {
		tb.Fatalf("reply %d: got %q, want %q", i, got, want)
	}
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
	c := dialFrames(t, p.Addr, 2)
	start := time.Now()
	c.send(t,
		[]string{"SUBSCRIBE", "po:ok1"},
		[]string{"SUBSCRIBE", "po:deny", "po:ok2"},
		[]string{"PING"},
		[]string{"SUBSCRIBE", "po:ok3"},
		// The refused channels are not held: unsubscribing from
		// everything is confirmed twice, then the client is no longer
		// subscribed.
		[]string{"UNSUBSCRIBE"},
		[]string{"PING"},
	)
	for i, w := range []string{"subscribe po:ok1 1", "-NOPERM*", "pong ", "subscribe po:ok3 2", "unsubscribe po:ok? 1", "unsubscribe po:ok? 0", "+PONG"} {
		c.expect(t, i, w)
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
			c := dialFrames(t, p.Addr, proto)
			c.send(t, []string{"CLIENT", "ID"})
			id := strings.TrimPrefix(c.next(t), ":")
			pattern := "__keyspace@0__:" + pre + ":*"
			channel := "__keyspace@0__:" + keys[0]
			c.send(t, []string{"PSUBSCRIBE", pattern}, []string{"SUBSCRIBE", pre + ":plain", channel}, []string{"PING", "x"})
			c.expect(t, 0, "psubscribe "+pattern+" 1")
			c.expect(t, 1, "subscribe "+pre+":plain 2")
			c.expect(t, 2, "subscribe "+channel+" 3")
			pong := "pong x"
			if proto == 3 {
				pong = "x"
			}
			c.expect(t, 3, pong)
			// CLIENT LIST counts them as Redis does.
			list := admin.ClientList(ctx).Val()
			if !regexp.MustCompile(`(?m)^id=` + id + ` .* sub=2 psub=1 ssub=0 `).MatchString(list) {
				t.Fatalf("CLIENT LIST does not show client %s with sub=2 psub=1 ssub=0:\n%s", id, list)
			}

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
				seen[c.next(t)]++
			}
			for _, k := range keys {
				if n := seen["pmessage "+pattern+" __keyspace@0__:"+k+" set"]; n != 1 {
					t.Fatalf("notification of %s through the pattern: %d times (all: %v)", k, n, seen)
				}
			}
			if n := seen["message "+channel+" set"]; n != 1 {
				t.Fatalf("notification through the channel: %d times (all: %v)", n, seen)
			}

			c.send(t, []string{"UNSUBSCRIBE"}, []string{"PUNSUBSCRIBE"}, []string{"PING"})
			got := []string{c.next(t), c.next(t)}
			slices.Sort(got)
			if want := []string{"unsubscribe " + channel + " ?", "unsubscribe " + pre + ":plain ?"}; !matches(want[0], got[0]) || !matches(want[1], got[1]) {
				t.Fatalf("UNSUBSCRIBE: %q", got)
			}
			c.expect(t, 6, "punsubscribe "+pattern+" 0")
			c.expect(t, 7, "+PONG")
			// Nothing more: each notification came once.
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if frame, err := c.rd.ReadReply(); err == nil {
				t.Fatalf("unexpected frame after unsubscribing: %q", frame)
			}
		})
	}
}

// TestPubSubChurn: clients pipeline random mixes of every (un)subscribe
// kind, keyspace channels, PING and GET (refused while a RESP2 client is
// subscribed); each reply has the frames and the
// counts Redis would give for the client's subscriptions so far (kept by
// the test), and comes without the 10 s wait of a confirmation that never
// comes.
func TestPubSubChurn(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	for w := range 6 {
		t.Run(fmt.Sprintf("client%d", w), func(t *testing.T) {
			t.Parallel()
			proto := 2 + w%2
			c := dialFrames(t, p.Addr, proto)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			held := map[string]map[string]bool{"c": {}, "p": {}, "s": {}}
			name := func(kind string) string {
				n := fmt.Sprintf("churn%d:%s%d", w, kind, rng.IntN(4))
				if kind == "k" {
					return "__keyspace@0__:" + n
				}
				return n
			}
			for round := range 40 {
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				var cmds [][]string
				var want []string // kind and count of each reply, "pong" for PING
				count := func(set string) int {
					if set == "s" {
						return len(held["s"])
					}
					return len(held["c"]) + len(held["p"])
				}
				for range 1 + rng.IntN(5) {
					switch op := rng.IntN(11); op {
					case 0, 1, 2, 3: // subscribe to one or two names
						kind, set, n := [...]string{"subscribe", "psubscribe", "ssubscribe", "subscribe"}[op], [...]string{"c", "p", "s", "c"}[op], [...]string{"c", "p", "s", "k"}[op]
						names := []string{name(n)}
						if op != 2 && rng.IntN(2) == 0 {
							names = append(names, name(n))
						}
						cmds = append(cmds, append([]string{strings.ToUpper(kind)}, names...))
						for _, nm := range names {
							held[set][nm] = true
							want = append(want, fmt.Sprintf("%s %d", kind, count(set)))
						}
					case 4, 5, 6: // unsubscribe from everything of one kind
						kind, set := [...]string{"unsubscribe", "punsubscribe", "sunsubscribe"}[op-4], [...]string{"c", "p", "s"}[op-4]
						cmds = append(cmds, []string{strings.ToUpper(kind)})
						if len(held[set]) == 0 {
							want = append(want, fmt.Sprintf("%s %d", kind, count(set)))
						}
						for nm := range held[set] {
							delete(held[set], nm)
							want = append(want, fmt.Sprintf("%s %d", kind, count(set)))
						}
					case 7, 8: // unsubscribe from a name, held or not
						kind, set, n := [...]string{"unsubscribe", "punsubscribe"}[op-7], [...]string{"c", "p"}[op-7], [...]string{"c", "p"}[op-7]
						nm := name(n)
						cmds = append(cmds, []string{strings.ToUpper(kind), nm})
						delete(held[set], nm)
						want = append(want, fmt.Sprintf("%s %d", kind, count(set)))
					case 9: // refused while subscribed in RESP2, else the node's nil
						cmds = append(cmds, []string{"GET", name("x")})
						switch {
						case proto == 3:
							want = append(want, "nil")
						case len(held["c"])+len(held["p"])+len(held["s"]) > 0:
							want = append(want, "refused")
						default:
							want = append(want, "nil")
						}
					default:
						cmds = append(cmds, []string{"PING"})
						want = append(want, "pong")
					}
				}
				subscribed := len(held["c"])+len(held["p"])+len(held["s"]) > 0
				c.send(t, cmds...)
				for i, w := range want {
					got := strings.Fields(c.next(t))
					switch {
					case w == "pong": // its shape depends on the state when it ran: any PING reply
						if len(got) == 0 || (got[0] != "pong" && got[0] != "+PONG" && got[0] != "PONG") {
							t.Fatalf("round %d reply %d: got %q, want a PING reply", round, i, got)
						}
					case w == "nil":
						if len(got) != 1 || (got[0] != "$-1" && got[0] != "_") {
							t.Fatalf("round %d reply %d: got %q, want GET's nil", round, i, got)
						}
					case w == "refused":
						if len(got) < 2 || got[0] != "-ERR" || got[1] != "Can't" {
							t.Fatalf("round %d reply %d: got %q, want GET refused while subscribed", round, i, got)
						}
					case len(got) < 2 || got[0]+" "+got[len(got)-1] != w:
						t.Fatalf("round %d reply %d: got %q, want %q (commands %q, subscribed %v)", round, i, got, w, cmds, subscribed)
					}
				}
			}
		})
	}
}
