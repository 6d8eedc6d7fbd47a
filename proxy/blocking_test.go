package proxy_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// TestBlockingCommands: blocking commands run on dedicated connections,
// are woken by other clients, honour their timeouts, and never hold up the
// shared pipelines.
func TestBlockingCommands(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		blocked := p.client(t, proto)
		other := p.client(t, proto)
		keys := keysOnEveryMaster(t, p, "blk"+string(rune('0'+proto)), 6)
		for _, k := range keys {
			res := make(chan []string, 1)
			go func() { res <- blocked.BLPop(ctx, 10*time.Second, k).Val() }()
			time.Sleep(50 * time.Millisecond)
			// The shared pipeline to the same node still answers at once.
			start := time.Now()
			if err := other.Set(ctx, k+":side", "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Fatalf("SET took %v while a client was blocked", d)
			}
			if err := other.RPush(ctx, k, "job").Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case v := <-res:
				if len(v) != 2 || v[0] != k || v[1] != "job" {
					t.Fatalf("BLPOP = %v", v)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("BLPOP not woken by RPUSH")
			}
		}
		// Timeouts are honoured.
		start := time.Now()
		if err := blocked.BLPop(ctx, 300*time.Millisecond, keys[0]+":empty").Err(); err != redis.Nil {
			t.Fatalf("BLPOP timeout: %v", err)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Fatalf("BLPOP 0.3s returned after %v", d)
		}
		// XREAD BLOCK woken by XADD; BZPOPMIN woken by ZADD.
		sk := keys[1] + ":stream"
		xres := make(chan []redis.XStream, 1)
		go func() {
			xres <- blocked.XRead(ctx, &redis.XReadArgs{Streams: []string{sk, "$"}, Block: 5 * time.Second}).Val()
		}()
		time.Sleep(100 * time.Millisecond)
		other.XAdd(ctx, &redis.XAddArgs{Stream: sk, Values: []any{"f", "v"}})
		if v := <-xres; len(v) != 1 || len(v[0].Messages) != 1 {
			t.Fatalf("XREAD BLOCK = %v", v)
		}
		zk := keys[2] + ":z"
		zres := make(chan *redis.ZWithKey, 1)
		go func() { zres <- blocked.BZPopMin(ctx, 5*time.Second, zk).Val() }()
		time.Sleep(100 * time.Millisecond)
		other.ZAdd(ctx, zk, redis.Z{Score: 1, Member: "m"})
		if v := <-zres; v == nil || v.Member != "m" {
			t.Fatalf("BZPOPMIN = %v", v)
		}
		// Keys in different slots are refused like the cluster does.
		if err := blocked.BLPop(ctx, time.Second, "blk:a", "blk:b").Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Fatalf("cross-slot BLPOP: %v", err)
		}
	}
}

// TestBlockedClientDisconnects: a client that leaves while blocked releases
// the node connection (the node stops counting a blocked client).
func TestBlockedClientDisconnects(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	key := "blkgone:q"
	owner, err := shared.SlotOwner(ctx, router.Slot([]byte(key)))
	if err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: owner})
	defer node.Close()
	blocked := func() int {
		info := node.Info(ctx, "clients").Val()
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "blocked_clients:"); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		return -1
	}
	raw := dialRaw(t, p.Addr)
	if _, err := raw.Write(resp.AppendCommandStrings(nil, "BLPOP", key, "0")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "node sees the blocked client", func() bool { return blocked() == 1 })
	raw.Close()
	waitFor(t, 3*time.Second, "node releases the blocked client", func() bool { return blocked() == 0 })
	// The list was not consumed by the abandoned BLPOP.
	c := p.client(t, 2)
	c.RPush(ctx, key, "x")
	if v := c.LPop(ctx, key).Val(); v != "x" {
		t.Fatalf("LPOP = %q: the abandoned BLPOP took the element", v)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWait: WAIT and WAITAOF count acknowledgements of this client's writes
// on every master it wrote to, without holding up the shared pipelines.
func TestWait(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	other := p.client(t, 2)
	for _, k := range keysOnEveryMaster(t, p, "wait", 12) {
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := c.Wait(ctx, 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	// Two replicas are asked for, each master has one: the timeout is
	// honoured and the least count is the answer.
	c.Set(ctx, "wait:again", "v", 0)
	start := time.Now()
	res := make(chan int64, 1)
	go func() { res <- c.Wait(ctx, 2, 400*time.Millisecond).Val() }()
	time.Sleep(50 * time.Millisecond)
	if err := other.Set(ctx, "wait:side", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if side := time.Since(start); side > 300*time.Millisecond {
		t.Fatalf("a plain SET waited %v behind a WAIT", side)
	}
	if n := <-res; n != 1 {
		t.Fatalf("WAIT 2 = %d, want 1", n)
	}
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Fatalf("WAIT 2 400ms returned after %v", d)
	}
	// WAITAOF exists from Redis 7.2: the proxy knows it when the nodes do.
	node := redis.NewClient(&redis.Options{Addr: shared.Addrs()[0]})
	defer node.Close()
	info, _ := node.Do(ctx, "COMMAND", "INFO", "WAITAOF").Slice()
	hasWaitAOF := len(info) == 1 && info[0] != nil
	c.Set(ctx, "wait:aof", "v", 0)
	v, err := c.Do(ctx, "WAITAOF", "1", "1", "2000").Slice()
	switch {
	case hasWaitAOF && (err != nil || len(v) != 2 || v[0] != int64(1) || v[1] != int64(1)):
		t.Fatalf("WAITAOF = %v, %v", v, err)
	case !hasWaitAOF && (err == nil || !strings.Contains(err.Error(), "unknown command 'WAITAOF'")):
		t.Fatalf("WAITAOF on nodes without it: %v, %v", v, err)
	}
}

// TestHalfClosedClient: a client that closes its side of the connection
// while a blocking or gateway command runs gets an error that says so (it
// may still read), not a shutdown message, and at once.
func TestHalfClosedClient(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	for _, cmd := range [][]string{
		{"BLPOP", "halfclose-list", "10"},
		{"CACHE.GET", "gwc:v1:{halfclose:0000000000000000000000000000000000000000000000000000000000000000}", "WAIT", "10000"},
	} {
		c := dialRaw(t, p.Addr)
		if cmd[0] == "CACHE.GET" {
			// Another client holds the fill token, so this GET waits.
			if got := dialRaw(t, p.Addr).do(t, "CACHE.GET", cmd[1]); !strings.HasPrefix(got, "*2") {
				t.Fatalf("first CACHE.GET: %q", got)
			}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(cmd))
		for _, a := range cmd {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the command is running
		start := time.Now()
		if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		line, err := c.br.ReadString('\n')
		want := "-ERR proxy: the command was abandoned: the client closed its side of the connection\r\n"
		if err != nil || line != want {
			t.Fatalf("%s after a half-close: %q, %v; want %q", cmd[0], line, err, want)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("%s answered %v after the half-close", cmd[0], d)
		}
	}
}

// TestIdleTimeoutWaitingClient: a client waiting for a slow reply is not
// idle: the idle timeout closes it only once it has nothing in flight.
func TestIdleTimeoutWaitingClient(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{IdleTimeout: 300 * time.Millisecond}, router.Options{})
	key := "gwc:v1:{idlewait:" + strings.Repeat("1", 64) + "}"
	if got := dialRaw(t, p.Addr).do(t, "CACHE.GET", key); !strings.HasPrefix(got, "*2") {
		t.Fatalf("first CACHE.GET: %q", got)
	}
	c := dialRaw(t, p.Addr)
	start := time.Now()
	// Another caller holds the fill token: this one waits 1.2 s, four idle
	// timeouts, then answers WAIT.
	got := c.do(t, "CACHE.GET", key, "WAIT", "1200")
	if !strings.HasPrefix(got, "*") || time.Since(start) < time.Second {
		t.Fatalf("CACHE.GET WAIT 1200 with a 300ms idle timeout: %q after %v", got, time.Since(start))
	}
	// Nothing in flight now: closed after the idle timeout.
	expectClosed(t, c.Conn, c.br, 3*time.Second)
}

// TestIdleTimeoutSubscriber: like Redis's timeout, the idle timeout spares
// a subscribed client waiting for messages; once it unsubscribes, it is
// idle again.
func TestIdleTimeoutSubscriber(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{IdleTimeout: 300 * time.Millisecond}, router.Options{})
	ctx := context.Background()
	pub := p.client(t, 2)
	for _, proto := range []string{"2", "3"} {
		c := dialRaw(t, p.Addr)
		if proto == "3" {
			c.do(t, "HELLO", "3")
			for range 14 { // the rest of HELLO's map: 7 pairs
				c.reply(t)
			}
		}
		ch := "idlesub:" + proto
		if got := c.do(t, "SUBSCRIBE", ch); got != "*3\r\n" && got != ">3\r\n" {
			t.Fatalf("SUBSCRIBE: %q", got)
		}
		c.reply(t)
		c.reply(t)
		c.reply(t)
		time.Sleep(time.Second) // three idle timeouts
		// PUBLISH counts the receiving node's subscribers only: delivery
		// is what counts.
		if err := pub.Publish(ctx, ch, "still here").Err(); err != nil {
			t.Fatalf("PUBLISH after the idle time: %v", err)
		}
		var got []string
		for range 4 { // header, kind, channel, payload
			got = append(got, strings.TrimSpace(c.reply(t)))
		}
		if msg := strings.Join(got, " "); !strings.Contains(msg, "message") || !strings.HasSuffix(msg, "still here") {
			t.Fatalf("subscriber after the idle time: %q", msg)
		}
		if got := c.do(t, "UNSUBSCRIBE"); got != "*3\r\n" && got != ">3\r\n" {
			t.Fatalf("UNSUBSCRIBE: %q", got)
		}
		c.reply(t)
		c.reply(t)
		c.reply(t)
		// No subscription now: closed after the idle timeout.
		expectClosed(t, c.Conn, c.br, 3*time.Second)
	}
}

// TestPipelineRepliesBeforeLongWait: the replies of a pipeline's commands
// before a blocking command, a WAIT or a gateway command that waits go out
// at once, as Redis sends them; they do not wait until it returns.
func TestPipelineRepliesBeforeLongWait(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	// Another caller holds the entry's fill token: CACHE.GET ... WAIT
	// waits it out.
	cacheKey := "gwc:v1:{plw:" + strings.Repeat("2", 64) + "}"
	if got := dialRaw(t, p.Addr).do(t, "CACHE.GET", cacheKey); !strings.HasPrefix(got, "*2") {
		t.Fatalf("first CACHE.GET: %q", got)
	}
	for _, tc := range []struct {
		name string
		wait []string
		want string // how the long command's reply starts
	}{
		{"blpop", []string{"BLPOP", "plw:list", "2"}, "*-1"},
		{"wait", []string{"WAIT", "2", "2000"}, ":1"}, // each master has one replica: the timeout runs out
		{"gateway", []string{"CACHE.GET", cacheKey, "WAIT", "2000"}, "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrames(t, p.Addr, 2)
			start := time.Now()
			c.send(t, []string{"SET", "plw:" + tc.name, "v"}, []string{"GET", "plw:" + tc.name}, tc.wait)
			for i, want := range []string{"+OK", "$1\r\nv", tc.want} {
				frame, err := c.rd.ReadReply()
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if got := strings.TrimSpace(string(frame)); got != want && (i < 2 || !strings.HasPrefix(got, want)) {
					t.Fatalf("reply %d: %q, want %q", i, got, want)
				}
				d := time.Since(start)
				if i < 2 && d > time.Second {
					t.Fatalf("reply %d came after %v: held behind %s", i, d, tc.wait[0])
				}
				if i == 2 && d < 1900*time.Millisecond {
					t.Fatalf("%s returned after %v, before its timeout", tc.wait[0], d)
				}
			}
		})
	}
}
