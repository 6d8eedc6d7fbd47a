package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// TestDataTypes drives every core data type through a plain client, with
// keys spread over all three masters, in RESP2 and RESP3.
func TestDataTypes(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	for _, proto := range []int{2, 3} {
		t.Run("resp"+strconv.Itoa(proto), func(t *testing.T) {
			ctx := context.Background()
			c := p.client(t, proto)
			pre := fmt.Sprintf("types%d-%d", proto, time.Now().UnixNano()) // fresh per run (-count)
			keys := keysOnEveryMaster(t, p, pre, 30)
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			for i, k := range keys {
				// strings
				must(c.Set(ctx, k+":s", "v"+strconv.Itoa(i), 0).Err())
				if v := c.Get(ctx, k+":s").Val(); v != "v"+strconv.Itoa(i) {
					t.Fatalf("GET %s = %q", k, v)
				}
				if n := c.Incr(ctx, k+":n").Val(); n != 1 {
					t.Fatalf("INCR = %d", n)
				}
				must(c.Append(ctx, k+":s", "x").Err())
				if v := c.GetRange(ctx, k+":s", -1, -1).Val(); v != "x" {
					t.Fatalf("GETRANGE = %q", v)
				}
				// hashes
				must(c.HSet(ctx, k+":h", "a", "1", "b", "2").Err())
				if m := c.HGetAll(ctx, k+":h").Val(); m["a"] != "1" || m["b"] != "2" || len(m) != 2 {
					t.Fatalf("HGETALL = %v", m)
				}
				// lists
				must(c.RPush(ctx, k+":l", "a", "b", "c").Err())
				if l := c.LRange(ctx, k+":l", 0, -1).Val(); strings.Join(l, "") != "abc" {
					t.Fatalf("LRANGE = %v", l)
				}
				if v := c.LPop(ctx, k+":l").Val(); v != "a" {
					t.Fatalf("LPOP = %q", v)
				}
				// sets
				must(c.SAdd(ctx, k+":set", "x", "y", "x").Err())
				if n := c.SCard(ctx, k+":set").Val(); n != 2 {
					t.Fatalf("SCARD = %d", n)
				}
				// sorted sets
				must(c.ZAdd(ctx, k+":z", redis.Z{Score: 2, Member: "b"}, redis.Z{Score: 1, Member: "a"}).Err())
				if z := c.ZRangeWithScores(ctx, k+":z", 0, -1).Val(); len(z) != 2 || z[0].Member != "a" || z[1].Score != 2 {
					t.Fatalf("ZRANGE = %v", z)
				}
				// streams
				id := c.XAdd(ctx, &redis.XAddArgs{Stream: k + ":x", Values: map[string]any{"f": "v"}}).Val()
				if msgs := c.XRange(ctx, k+":x", "-", "+").Val(); len(msgs) != 1 || msgs[0].ID != id || msgs[0].Values["f"] != "v" {
					t.Fatalf("XRANGE = %v", msgs)
				}
				// bitmaps
				must(c.SetBit(ctx, k+":b", 7, 1).Err())
				if n := c.BitCount(ctx, k+":b", nil).Val(); n != 1 {
					t.Fatalf("BITCOUNT = %d", n)
				}
				// HyperLogLog
				must(c.PFAdd(ctx, k+":hll", "a", "b", "c").Err())
				if n := c.PFCount(ctx, k+":hll").Val(); n != 3 {
					t.Fatalf("PFCOUNT = %d", n)
				}
				// geo
				must(c.GeoAdd(ctx, k+":g", &redis.GeoLocation{Name: "p", Longitude: 13.361389, Latitude: 38.115556}).Err())
				if pos := c.GeoPos(ctx, k+":g", "p").Val(); len(pos) != 1 || pos[0] == nil || pos[0].Longitude < 13.36 {
					t.Fatalf("GEOPOS = %v", pos)
				}
				// expiry and type
				must(c.Expire(ctx, k+":s", time.Hour).Err())
				if ttl := c.TTL(ctx, k+":s").Val(); ttl <= 0 {
					t.Fatalf("TTL = %v", ttl)
				}
				if typ := c.Type(ctx, k+":h").Val(); typ != "hash" {
					t.Fatalf("TYPE = %q", typ)
				}
			}
			// Multi-key commands whose keys share a slot pass through.
			tag := "{" + pre + "tag}"
			must(c.MSet(ctx, tag+"a", "1", tag+"b", "2").Err())
			if v := c.MGet(ctx, tag+"a", tag+"b").Val(); fmt.Sprint(v) != "[1 2]" {
				t.Fatalf("MGET = %v", v)
			}
			must(c.SAdd(ctx, tag+"s1", "a", "b").Err())
			must(c.SAdd(ctx, tag+"s2", "b", "c").Err())
			if v := c.SInter(ctx, tag+"s1", tag+"s2").Val(); fmt.Sprint(v) != "[b]" {
				t.Fatalf("SINTER = %v", v)
			}
			must(c.Rename(ctx, tag+"a", tag+"c").Err())
			// Cross-slot multi-key commands are refused as the cluster does.
			err := c.Rename(ctx, pre+"x1", pre+"x2").Err()
			if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
				t.Fatalf("cross-slot RENAME: %v", err)
			}
		})
	}
}

// TestPipelineOrder sends 1,000 commands over all masters in one pipeline;
// every reply comes back in request order.
func TestPipelineOrder(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		keys := keysOnEveryMaster(t, p, "pipe"+strconv.Itoa(proto), 500)
		pipe := c.Pipeline()
		for i, k := range keys {
			pipe.Set(ctx, k, i, 0)
			pipe.Incr(ctx, k)
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(cmds) != 1000 {
			t.Fatalf("got %d replies", len(cmds))
		}
		for i := range keys {
			if cmds[2*i].(*redis.StatusCmd).Val() != "OK" {
				t.Fatalf("reply %d: %v", 2*i, cmds[2*i])
			}
			if v := cmds[2*i+1].(*redis.IntCmd).Val(); v != int64(i+1) {
				t.Fatalf("reply %d: INCR = %d, want %d", 2*i+1, v, i+1)
			}
		}
	}
}

// TestLocalCommands covers what the proxy answers itself.
func TestLocalCommands(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	if v := c.Ping(ctx).Val(); v != "PONG" {
		t.Fatalf("PING = %q", v)
	}
	if v := c.Echo(ctx, "hi").Val(); v != "hi" {
		t.Fatalf("ECHO = %q", v)
	}
	if err := c.Do(ctx, "SELECT", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "SELECT", "1").Err(); err == nil || !strings.Contains(err.Error(), "SELECT is not allowed in cluster mode") {
		t.Fatalf("SELECT 1: %v", err)
	}
	if err := c.Do(ctx, "CLIENT", "SETNAME", "me").Err(); err != nil {
		t.Fatal(err)
	}
	if v := c.Do(ctx, "CLIENT", "GETNAME").Val(); v != "me" {
		t.Fatalf("CLIENT GETNAME = %v", v)
	}
	if v := c.ClusterKeySlot(ctx, "foo").Val(); v != 12182 {
		t.Fatalf("CLUSTER KEYSLOT = %d", v)
	}
	info := c.ClusterInfo(ctx).Val()
	if !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO = %q", info)
	}
	slots := c.ClusterSlots(ctx).Val()
	if len(slots) != 1 || slots[0].Start != 0 || slots[0].End != 16383 || slots[0].Nodes[0].Addr != p.Addr {
		t.Fatalf("CLUSTER SLOTS = %+v", slots)
	}
	shards := c.ClusterShards(ctx).Val()
	if len(shards) != 1 || len(shards[0].Nodes) != 1 || shards[0].Nodes[0].Role != "master" {
		t.Fatalf("CLUSTER SHARDS = %+v", shards)
	}
	if v := c.Do(ctx, "NOSUCHCMD", "a").Err(); v == nil || !strings.Contains(v.Error(), "unknown command 'NOSUCHCMD'") {
		t.Fatalf("unknown command: %v", v)
	}
	if v := c.Do(ctx, "GET").Err(); v == nil || !strings.Contains(v.Error(), "wrong number of arguments for 'get'") {
		t.Fatalf("arity: %v", v)
	}
	// COMMAND is answered (client libraries introspect with it).
	if n := c.Do(ctx, "COMMAND", "COUNT").Val(); n.(int64) < 200 {
		t.Fatalf("COMMAND COUNT = %v", n)
	}
	// HELLO 3 switches the connection to RESP3.
	c3 := p.client(t, 3)
	if err := c3.Set(ctx, "local:h3", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if m := c3.HGetAll(ctx, "local:none").Val(); len(m) != 0 {
		t.Fatalf("HGETALL missing = %v", m)
	}
}

// TestClusterClientThroughProxy: a cluster-aware client pointed at the
// proxy sees one node owning every slot and works.
func TestClusterClientThroughProxy(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{p.Addr}})
	defer cc.Close()
	for i := 0; i < 50; i++ {
		k := "cc:" + strconv.Itoa(i)
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, _ := cc.Get(ctx, k).Int(); v != i {
			t.Fatalf("GET %s = %d", k, v)
		}
	}
}

// TestAuth: with a proxy password, everything but AUTH/HELLO/QUIT answers
// NOAUTH until the client authenticates.
func TestAuth(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{Password: "s3cret"}, router.Options{})
	ctx := context.Background()
	raw := dialRaw(t, p.Addr)
	if got := raw.do(t, "GET", "auth:k"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("before AUTH: %q", got)
	}
	if got := raw.do(t, "AUTH", "wrong"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("bad AUTH: %q", got)
	}
	if got := raw.do(t, "AUTH", "s3cret"); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	if got := raw.do(t, "GET", "auth:k"); got != "$-1\r\n" {
		t.Fatalf("after AUTH: %q", got)
	}
	c := redis.NewClient(&redis.Options{Addr: p.Addr, Password: "s3cret"})
	defer c.Close()
	if err := c.Set(ctx, "auth:k2", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(tb testing.TB, addr string) *rawConn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// do sends a command and returns its reply as raw text (one line, or a
// bulk string with its payload).
func (r *rawConn) do(tb testing.TB, args ...string) string {
	tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(r, b.String()); err != nil {
		tb.Fatal(err)
	}
	return r.reply(tb)
}

func (r *rawConn) reply(tb testing.TB) string {
	tb.Helper()
	line, err := r.br.ReadString('\n')
	if err != nil {
		tb.Fatalf("read reply: %v", err)
	}
	if line[0] == '$' && line != "$-1\r\n" {
		n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			tb.Fatal(err)
		}
		return line + string(buf)
	}
	return line
}

// TestProtocolError: a malformed frame answers "-ERR Protocol error" and
// closes that connection only.
func TestProtocolError(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	other := dialRaw(t, p.Addr)
	bad := dialRaw(t, p.Addr)
	if _, err := io.WriteString(bad, "*1\r\n$1099511627776\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := bad.reply(t); !strings.HasPrefix(got, "-ERR Protocol error: invalid bulk length") {
		t.Fatalf("got %q", got)
	}
	if _, err := bad.br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after protocol error: %v", err)
	}
	if got := other.do(t, "PING"); got != "+PONG\r\n" {
		t.Fatalf("other client: %q", got)
	}
	// Inline commands (telnet style) work.
	if _, err := io.WriteString(other, "SET inline:k \"a b\"\r\nGET inline:k\r\n"); err != nil {
		t.Fatal(err)
	}
	if got := other.reply(t); got != "+OK\r\n" {
		t.Fatalf("inline SET: %q", got)
	}
	if got := other.reply(t); got != "$3\r\na b\r\n" {
		t.Fatalf("inline GET: %q", got)
	}
}

// TestRedisToolsThroughProxy runs the real redis-benchmark and redis-cli
// against the proxy.
func TestRedisToolsThroughProxy(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	host, port, _ := net.SplitHostPort(p.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-q",
		"-t", "set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100", "-n", "5000", "-c", "20", "-r", "1000").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	text := string(out)
	for _, test := range []string{"SET", "GET", "INCR", "LPUSH", "RPOP", "SADD", "HSET", "ZADD", "LRANGE_100"} {
		if !strings.Contains(text, test) {
			t.Errorf("redis-benchmark did not report %s:\n%s", test, text)
		}
	}
	if strings.Contains(strings.ToLower(text), "error") {
		t.Fatalf("redis-benchmark reported errors:\n%s", text)
	}
	cli := exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port)
	cli.Stdin = strings.NewReader("SET cli:k hello\nGET cli:k\nDEL cli:k\nPING\n")
	out, err = cli.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "OK hello 1 PONG" {
		t.Fatalf("redis-cli output %q", out)
	}
}

// TestReadBuffersKeepCommands drives clients through many small read
// buffers (1 KiB), so that buffers are retired while their commands are in
// flight and lent again once they are answered: pipelines of writes and
// reads of random sizes, split multi-key commands, commands answered one by
// one, and transactions, all checked against what was written.
func TestReadBuffersKeepCommands(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{Limits: resp.Limits{BufferSize: 1024}}, router.Options{})
	ctx := context.Background()
	pre := fmt.Sprintf("rbuf-%d", time.Now().UnixNano())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.client(t, 2+w%2)
			rng := rand.New(rand.NewSource(int64(w)))
			val := func(i, round int) string {
				return fmt.Sprintf("%d/%d/%s", i, round, strings.Repeat("v", rng.Intn(900)))
			}
			keys := make([]string, 64)
			for i := range keys {
				keys[i] = fmt.Sprintf("%s:%d:%d", pre, w, i)
			}
			last := map[string]string{}
			for round := range 30 {
				pipe := c.Pipeline()
				for i, k := range keys {
					v := val(i, round)
					pipe.Set(ctx, k, v, 0)
					last[k] = v
				}
				gets := make([]*redis.StringCmd, len(keys))
				for i, k := range keys {
					gets[i] = pipe.Get(ctx, k)
				}
				mget := pipe.MGet(ctx, keys[:16]...)
				if _, err := pipe.Exec(ctx); err != nil {
					t.Errorf("worker %d round %d: %v", w, round, err)
					return
				}
				for i, k := range keys {
					if got := gets[i].Val(); got != last[k] {
						t.Errorf("worker %d round %d: GET %s = %.40q, want %.40q", w, round, k, got, last[k])
						return
					}
				}
				for i, v := range mget.Val() {
					if v != last[keys[i]] {
						t.Errorf("worker %d round %d: MGET[%d] = %.40q", w, round, i, v)
						return
					}
				}
				for i := range 8 { // one at a time: answered by the reader itself
					k := keys[rng.Intn(len(keys))]
					v := val(i, round)
					if err := c.Set(ctx, k, v, 0).Err(); err != nil {
						t.Error(err)
						return
					}
					last[k] = v
					if got := c.Get(ctx, k).Val(); got != v {
						t.Errorf("worker %d: GET %s after SET = %.40q", w, k, got)
						return
					}
				}
				if round%5 == 0 { // a transaction holds its queued commands
					k := fmt.Sprintf("%s:%d:tx{%d}", pre, w, round)
					tx := c.TxPipeline()
					for i := range 20 {
						tx.Append(ctx, k, val(i, round)[:1])
					}
					n := tx.StrLen(ctx, k)
					if _, err := tx.Exec(ctx); err != nil || n.Val() != 20 {
						t.Errorf("worker %d: transaction: %v, STRLEN %d", w, err, n.Val())
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
