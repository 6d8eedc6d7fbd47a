package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// The tests of this file check every client-side limit against the shared
// cluster: what a client beyond it gets, that the proxy's memory stays
// bounded, and that other clients are still served. Each logs its figures in
// one "FIGURES:" line.

// limitObserver counts answered commands and slow clients.
type limitObserver struct {
	gatewayEvents
	done atomic.Int64
	slow atomic.Int64
}

func (o *limitObserver) CommandDone(string, bool, time.Duration) { o.done.Add(1) }
func (o *limitObserver) SlowClient()                             { o.slow.Add(1) }

var _ proxy.SlowClientObserver = (*limitObserver)(nil)

// memStats returns the memory statistics after a garbage collection.
func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

// expectClosed reads until the proxy closes c (EOF, or a reset) within d and
// returns how many bytes came before.
func expectClosed(t *testing.T, c net.Conn, r io.Reader, d time.Duration) int64 {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed within %v (%d bytes read)", d, n)
	}
	return n
}

// latencies runs op every interval until stop is closed and returns the
// largest and median time op took.
func latencies(t *testing.T, stop <-chan struct{}, interval time.Duration, op func() error) (worst, median time.Duration) {
	var all []time.Duration
	for {
		start := time.Now()
		if err := op(); err != nil {
			t.Errorf("other client: %v", err)
			return
		}
		all = append(all, time.Since(start))
		select {
		case <-stop:
			slices.Sort(all)
			return all[len(all)-1], all[len(all)/2]
		case <-time.After(interval):
		}
	}
}

// TestLimitMaxClients: beyond MaxClients a client gets "-ERR max number of
// clients reached" and is closed; once a client leaves, a new one is served.
func TestLimitMaxClients(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{MaxClients: 5}, router.Options{})
	conns := make([]*rawConn, 5)
	for i := range conns {
		conns[i] = dialRaw(t, p.Addr)
		if got := conns[i].do(t, "PING"); got != "+PONG\r\n" {
			t.Fatalf("client %d: %q", i, got)
		}
	}
	start := time.Now()
	extra := dialRaw(t, p.Addr)
	if line, err := extra.br.ReadString('\n'); err != nil || line != "-ERR max number of clients reached\r\n" {
		t.Fatalf("6th client: %q, %v", line, err)
	}
	expectClosed(t, extra, extra.br, 5*time.Second)
	refused := time.Since(start)

	// On a TLS listener, a client beyond the limit that never completes its
	// handshake does not hold up the next one.
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pki := newPKI(t)
	ln := tls.NewListener(inner, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{tlsCert(t, pki.proxySrv)}})
	go func() { _ = p.Server.Serve(ln) }()
	silent := dialRaw(t, ln.Addr().String()) // sends no ClientHello
	start = time.Now()
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
		&tls.Config{InsecureSkipVerify: true}) // only the refusal is checked here
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(tc).ReadString('\n'); err != nil || line != "-ERR max number of clients reached\r\n" {
		t.Fatalf("TLS client beyond the limit: %q, %v", line, err)
	}
	refusedTLS := time.Since(start)
	silent.Close()

	start = time.Now()
	conns[0].Close()
	waitFor(t, 5*time.Second, "the closed client to be counted out", func() bool { return p.Server.Clients() == 4 })
	next := dialRaw(t, p.Addr)
	if got := next.do(t, "PING"); got != "+PONG\r\n" {
		t.Fatalf("client after one left: %q", got)
	}
	accepted := time.Since(start)
	for i, c := range conns[1:] {
		if got := c.do(t, "PING"); got != "+PONG\r\n" {
			t.Fatalf("client %d: %q", i+1, got)
		}
	}
	t.Logf("FIGURES: max_clients=5 sixth_refused_and_closed_in=%v tls_client_refused_behind_a_silent_one_in=%v new_client_served_after_one_left_in=%v",
		refused.Round(time.Microsecond), refusedTLS.Round(time.Microsecond), accepted.Round(time.Microsecond))
}

// TestLimitRequestSize: a bulk string over MaxBulk, a command over MaxArgs
// and an inline command over 64 KiB are refused with an error that names the
// limit, and that connection only is closed; a header announcing 1 TiB is
// refused without allocating, and headers announcing the largest bulk
// allowed do not allocate it before its bytes arrive.
func TestLimitRequestSize(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{Limits: resp.Limits{MaxBulk: 1024, MaxElements: 64}}, router.Options{})
	other := dialRaw(t, p.Addr)
	if got := other.do(t, "PING"); got != "+PONG\r\n" {
		t.Fatal(got)
	}
	val := strings.Repeat("v", 1024)
	if got := other.do(t, "SET", "limit-size:ok", val); got != "+OK\r\n" {
		t.Fatalf("SET of a bulk at the limit: %q", got)
	}
	if got := other.do(t, "GET", "limit-size:ok"); got != "$1024\r\n"+val+"\r\n" {
		t.Fatalf("GET: %.40q", got)
	}

	cases := []struct{ name, send, want string }{
		{"bulk", "*3\r\n$3\r\nSET\r\n$14\r\nlimit-size:bad\r\n$1025\r\n",
			"-ERR Protocol error: invalid bulk length: 1025 bytes is over the limit of 1024 bytes (max-bulk)\r\n"},
		{"args", "*65\r\n",
			"-ERR Protocol error: invalid multibulk length: 65 arguments is over the limit of 64 (max-args)\r\n"},
		// Exactly one byte over, so that the proxy has read everything
		// when it closes (unread bytes would make the close a reset).
		{"inline", strings.Repeat("a", resp.DefaultMaxInline+1),
			"-ERR Protocol error: too big inline request: over the limit of 65536 bytes\r\n"},
	}
	var worst time.Duration
	for _, tc := range cases {
		start := time.Now()
		bad := dialRaw(t, p.Addr)
		if _, err := io.WriteString(bad, tc.send); err != nil {
			t.Fatal(err)
		}
		if line, err := bad.br.ReadString('\n'); err != nil || line != tc.want {
			t.Fatalf("%s: got %q, %v; want %q", tc.name, line, err, tc.want)
		}
		expectClosed(t, bad, bad.br, 5*time.Second)
		worst = max(worst, time.Since(start))
		if got := other.do(t, "GET", "limit-size:ok"); got != "$1024\r\n"+val+"\r\n" {
			t.Fatalf("other client after %s: %.40q", tc.name, got)
		}
	}

	// Default limits (512 MiB): 1 TiB is refused at once; 512 MiB headers
	// are accepted but cost little until their bytes come.
	d := startProxy(t, shared, proxy.Config{}, router.Options{})
	before := memStats()
	huge := dialRaw(t, d.Addr)
	if _, err := io.WriteString(huge, "*1\r\n$1099511627776\r\n"); err != nil {
		t.Fatal(err)
	}
	want := "-ERR Protocol error: invalid bulk length: 1099511627776 bytes is over the limit of 536870912 bytes (max-bulk)\r\n"
	if line, err := huge.br.ReadString('\n'); err != nil || line != want {
		t.Fatalf("1 TiB header: got %q, %v", line, err)
	}
	expectClosed(t, huge, huge.br, 5*time.Second)
	var mid runtime.MemStats
	runtime.ReadMemStats(&mid)
	hugeAlloc := int64(mid.TotalAlloc - before.TotalAlloc)

	const atLimit = 8
	for i := 0; i < atLimit; i++ {
		c := dialRaw(t, d.Addr)
		if _, err := io.WriteString(c, "*3\r\n$3\r\nSET\r\n$15\r\nlimit-size:huge\r\n$536870912\r\nabc"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // the sessions read the headers and wait for the bytes
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	atLimitAlloc := int64(after.TotalAlloc - mid.TotalAlloc)
	heapDelta := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if hugeAlloc > 64<<20 || atLimitAlloc > 64<<20 || heapDelta > 256<<20 {
		t.Fatalf("allocated %s for a 1 TiB header, %s for %d headers of 512 MiB (heap %+d bytes)",
			mib(hugeAlloc), mib(atLimitAlloc), atLimit, heapDelta)
	}
	if got := other.do(t, "PING"); got != "+PONG\r\n" {
		t.Fatal(got)
	}
	t.Logf("FIGURES: max_bulk=1024 refused_and_closed_worst=%v alloc_for_1TiB_header=%s alloc_for_%d_headers_of_512MiB=%s heap_alloc_delta=%s",
		worst.Round(time.Microsecond), mib(hugeAlloc), atLimit, mib(atLimitAlloc), mib(heapDelta))
}

// TestLimitPipelineBackpressure: a client that writes 100,000 GETs without
// reading a reply makes the proxy stop reading from it once MaxPipeline
// commands are in flight and the socket buffers are full; the proxy's memory
// stays bounded, other clients are served, and when the client reads at last
// every reply comes, complete and in order.
func TestLimitPipelineBackpressure(t *testing.T) {
	obs := &limitObserver{}
	p := startProxy(t, shared, proxy.Config{Observer: obs, ClientWriteTimeout: 30 * time.Second}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	const nkeys, n, size = 997, 100_000, 256
	keys := make([]string, nkeys)
	replies := make([][]byte, nkeys)
	if _, err := c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i := range keys {
			keys[i] = fmt.Sprintf("limit-bp:%d", i)
			v := fmt.Sprintf("%04d", i) + strings.Repeat("x", size-4)
			replies[i] = resp.AppendBulkString(nil, v)
			pl.Set(ctx, keys[i], v, time.Minute)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var req []byte
	for j := 0; j < n; j++ {
		req = resp.AppendCommandStrings(req, "GET", keys[j%nkeys])
	}

	base := memStats()
	doneBefore := obs.done.Load()
	raw, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		for off := 0; off < len(req); {
			end := min(off+64<<10, len(req))
			_ = raw.SetWriteDeadline(time.Now().Add(60 * time.Second))
			k, err := raw.Write(req[off:end])
			written.Add(int64(k))
			off += k
			if err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()

	// Wait until the proxy answers nothing more for 500ms: it is holding
	// the client back.
	start := time.Now()
	last, since := int64(-1), time.Now()
	for {
		cur := obs.done.Load() - doneBefore
		if cur != last {
			last, since = cur, time.Now()
		} else if time.Since(since) > 500*time.Millisecond && cur > 0 {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the proxy did not stall: %d of %d commands answered", cur, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stalledAt, writtenAt := last, written.Load()
	if stalledAt >= n {
		t.Fatalf("every command answered (%d) with no reply read: no backpressure", stalledAt)
	}
	stalled := memStats()
	growth := int64(stalled.HeapInuse) - int64(base.HeapInuse)
	if growth > 128<<20 {
		t.Fatalf("heap in use grew by %s while the client did not read", mib(growth))
	}

	// Another client is served meanwhile.
	stop := make(chan struct{})
	time.AfterFunc(500*time.Millisecond, func() { close(stop) })
	worst, median := latencies(t, stop, 20*time.Millisecond, func() error {
		v, err := c.Get(ctx, keys[1]).Result()
		if err == nil && len(v) != size {
			err = fmt.Errorf("GET: %d bytes", len(v))
		}
		return err
	})
	// Its GETs share the node connection that carries the 64 MiB of big
	// replies, so on a loaded 2-core host they may wait behind some of
	// them (2.3 s seen); seconds more would mean the slow client holds
	// that connection.
	if worst > 3*time.Second {
		t.Fatalf("another client waited %v", worst)
	}

	// Now read everything: complete and in order.
	drain := time.Now()
	_ = raw.SetReadDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReaderSize(raw, 64<<10)
	got := make([]byte, len(replies[0]))
	for j := 0; j < n; j++ {
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("reply %d: %v", j, err)
		}
		if !bytes.Equal(got, replies[j%nkeys]) {
			t.Fatalf("reply %d: got %.20q, want %.20q", j, got, replies[j%nkeys])
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("client write: %v", err)
	}
	t.Logf("FIGURES: pipelined=%d reply_bytes=%s answered_when_stalled=%d request_bytes_accepted_when_stalled=%s/%s heap_inuse_growth_when_stalled=%s other_client_get_worst=%v median=%v drain=%v",
		n, mib(int64(n*len(replies[0]))), stalledAt, mib(writtenAt), mib(int64(len(req))), mib(growth),
		worst.Round(time.Microsecond), median.Round(time.Microsecond), time.Since(drain).Round(time.Millisecond))
}

// TestSlowReader: with ClientWriteTimeout (set by Reload), a client that
// asks for large values and never reads is disconnected in bounded time, and
// counted; other clients are served meanwhile. Turned off again, the timeout
// leaves no deadline behind on a client that wrote under it.
func TestSlowReader(t *testing.T) {
	obs := &limitObserver{}
	const timeout = time.Second
	p := startProxy(t, shared, proxy.Config{Observer: obs, ClientWriteTimeout: time.Hour}, router.Options{})
	if got := p.Server.Settings().ClientWriteTimeout; got != time.Hour {
		t.Fatalf("ClientWriteTimeout in force: %v", got)
	}
	p.Server.Reload(proxy.Settings{ClientWriteTimeout: timeout})
	if got := p.Server.Settings().ClientWriteTimeout; got != timeout {
		t.Fatalf("ClientWriteTimeout after Reload: %v", got)
	}
	ctx := context.Background()
	c := p.client(t, 2)
	big := strings.Repeat("b", 1<<20)
	if err := c.Set(ctx, "limit-slow:big", big, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "limit-slow:small", "s", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	kept := dialRaw(t, p.Addr)
	if got := kept.do(t, "GET", "limit-slow:small"); got != "$1\r\ns\r\n" { // written under the timeout
		t.Fatalf("GET: %q", got)
	}
	clients := p.Server.Clients()
	base := memStats()

	const gets = 64 // 64 MiB of replies: more than the socket buffers take
	raw, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var req []byte
	for i := 0; i < gets; i++ {
		req = resp.AppendCommandStrings(req, "GET", "limit-slow:big")
	}
	if _, err := raw.Write(req); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	waitFor(t, 5*time.Second, "the slow client to be counted", func() bool { return p.Server.Clients() == clients+1 })

	stop := make(chan struct{})
	var worst, median time.Duration
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		worst, median = latencies(t, stop, 20*time.Millisecond, func() error {
			return c.Get(ctx, "limit-slow:small").Err()
		})
	}()
	var peak int64
	deadline := time.Now().Add(20 * time.Second)
	for p.Server.Clients() > clients {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("slow client not disconnected %v after its requests", time.Since(sent))
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, int64(m.HeapInuse)-int64(base.HeapInuse))
		time.Sleep(20 * time.Millisecond)
	}
	gone := time.Since(sent)
	close(stop)
	wg.Wait()
	if n := obs.slow.Load(); n != 1 {
		t.Fatalf("slow clients counted: %d, want 1", n)
	}
	if gone < timeout {
		t.Fatalf("disconnected after %v, before the timeout", gone)
	}
	// Its GETs share the node connection that carries the 64 MiB of big
	// replies, so on a loaded 2-core host they may wait behind some of
	// them (2.3 s seen); seconds more would mean the slow client holds
	// that connection.
	if worst > 3*time.Second {
		t.Fatalf("another client waited %v", worst)
	}
	got := expectClosed(t, raw, raw, 10*time.Second)
	if got >= gets<<20 {
		t.Fatalf("the slow client got all %d bytes", got)
	}
	if err := c.Get(ctx, "limit-slow:small").Err(); err != nil {
		t.Fatal(err)
	}

	// Timeout off: the client that wrote under it may now stall longer.
	p.Server.Reload(proxy.Settings{})
	const keptGets, pause = 16, 5 * timeout / 2
	req = req[:0]
	for i := 0; i < keptGets; i++ {
		req = resp.AppendCommandStrings(req, "GET", "limit-slow:big")
	}
	if _, err := kept.Write(req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pause)
	_ = kept.SetDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < keptGets; i++ {
		if r := kept.reply(t); len(r) != len("$1048576\r\n")+len(big)+2 {
			t.Fatalf("reply %d after the timeout was turned off: %d bytes", i, len(r))
		}
	}
	if n := obs.slow.Load(); n != 1 {
		t.Fatalf("slow clients counted: %d, want 1", n)
	}
	t.Logf("FIGURES: client_write_timeout=%v requested=%dx1MiB disconnected_after=%v bytes_it_could_still_read=%s heap_inuse_growth_peak=%s other_client_get_worst=%v median=%v timeout_off_client_paused=%v_kept",
		timeout, gets, gone.Round(time.Millisecond), mib(got), mib(peak), worst.Round(time.Microsecond), median.Round(time.Microsecond), pause)
}

// TestSlowloris: clients that send a command one byte every 100-200ms do not
// delay other clients; with IdleTimeout, a client that sends nothing (or
// never completes a command) is closed after it.
func TestSlowloris(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const slow = 50
	conns := make([]*rawConn, slow)
	cmds := make([]string, slow)
	for i := range conns {
		conns[i] = dialRaw(t, p.Addr)
		cmds[i] = string(resp.AppendCommandStrings(nil, "SET", fmt.Sprintf("limit-slowloris:%d", i), "v"))
	}
	const trickle = 2 * time.Second
	var wg sync.WaitGroup
	sentBytes := make([]int, slow)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			end := time.Now().Add(trickle)
			for j := 0; j < len(cmds[i])-1 && time.Now().Before(end); j++ {
				if _, err := io.WriteString(conns[i], cmds[i][j:j+1]); err != nil {
					t.Errorf("slow client %d: %v", i, err)
					return
				}
				sentBytes[i] = j + 1
				time.Sleep(time.Duration(100+rand.IntN(100)) * time.Millisecond)
			}
		}()
	}
	stop := make(chan struct{})
	time.AfterFunc(trickle, func() { close(stop) })
	worst, median := latencies(t, stop, 10*time.Millisecond, func() error {
		return c.Set(ctx, "limit-slowloris:other", "v", time.Minute).Err()
	})
	wg.Wait()
	if worst > time.Second {
		t.Fatalf("a normal client waited %v beside %d slowloris clients", worst, slow)
	}
	// The slow commands complete when their last bytes come.
	for i, r := range conns {
		if _, err := io.WriteString(r, cmds[i][sentBytes[i]:]); err != nil {
			t.Fatal(err)
		}
		if got := r.reply(t); got != "+OK\r\n" {
			t.Fatalf("slow client %d: %q", i, got)
		}
	}

	// Idle timeout: a silent client and a trickling one are both closed.
	const idle = 500 * time.Millisecond
	q := startProxy(t, shared, proxy.Config{IdleTimeout: idle}, router.Options{})
	start := time.Now()
	silent := dialRaw(t, q.Addr)
	trickler := dialRaw(t, q.Addr)
	go func() {
		cmd := cmds[0]
		for j := 0; j < len(cmd)-1; j++ {
			if _, err := io.WriteString(trickler, cmd[j:j+1]); err != nil {
				return // closed by the proxy
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()
	expectClosed(t, silent, silent.br, 10*time.Second)
	silentClosed := time.Since(start)
	expectClosed(t, trickler, trickler.br, 10*time.Second)
	tricklerClosed := time.Since(start)
	if silentClosed < idle || tricklerClosed < idle {
		t.Fatalf("closed before the idle timeout: %v, %v", silentClosed, tricklerClosed)
	}
	if silentClosed > idle+5*time.Second || tricklerClosed > idle+5*time.Second {
		t.Fatalf("closed late: %v, %v", silentClosed, tricklerClosed)
	}
	t.Logf("FIGURES: slowloris_clients=%d byte_every=100-200ms normal_client_set_worst=%v median=%v idle_timeout=%v silent_closed_after=%v trickler_closed_after=%v",
		slow, worst.Round(time.Microsecond), median.Round(time.Microsecond), idle,
		silentClosed.Round(time.Millisecond), tricklerClosed.Round(time.Millisecond))
}

// TestFloodClients opens up to 10,000 client connections (fewer when the
// file descriptor limit does not allow twice as many, since the clients and
// the proxy share this process), each sending a PING; all are answered, a
// normal client is still served quickly, and the heap per connection is
// logged.
func TestFloodClients(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Logf("raising RLIMIT_NOFILE: %v", err)
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	open := 0
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		open = len(fds)
	}
	const want, margin = 10_000, 512
	n := min(want, (int(min(lim.Cur, 1<<30))-open-margin)/2)
	if n < 1000 {
		t.Fatalf("RLIMIT_NOFILE %d allows only %d connections", lim.Cur, n)
	}
	if n < want {
		t.Logf("RLIMIT_NOFILE is %d with %d files open: flooding with %d connections instead of %d", lim.Cur, open, n, want)
	}

	p := startProxy(t, shared, proxy.Config{MaxClients: n + 16}, router.Options{})
	ctx := context.Background()
	c := p.client(t, 2)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	base := memStats()
	conns := make([]net.Conn, n)
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close()
			}
		}
	}()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 7)
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				cn, err := net.DialTimeout("tcp", p.Addr, 10*time.Second)
				if err != nil {
					errs <- fmt.Errorf("dial %d: %w", i, err)
					return
				}
				conns[i] = cn
				_ = cn.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := cn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				if _, err := io.ReadFull(cn, buf); err != nil || string(buf) != "+PONG\r\n" {
					errs <- fmt.Errorf("client %d: %q %v", i, buf, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	connected := time.Since(start)
	if got := p.Server.Clients(); got < n {
		t.Fatalf("%d clients connected, want at least %d", got, n)
	}
	full := memStats()
	heapPer := (int64(full.HeapInuse) - int64(base.HeapInuse)) / int64(n)
	stackPer := (int64(full.StackInuse) - int64(base.StackInuse)) / int64(n)

	// A normal client is still served quickly.
	var worst time.Duration
	for i := 0; i < 20; i++ {
		s := time.Now()
		if err := c.Set(ctx, "limit-flood:k", "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(s))
	}
	if worst > time.Second {
		t.Fatalf("a normal client waited %v beside %d clients", worst, n)
	}

	s := time.Now()
	for i, cn := range conns {
		cn.Close()
		conns[i] = nil
	}
	waitFor(t, 30*time.Second, "every flood client to be gone", func() bool { return p.Server.Clients() <= 1 })
	closed := time.Since(s)
	t.Logf("FIGURES: connections=%d connect_and_ping_all=%v heap_inuse_per_connection=%dB stack_inuse_per_connection=%dB normal_client_set_worst=%v all_closed_in=%v",
		n, connected.Round(time.Millisecond), heapPer, stackPer, worst.Round(time.Microsecond), closed.Round(time.Millisecond))
}
