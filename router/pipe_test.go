package router

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// fakeServer is a scripted RESP server for testing a pipe's framing and
// ordering: it answers each command with its second argument as an integer,
// after calling hook (which may close the connection).
type fakeServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	hook  func(n int, c net.Conn) bool // false: stop answering
	seen  int
}

func newFakeServer(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(c)
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) serve(c net.Conn) {
	defer c.Close()
	rd := resp.NewReader(c, resp.Limits{})
	var out []byte
	for {
		cmd, err := rd.ReadCommand()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.seen++
		n := s.seen
		hook := s.hook
		s.mu.Unlock()
		if hook != nil && !hook(n, c) {
			return
		}
		if len(cmd.Args) < 2 {
			out = append(out, "+OK\r\n"...)
		} else {
			v, _ := strconv.Atoi(string(cmd.Args[1]))
			out = resp.AppendInt(out, int64(v))
		}
		if rd.Buffered() == 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

func testOptions() *Options {
	o := Options{Seeds: []string{"x"}, MaxInflight: 64, QueueSize: 128, RedialBackoff: 10 * time.Millisecond}.withDefaults()
	o.Logger = discardLogger()
	return &o
}

// awaitReq returns a channel closed once req's current attempt has ended.
func awaitReq(req *Request) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		req.wait()
		close(ch)
	}()
	return ch
}

func echoRequest(i int) *Request {
	req := NewRequest()
	req.Frame = resp.AppendCommandStrings(nil, "ECHOINT", strconv.Itoa(i))
	return req
}

// TestPipeFIFO pushes 16,384 requests from several goroutines through one
// pipe and checks every reply reaches its own request.
func TestPipeFIFO(t *testing.T) {
	s := newFakeServer(t)
	p := newPipe(s.ln.Addr().String(), resp.RESP2, testOptions())
	defer p.close()

	const total, senders = 16384, 8
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			// Each sender keeps a window of requests in flight, as a
			// pipelining client session does.
			type pending struct {
				req  *Request
				want int
			}
			var window []pending
			flush := func() error {
				for _, w := range window {
					w.req.wait()
					if w.req.Err != nil {
						return w.req.Err
					}
					if got, ok := resp.IntValue(w.req.Reply); !ok || got != int64(w.want) {
						return fmt.Errorf("request %d got reply %q", w.want, w.req.Reply)
					}
				}
				window = window[:0]
				return nil
			}
			for i := g; i < total; i += senders {
				req := echoRequest(i)
				p.send(req)
				window = append(window, pending{req, i})
				if len(window) == 32 {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.mu.Lock()
	seen := s.seen
	s.mu.Unlock()
	if seen != total {
		t.Fatalf("server saw %d commands, want %d", seen, total)
	}
}

// TestPipeKilledMidStream closes the server side after some commands: every
// pending request fails fast, those never written are marked so, and the
// pipe redials for the next request.
func TestPipeKilledMidStream(t *testing.T) {
	s := newFakeServer(t)
	var once sync.Once
	s.hook = func(n int, c net.Conn) bool {
		if n == 100 {
			once.Do(func() { c.Close() })
			return false
		}
		return true
	}
	p := newPipe(s.ln.Addr().String(), resp.RESP2, testOptions())
	defer p.close()

	reqs := make([]*Request, 500)
	for i := range reqs {
		reqs[i] = echoRequest(i)
		p.send(reqs[i])
	}
	start := time.Now()
	var ok, failed int
	for i, req := range reqs {
		select {
		case <-awaitReq(req):
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d still pending 5s after the connection died", i)
		}
		if req.Err == nil {
			if v, _ := resp.IntValue(req.Reply); v != int64(i) {
				t.Fatalf("request %d got %q", i, req.Reply)
			}
			ok++
			continue
		}
		failed++
		if !errors.Is(req.Err, ErrConnLost) && !errors.Is(req.Err, ErrUnavailable) {
			t.Fatalf("request %d: unexpected error %v", i, req.Err)
		}
		if errors.Is(req.Err, ErrConnLost) != req.written {
			t.Fatalf("request %d: error %v but written=%v", i, req.Err, req.written)
		}
	}
	if ok == 0 && failed == 0 || failed == 0 {
		t.Fatalf("ok=%d failed=%d: the kill should fail some requests", ok, failed)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("failing pending requests took %v", d)
	}
	// The pipe recovers: a new request redials and succeeds.
	s.mu.Lock()
	s.hook = nil
	s.mu.Unlock()
	deadline := time.Now().Add(3 * time.Second)
	for {
		req := echoRequest(7)
		p.send(req)
		req.wait()
		if req.Err == nil {
			if v, _ := resp.IntValue(req.Reply); v != 7 {
				t.Fatalf("after redial got %q", req.Reply)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipe did not recover: %v", req.Err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPipeSilentNodeTimesOut: a server that accepts but never answers makes
// the watchdog fail the request with ErrTimeout.
func TestPipeSilentNodeTimesOut(t *testing.T) {
	s := newFakeServer(t)
	s.hook = func(int, net.Conn) bool { select {} }
	opts := testOptions()
	opts.ReadTimeout = 200 * time.Millisecond
	p := newPipe(s.ln.Addr().String(), resp.RESP2, opts)
	defer p.close()
	req := echoRequest(1)
	p.send(req)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if w := p.cur.Load(); w != nil {
					w.check(20*time.Millisecond, opts.ReadTimeout)
				}
			}
		}
	}()
	select {
	case <-awaitReq(req):
	case <-time.After(3 * time.Second):
		t.Fatal("request to a silent node never failed")
	}
	if !errors.Is(req.Err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", req.Err)
	}
}

// TestPipeClose fails queued requests with ErrClosed and refuses new ones.
func TestPipeClose(t *testing.T) {
	p := newPipe("127.0.0.1:1", resp.RESP2, testOptions())
	p.close()
	req := echoRequest(1)
	p.send(req)
	req.wait()
	if !errors.Is(req.Err, ErrClosed) {
		t.Fatalf("got %v", req.Err)
	}
}

// BenchmarkPipe is one node connection driven by GOMAXPROCS senders, each
// waiting for its reply (latency bound); BenchmarkPipe/senders=64 by 64
// senders, so that requests batch as they do behind many client sessions.
func BenchmarkPipe(b *testing.B) {
	for _, senders := range []int{0, 64} {
		name := "senders=GOMAXPROCS"
		if senders > 0 {
			name = "senders=" + strconv.Itoa(senders)
		}
		b.Run(name, func(b *testing.B) { benchmarkPipe(b, senders) })
	}
}

func benchmarkPipe(b *testing.B, senders int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				rd := resp.NewReader(c, resp.Limits{})
				var out []byte
				for {
					if _, err := rd.ReadCommand(); err != nil {
						return
					}
					out = append(out, "+OK\r\n"...)
					if rd.Buffered() == 0 {
						c.Write(out)
						out = out[:0]
					}
				}
			}()
		}
	}()
	p := newPipe(ln.Addr().String(), resp.RESP2, testOptions())
	defer p.close()
	frame := resp.AppendCommandStrings(nil, "SET", "key", "value")
	b.ReportAllocs()
	if senders > 0 {
		b.SetParallelism((senders + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	}
	b.RunParallel(func(pb *testing.PB) {
		req := NewRequest()
		req.Frame = frame
		for pb.Next() {
			req.state.Store(reqPending) // a new attempt, as Router.Send does
			p.send(req)
			req.wait()
			if req.Err != nil || string(req.Reply) != "+OK\r\n" {
				b.Fatalf("reply %q, err %v", req.Reply, req.Err)
			}
		}
	})
}

// TestPipeBackpressureAndClose: against a node that never answers, sends
// beyond MaxInflight written and QueueSize queued block; closing the pipe
// then fails every request, the written, the queued and the blocked ones,
// with ErrClosed.
func TestPipeBackpressureAndClose(t *testing.T) {
	s := newFakeServer(t)
	s.hook = func(int, net.Conn) bool { select {} }
	opts := testOptions()
	opts.MaxInflight, opts.QueueSize = 2, 3
	p := newPipe(s.ln.Addr().String(), resp.RESP2, opts)
	const n = 20
	var returned sync.WaitGroup
	var sent atomic.Int32
	reqs := make([]*Request, n)
	for i := range reqs {
		reqs[i] = echoRequest(i)
		returned.Add(1)
		go func() {
			defer returned.Done()
			p.send(reqs[i])
			sent.Add(1)
		}()
	}
	// At least 2 written, 1 held by the writer waiting for room and 3
	// queued; at most the writer's batch (under 2×QueueSize) and 3 queued.
	deadline := time.Now().Add(2 * time.Second)
	for sent.Load() < 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got, most := sent.Load(), int32(2*opts.QueueSize-1+opts.QueueSize); got < 6 || got > most {
		t.Fatalf("%d sends returned, want 6 to %d (the rest held by backpressure)", got, most)
	}
	closed := make(chan struct{})
	go func() { p.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("close blocked on a silent node")
	}
	returned.Wait()
	for i, req := range reqs {
		select {
		case <-awaitReq(req):
		case <-time.After(3 * time.Second):
			t.Fatalf("request %d never completed", i)
		}
		if !errors.Is(req.Err, ErrClosed) {
			t.Errorf("request %d: %v, want ErrClosed", i, req.Err)
		}
	}
}
