package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/metrics"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// renderFrame renders any reply for the tracking tests: a bulk string as
// its payload, an integer as its digits, a null as "(nil)", an aggregate
// as its rendered elements in brackets, a simple string without its +,
// anything else trimmed.
func renderFrame(frame []byte) string {
	if v, ok := resp.BulkValue(frame); ok {
		return string(v)
	}
	if n, ok := resp.IntValue(frame); ok {
		return fmt.Sprint(n)
	}
	if s := strings.TrimSpace(string(frame)); s == "_" || s == "$-1" || s == "*-1" {
		return "(nil)"
	}
	els, _, err := resp.Elements(frame, nil)
	if err != nil {
		return strings.TrimPrefix(strings.TrimSpace(string(frame)), "+")
	}
	parts := make([]string, len(els))
	for i, e := range els {
		parts[i] = renderFrame(e)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// nextFrame reads c's next frame, rendered by renderFrame.
func (c *frameConn) nextFrame(tb testing.TB) string {
	tb.Helper()
	frame, err := c.rd.ReadReply()
	if err != nil {
		tb.Fatal(err)
	}
	return renderFrame(frame)
}

// invalidated reads invalidation pushes from c until every key in want
// was named, and fails on any other frame or key.
func (c *frameConn) invalidated(tb testing.TB, want ...string) {
	tb.Helper()
	left := slices.Clone(want)
	for len(left) > 0 {
		got := c.nextFrame(tb)
		keys, ok := strings.CutPrefix(got, "[invalidate [")
		if !ok {
			tb.Fatalf("got %q, want an invalidation of %v", got, left)
		}
		for _, k := range strings.Fields(strings.TrimSuffix(keys, "]]")) {
			i := slices.Index(left, k)
			if i < 0 {
				tb.Fatalf("invalidation of %q, want only %v (got %q)", k, left, got)
			}
			left = slices.Delete(left, i, i+1)
		}
	}
}

// sameSlotKeys returns n keys sharing one hash tag, so that writes to them
// reach one master in order.
func sameSlotKeys(tag string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("{%s}%d", tag, i)
	}
	return keys
}

// clean deletes keys left by an earlier run of the test (-count).
func clean(tb testing.TB, w *redis.Client, keys ...string) {
	tb.Helper()
	if err := w.Del(context.Background(), keys...).Err(); err != nil {
		tb.Fatal(err)
	}
}

// TestClientTracking: a RESP3 client that turns tracking on is told about
// the keys it read, on every master, once each, as a node tells its own
// clients; keys it did not read, or read before their last invalidation,
// are not sent.
func TestClientTracking(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	w := p.client(t, 2)
	keys := keysOnEveryMaster(t, p, "trk", 6)
	same := sameSlotKeys("trk-same", 2)
	clean(t, w, append(keys, same...)...)
	c := dialFrames(t, p.Addr, 3)
	c.send(t, []string{"CLIENT", "TRACKING", "ON"}, []string{"GET", keys[0]}, append([]string{"MGET"}, keys[1:]...))
	for i, want := range []string{"OK", "(nil)", "[(nil) (nil) (nil) (nil) (nil)]"} {
		if got := c.nextFrame(t); got != want {
			t.Fatalf("reply %d: got %q, want %q", i, got, want)
		}
	}
	if err := w.MSet(ctx, keys[0], "a", keys[3], "b").Err(); err != nil {
		t.Fatal(err)
	}
	c.invalidated(t, keys[0], keys[3])
	for _, k := range keys[1:3] {
		if err := w.Set(ctx, k, "c", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.invalidated(t, keys[1], keys[2])

	// keys[0] left the table with its invalidation; written again, it is
	// not sent, while a key of the same slot that was read is, after it.
	c.send(t, []string{"GET", same[1]})
	if got := c.nextFrame(t); got != "(nil)" {
		t.Fatalf("GET: %q", got)
	}
	if err := w.MSet(ctx, same[0], "x", same[1], "y").Err(); err != nil {
		t.Fatal(err)
	}
	c.invalidated(t, same[1])

	c.send(t, []string{"CLIENT", "TRACKINGINFO"}, []string{"CLIENT", "GETREDIR"}, []string{"CLIENT", "INFO"})
	if got := c.nextFrame(t); got != "[flags [on] redirect 0 prefixes []]" {
		t.Fatalf("TRACKINGINFO: %q", got)
	}
	if got := c.nextFrame(t); got != "0" {
		t.Fatalf("GETREDIR: %q", got)
	}
	if got := c.nextFrame(t); !strings.Contains(got, " flags=t ") || !strings.Contains(got, " redir=0 ") {
		t.Fatalf("CLIENT INFO: %q", got)
	}
	info, err := w.Info(ctx, "clients", "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	// keys[4] and keys[5] are still tracked.
	for _, want := range []string{"tracking_clients:1\r\n", "tracking_total_keys:2\r\n", "tracking_total_items:2\r\n"} {
		if !strings.Contains(info, want) {
			t.Fatalf("INFO lacks %q:\n%s", want, info)
		}
	}

	reg := prometheus.NewRegistry()
	if err := metrics.RegisterTracking(reg, func() metrics.TrackingStats {
		clients, keys, sent, flushes := p.Server.TrackingStats()
		return metrics.TrackingStats{Clients: clients, Keys: keys, Invalidations: sent, Flushes: flushes}
	}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"clusterproxy_tracking_clients": 1, "clusterproxy_tracking_keys": 2,
		"clusterproxy_tracking_invalidations_total": 5, "clusterproxy_tracking_flushes_total": 0} {
		if got := metricValue(t, reg, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// Off: nothing more is sent; the next reply is the PING's.
	c.send(t, []string{"CLIENT", "TRACKING", "OFF"})
	if got := c.nextFrame(t); got != "OK" {
		t.Fatalf("TRACKING OFF: %q", got)
	}
	if err := w.Set(ctx, keys[4], "d", 0).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.send(t, []string{"PING"})
	if got := c.nextFrame(t); got != "PONG" {
		t.Fatalf("after TRACKING OFF: %q, want PONG", got)
	}
}

// TestClientTrackingLikeNode: the options, errors and CLIENT TRACKINGINFO
// of the proxy are the node's, in RESP2 and RESP3.
func TestClientTrackingLikeNode(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	pipeline := [][]string{
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "TRACKING", "on", "PREFIX", "a"},
		{"CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"},
		{"CLIENT", "TRACKING", "on", "BCAST", "OPTIN"},
		{"CLIENT", "TRACKING", "on", "REDIRECT", "987654321"},
		{"CLIENT", "TRACKING", "on", "REDIRECT", "abc"},
		{"CLIENT", "TRACKING", "maybe"},
		{"CLIENT", "TRACKING", "on", "NOSUCH"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a", "PREFIX", "ab"},
		{"CLIENT", "TRACKING", "on", "OPTIN"},
		{"CLIENT", "CACHING", "maybe"},
		{"CLIENT", "CACHING", "no"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "TRACKING", "on", "OPTOUT"},
		{"CLIENT", "TRACKING", "on", "BCAST"},
		{"CLIENT", "TRACKING", "on", "OPTIN", "NOLOOP"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "GETREDIR"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "TRACKING", "on", "OPTOUT"},
		{"CLIENT", "CACHING", "yes"},
		{"CLIENT", "CACHING", "no"},
		{"CLIENT", "TRACKINGINFO"},
		{"PING"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "y", "PREFIX", "xz"},
		{"CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "y"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "TRACKING", "on", "BCAST"},
		{"CLIENT", "TRACKINGINFO"},
		{"CLIENT", "TRACKING", "off"},
		{"CLIENT", "TRACKINGINFO"},
	}
	for _, proto := range []int{2, 3} {
		var replies [2][]string
		for i, addr := range []string{shared.Addrs()[0], p.Addr} {
			c := dialFrames(t, addr, proto)
			c.send(t, pipeline...)
			for range pipeline {
				replies[i] = append(replies[i], c.nextFrame(t))
			}
		}
		for i := range pipeline {
			if replies[0][i] != replies[1][i] {
				t.Errorf("RESP%d %v: node %q, proxy %q", proto, pipeline[i], replies[0][i], replies[1][i])
			}
		}
	}
}

// TestClientTrackingModes: OPTIN tracks only the command after CLIENT
// CACHING YES, OPTOUT all but the one after CLIENT CACHING NO, and BCAST
// hears every written key under its prefixes, on every master, without
// reading them.
func TestClientTrackingModes(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	w := p.client(t, 2)

	for _, mode := range []string{"OPTIN", "OPTOUT"} {
		keys := sameSlotKeys("trk-"+mode, 3)
		clean(t, w, keys...)
		c := dialFrames(t, p.Addr, 3)
		caching := []string{"CLIENT", "CACHING", "YES"}
		tracked := keys[1]
		if mode == "OPTOUT" {
			caching[2] = "NO"
			tracked = keys[0]
		}
		// OPTIN: only keys[1], after CACHING YES. OPTOUT: keys[0] and
		// keys[2], but keys[1], after CACHING NO, is not.
		c.send(t, []string{"CLIENT", "TRACKING", "ON", mode}, []string{"GET", keys[0]}, caching, []string{"GET", keys[1]}, []string{"GET", keys[2]})
		for range 5 {
			c.nextFrame(t)
		}
		if err := w.MSet(ctx, keys[0], "1", keys[1], "2", keys[2], "3").Err(); err != nil {
			t.Fatal(err)
		}
		if mode == "OPTIN" {
			c.invalidated(t, tracked)
		} else {
			c.invalidated(t, keys[0], keys[2])
		}
		c.send(t, []string{"PING"})
		if got := c.nextFrame(t); got != "PONG" {
			t.Fatalf("%s: %q after the invalidations, want PONG", mode, got)
		}
	}

	// CLIENT CACHING YES covers a whole transaction, as rueidis uses it.
	tx := sameSlotKeys("trk-tx", 2)
	clean(t, w, tx...)
	c := dialFrames(t, p.Addr, 3)
	c.send(t, []string{"CLIENT", "TRACKING", "ON", "OPTIN"}, []string{"CLIENT", "CACHING", "YES"},
		[]string{"MULTI"}, []string{"PTTL", tx[0]}, []string{"GET", tx[0]}, []string{"EXEC"}, []string{"GET", tx[1]})
	for i, want := range []string{"OK", "OK", "OK", "QUEUED", "QUEUED", "[-2 (nil)]", "(nil)"} {
		if got := c.nextFrame(t); got != want {
			t.Fatalf("transaction reply %d: %q, want %q", i, got, want)
		}
	}
	if err := w.MSet(ctx, tx[1], "1", tx[0], "2").Err(); err != nil {
		t.Fatal(err)
	}
	c.invalidated(t, tx[0])

	keys := keysOnEveryMaster(t, p, "trkb", 6)
	b := dialFrames(t, p.Addr, 3)
	b.send(t, []string{"CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "trkb:", "PREFIX", "zz-trkb"})
	if got := b.nextFrame(t); got != "OK" {
		t.Fatalf("BCAST: %q", got)
	}
	for _, k := range keys {
		if err := w.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := w.Set(ctx, "other-"+k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b.invalidated(t, keys...)
	if err := w.Set(ctx, "zz-trkb1", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b.invalidated(t, "zz-trkb1")
}

// TestClientTrackingRedirect: a RESP2 client redirects its invalidations
// to a client subscribed to __redis__:invalidate, as with a node; once
// that client is gone, a RESP3 tracking client is told the redirection
// broke.
func TestClientTrackingRedirect(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	w := p.client(t, 2)
	keys := sameSlotKeys("trk-redir", 2)
	clean(t, w, keys...)

	sub := dialFrames(t, p.Addr, 2)
	sub.send(t, []string{"CLIENT", "ID"}, []string{"SUBSCRIBE", "__redis__:invalidate"})
	id := sub.nextFrame(t)
	if got := sub.nextFrame(t); got != "[subscribe __redis__:invalidate 1]" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	c := dialFrames(t, p.Addr, 2)
	c.send(t, []string{"CLIENT", "TRACKING", "ON", "REDIRECT", id}, []string{"GET", keys[0]}, []string{"CLIENT", "GETREDIR"})
	for i, want := range []string{"OK", "(nil)", id} {
		if got := c.nextFrame(t); got != want {
			t.Fatalf("reply %d: %q, want %q", i, got, want)
		}
	}
	if err := w.Set(ctx, keys[0], "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := sub.nextFrame(t); got != "[message __redis__:invalidate ["+keys[0]+"]]" {
		t.Fatalf("redirected invalidation: %q", got)
	}

	sub.Close()
	time.Sleep(100 * time.Millisecond)
	c.send(t, []string{"HELLO", "3"}, []string{"GET", keys[1]})
	c.nextFrame(t)
	c.nextFrame(t)
	if err := w.Set(ctx, keys[1], "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := c.nextFrame(t); got != "[tracking-redir-broken "+id+"]" {
		t.Fatalf("after the redirection target left: %q", got)
	}
	c.send(t, []string{"CLIENT", "TRACKINGINFO"})
	if got := c.nextFrame(t); got != "[flags [on broken_redirect] redirect "+id+" prefixes []]" {
		t.Fatalf("TRACKINGINFO: %q", got)
	}
}

// nodeListeners returns the CLIENT LIST lines, on every node, of the
// connections in broadcast tracking mode: the proxies' invalidation
// listeners.
func nodeListeners(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, addr := range shared.Addrs() {
		n := redis.NewClient(&redis.Options{Addr: addr})
		list, err := n.ClientList(context.Background()).Result()
		n.Close()
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " flags=tB ") {
				out = append(out, addr+" "+line)
			}
		}
	}
	return out
}

// TestClientTrackingListenerLost: when a master's invalidation listener
// breaks, tracking clients are told to drop every key (changes may have
// gone unheard), and once the proxy listens again they hear changes
// again.
func TestClientTrackingListenerLost(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	w := p.client(t, 2)
	key := "trk-lost"
	clean(t, w, key)
	c := dialFrames(t, p.Addr, 3)
	c.send(t, []string{"CLIENT", "TRACKING", "ON"}, []string{"GET", key})
	c.nextFrame(t)
	c.nextFrame(t)
	lines := nodeListeners(t)
	if len(lines) < 3 {
		t.Fatalf("%d listeners on the nodes, want one per master:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	master := p.Router.MasterOf(router.Slot([]byte(key)))
	killed := 0
	for _, line := range lines {
		addr, rest, _ := strings.Cut(line, " ")
		if addr != master {
			continue
		}
		id := strings.TrimPrefix(strings.Fields(rest)[0], "id=")
		n := redis.NewClient(&redis.Options{Addr: addr})
		if err := n.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
			t.Fatal(err)
		}
		n.Close()
		killed++
	}
	if killed == 0 {
		t.Fatalf("no listener on %s", master)
	}
	if got := c.nextFrame(t); got != "[invalidate (nil)]" {
		t.Fatalf("after the listener broke: %q, want an invalidation of every key", got)
	}
	// Listening again brings another invalidation of every key (changes
	// between the two went unheard).
	if got := c.nextFrame(t); got != "[invalidate (nil)]" {
		t.Fatalf("after the listener came back: %q, want an invalidation of every key", got)
	}
	c.send(t, []string{"GET", key})
	c.nextFrame(t)
	if err := w.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.invalidated(t, key)
}

// TestClientTrackingRueidis: rueidis, whose client-side cache needs
// CLIENT TRACKING (OPTIN, with CLIENT CACHING YES and a MULTI per cached
// read), caches through the proxy and sees another client's write.
func TestClientTrackingRueidis(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	// As a single node, and as the one-node cluster the proxy presents
	// (rueidis's default when CLUSTER SLOTS answers).
	for _, single := range []bool{true, false} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) {
			rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.Addr}, ForceSingleClient: single})
			if err != nil {
				t.Fatalf("rueidis with client-side caching: %v", err)
			}
			defer rc.Close()
			rueidisCaches(t, p, rc, fmt.Sprintf("trk-rueidis-%v", single))
		})
	}
}

// rueidisCaches checks that rc caches keys through the proxy and sees
// another client's writes to them.
func rueidisCaches(t *testing.T, p *testProxy, rc rueidis.Client, prefix string) {
	ctx := context.Background()
	w := p.client(t, 2)
	keys := keysOnEveryMaster(t, p, prefix, 6)
	for _, k := range keys {
		if err := w.Set(ctx, k, "v1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	get := func(k string) (string, bool) {
		t.Helper()
		r := rc.DoCache(ctx, rc.B().Get().Key(k).Cache(), time.Minute)
		v, err := r.ToString()
		if err != nil {
			t.Fatalf("DoCache GET %s: %v", k, err)
		}
		return v, r.IsCacheHit()
	}
	for _, k := range keys {
		if v, hit := get(k); v != "v1" || hit {
			t.Fatalf("first GET %s: %q hit=%v, want v1 from the proxy", k, v, hit)
		}
		if v, hit := get(k); v != "v1" || !hit {
			t.Fatalf("second GET %s: %q hit=%v, want v1 from the cache", k, v, hit)
		}
	}
	for _, k := range keys {
		if err := w.Set(ctx, k, "v2", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range keys {
		for {
			v, _ := get(k)
			if v == "v2" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s still %q from the cache 5 s after it was written", k, v)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestClientTrackingNoStaleCache: a client that caches each reply and
// drops what it is told changed, reading while another client writes,
// ends with a cache that matches the cluster: no invalidation overtakes
// the reply of a read sent before it, and none is lost.
func TestClientTrackingNoStaleCache(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	cc := startCacheChecker(t, p, keysOnEveryMaster(t, p, "trk-stale", 24))
	time.Sleep(1500 * time.Millisecond)
	reads, cached := cc.check(t)
	if reads < 100 || cached == 0 {
		t.Fatalf("%d reads, %d cached: the test did not exercise the cache", reads, cached)
	}
	t.Logf("%d reads, %d keys cached at the end", reads, cached)
}

// cacheChecker is a client-side caching client, as simple as one can be:
// it caches each reply and drops what it is told changed (a key, or every
// key), while a writer increments the same keys. Its cache must match the
// cluster once the writes stop and the last invalidations arrived.
type cacheChecker struct {
	p     *testProxy
	keys  []string
	w     *redis.Client
	c     net.Conn
	rd    *resp.Reader
	cache map[string]string
	reads int

	stop    chan struct{}
	readErr chan error // the reader's end
	wrote   chan int   // the writer's end: writes acknowledged
}

// startCacheChecker starts the caching client and the writer on keys.
func startCacheChecker(t *testing.T, p *testProxy, keys []string) *cacheChecker {
	t.Helper()
	conn, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cc := &cacheChecker{p: p, keys: keys, w: p.client(t, 2), c: conn, rd: resp.NewReplyReader(conn, resp.Limits{}),
		cache: map[string]string{}, stop: make(chan struct{}), readErr: make(chan error, 1), wrote: make(chan int, 1)}
	if err := cc.w.Del(context.Background(), keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.roundTrip([]string{"HELLO", "3"}); err != nil {
		t.Fatal(err)
	}
	if got, err := cc.roundTrip([]string{"CLIENT", "TRACKING", "ON"}); err != nil || got != "OK" {
		t.Fatalf("CLIENT TRACKING ON: %q, %v", got, err)
	}
	go func() {
		n := 0
		for i := 0; ; i++ {
			select {
			case <-cc.stop:
				cc.wrote <- n
				return
			default:
			}
			// Errors (a failover's lost connection) leave the write
			// unknown; the cache must follow whatever the cluster holds.
			if cc.w.Incr(context.Background(), keys[i%len(keys)]).Err() == nil {
				n++
			}
		}
	}()
	go func() {
		for {
			select {
			case <-cc.stop:
				cc.readErr <- nil
				return
			default:
			}
			if err := cc.readRound(); err != nil {
				cc.readErr <- err
				return
			}
		}
	}()
	return cc
}

// apply applies a push to the cache and reports whether it was one.
func (cc *cacheChecker) apply(frame []byte) bool {
	if len(frame) == 0 || frame[0] != '>' {
		return false
	}
	got := renderFrame(frame)
	inv, ok := strings.CutPrefix(got, "[invalidate ")
	switch {
	case !ok:
	case inv == "(nil)]":
		clear(cc.cache)
	default:
		for _, k := range strings.Fields(strings.Trim(inv, "[]")) {
			delete(cc.cache, k)
		}
	}
	return true
}

// roundTrip sends cmd and returns its reply, applying pushes before it.
func (cc *cacheChecker) roundTrip(cmd []string) (string, error) {
	_ = cc.c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := cc.c.Write(resp.AppendCommandStrings(nil, cmd...)); err != nil {
		return "", err
	}
	for {
		frame, err := cc.rd.ReadReply()
		if err != nil {
			return "", err
		}
		if !cc.apply(frame) {
			return renderFrame(frame), nil
		}
	}
}

// readRound reads every key not cached in one pipeline, then PING, and
// caches the replies. An invalidation that arrives between the replies applies to
// the replies before it only: those after it were read after the change.
func (cc *cacheChecker) readRound() error {
	var missing []string
	for _, k := range cc.keys {
		if _, ok := cc.cache[k]; !ok {
			missing = append(missing, k)
		}
	}
	var out []byte
	for _, k := range missing {
		out = resp.AppendCommandStrings(out, "GET", k)
	}
	out = resp.AppendCommandStrings(out, "PING") // invalidations are read up to its reply
	_ = cc.c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := cc.c.Write(out); err != nil {
		return err
	}
	got := make([]string, 0, len(missing))
	for len(got) < len(missing) {
		frame, err := cc.rd.ReadReply()
		if err != nil {
			return err
		}
		if !cc.apply(frame) {
			if resp.IsError(frame) {
				got = append(got, "\x00error") // not cacheable
			} else {
				got = append(got, renderFrame(frame))
			}
			continue
		}
		inv, _ := strings.CutPrefix(renderFrame(frame), "[invalidate ")
		for i, k := range missing[:len(got)] {
			if inv == "(nil)]" || slices.Contains(strings.Fields(strings.Trim(inv, "[]")), k) {
				got[i] = "\x00dropped"
			}
		}
	}
	for i, k := range missing {
		if !strings.HasPrefix(got[i], "\x00") {
			cc.cache[k] = got[i]
		}
	}
	cc.reads += len(missing)
	for {
		frame, err := cc.rd.ReadReply()
		if err != nil {
			return err
		}
		if !cc.apply(frame) {
			if got := renderFrame(frame); got != "PONG" {
				return fmt.Errorf("PING: %q", got)
			}
			return nil
		}
	}
}

// check stops the writer and the reader, lets the last invalidations
// arrive, and compares the cache with the cluster. It returns the reads
// made and the keys cached at the end.
func (cc *cacheChecker) check(t *testing.T) (reads, cached int) {
	t.Helper()
	close(cc.stop)
	if err := <-cc.readErr; err != nil {
		t.Fatalf("caching client: %v", err)
	}
	<-cc.wrote
	time.Sleep(300 * time.Millisecond)
	if got, err := cc.roundTrip([]string{"PING"}); err != nil || got != "PONG" {
		t.Fatalf("PING: %q, %v", got, err)
	}
	for k, v := range cc.cache {
		now, err := cc.w.Get(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if now != v {
			t.Errorf("%s cached as %q, but it is %q: an invalidation was lost or came before the reply it follows", k, v, now)
		}
	}
	return cc.reads, len(cc.cache)
}

// TestClientTrackingMaxKeys: beyond TrackingMaxKeys the proxy forgets
// keys, telling their readers, so the table stays bounded, as Redis's
// tracking-table-max-keys does.
func TestClientTrackingMaxKeys(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, shared, proxy.Config{TrackingMaxKeys: 10}, router.Options{})
	w := p.client(t, 2)
	keys := keysOnEveryMaster(t, p, "trk-max", 40)
	clean(t, w, keys...)
	c := dialFrames(t, p.Addr, 3)
	c.send(t, []string{"CLIENT", "TRACKING", "ON"})
	c.nextFrame(t)
	evicted := map[string]bool{}
	// An eviction's invalidation follows the reply of the read that
	// caused it: the PING's reply comes after the last one.
	for _, k := range append(keys, "") {
		cmd, want := []string{"GET", k}, "(nil)"
		if k == "" {
			cmd, want = []string{"PING"}, "PONG"
		}
		c.send(t, cmd)
		for {
			got := c.nextFrame(t)
			if inv, ok := strings.CutPrefix(got, "[invalidate ["); ok {
				for _, e := range strings.Fields(strings.TrimSuffix(inv, "]]")) {
					evicted[e] = true
				}
				continue
			}
			if got != want {
				t.Fatalf("%v: %q", cmd, got)
			}
			break
		}
	}
	info, err := w.Info(ctx, "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "tracking_total_keys:10\r\n") {
		t.Fatalf("want 10 keys tracked:\n%s", info)
	}
	// Every key read is either still tracked or was reported evicted: a
	// write to each is reported exactly for the tracked ones.
	var tracked []string
	for _, k := range keys {
		if !evicted[k] {
			tracked = append(tracked, k)
		}
	}
	if len(tracked) > 10 || len(evicted) < 30 {
		t.Fatalf("%d keys evicted and %d tracked of 40, want at most 10 tracked", len(evicted), len(tracked))
	}
	for _, k := range keys {
		if err := w.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.invalidated(t, tracked...)
	c.send(t, []string{"PING"})
	if got := c.nextFrame(t); got != "PONG" {
		t.Fatalf("after the tracked keys' invalidations: %q, want PONG", got)
	}
}

// TestClientTrackingChurn: clients turn tracking on and off in every mode,
// read, write, run transactions, reset, redirect to subscribers that come
// and go, and disconnect, concurrently (as many at once as -parallel
// allows) and with a table small enough to evict: every command is
// answered, pushes come only between replies, and once they are gone no
// tracking client is left (run with -race).
func TestClientTrackingChurn(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{TrackingMaxKeys: 50}, router.Options{})
	keys := keysOnEveryMaster(t, p, "trk-churn", 30)
	var subIDs sync.Map // client id of a live __redis__:invalidate subscriber
	t.Run("churn", func(t *testing.T) { churnTracking(t, p, keys, &subIDs) })
	// Once every client left, none tracks.
	deadline := time.Now().Add(5 * time.Second)
	for {
		clients, _, _, _ := p.Server.TrackingStats()
		if clients == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tracking clients left", clients)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.client(t, 2).Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// churnTracking runs TestClientTrackingChurn's clients.
func churnTracking(t *testing.T, p *testProxy, keys []string, subIDs *sync.Map) {
	for w := range 6 {
		t.Run(fmt.Sprintf("client%d", w), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var c *frameConn
			var proto int
			connect := func() {
				if c != nil {
					c.Close()
				}
				proto = 2 + rng.IntN(2)
				c = dialFrames(t, p.Addr, proto)
			}
			connect()
			// do sends cmd and reads until its reply, skipping pushes.
			do := func(cmd ...string) string {
				t.Helper()
				c.send(t, cmd)
				for {
					frame, err := c.rd.ReadReply()
					if err != nil {
						t.Fatalf("%v: %v", cmd, err)
					}
					if frame[0] == '>' {
						if got := renderFrame(frame); !strings.HasPrefix(got, "[invalidate ") && !strings.HasPrefix(got, "[tracking-redir-broken ") {
							t.Fatalf("unexpected push %q", got)
						}
						continue
					}
					return renderFrame(frame)
				}
			}
			key := func() string { return keys[rng.IntN(len(keys))] }
			ops := 0
			defer func() { t.Logf("%d operations", ops) }()
			for end := time.Now().Add(time.Second); time.Now().Before(end); ops++ {
				var got string
				switch op := rng.IntN(12); op {
				case 0:
					mode := []string{"", "OPTIN", "OPTOUT", "BCAST", "NOLOOP"}[rng.IntN(5)]
					cmd := []string{"CLIENT", "TRACKING", "ON"}
					if mode != "" {
						cmd = append(cmd, mode)
					}
					if mode == "BCAST" {
						cmd = append(cmd, "PREFIX", fmt.Sprintf("trk-churn:%d", rng.IntN(3)))
					}
					var redir string
					subIDs.Range(func(k, _ any) bool { redir = k.(string); return rng.IntN(2) == 0 })
					if redir != "" && rng.IntN(3) == 0 {
						cmd = append(cmd, "REDIRECT", redir)
					}
					got = do(cmd...)
					if got != "OK" && !strings.HasPrefix(got, "-ERR") {
						t.Fatalf("%v: %q", cmd, got)
					}
				case 1:
					got = do("CLIENT", "TRACKING", "OFF")
				case 2:
					got = do("CLIENT", "CACHING", []string{"YES", "NO"}[rng.IntN(2)])
				case 3, 4, 5:
					got = do("GET", key())
				case 6:
					got = do("MGET", key(), key(), key())
				case 7:
					got = do("SET", key(), "v")
				case 8:
					k := sameSlotKeys(fmt.Sprintf("trk-churn-tx%d", w), 2)
					do("MULTI")
					do("GET", k[0])
					do("SET", k[1], "v")
					got = do("EXEC")
					if !strings.HasPrefix(got, "[") {
						t.Fatalf("EXEC: %q", got)
					}
				case 9:
					got = do("RESET")
					proto = 2
				case 10:
					// Become a redirection target for a while.
					id := do("CLIENT", "ID")
					if proto == 2 {
						do("SUBSCRIBE", "__redis__:invalidate")
						subIDs.Store(id, true)
						time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
						subIDs.Delete(id)
						connect()
					}
					continue
				case 11:
					connect()
					continue
				}
				if got == "" {
					t.Fatal("empty reply")
				}
			}
			c.Close()
		})
	}
}
