package proxy

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestReadBuffers: a retired buffer is lent again only once the commands
// read before it was retired are answered, by the writer or by the reader,
// and never during a transaction or a subscription; buffers of another size
// are not kept.
func TestReadBuffers(t *testing.T) {
	s := &session{}
	b := &readBuffers{s: s, pool: &sync.Pool{}, size: 64}
	buf := make([]byte, 64)

	s.dispatched = 5
	b.Retire(buf)
	if got := b.Buffer(64); got != nil {
		t.Fatal("lent a buffer whose commands were not answered")
	}
	s.finished.Store(4)
	if got := b.Buffer(64); got != nil {
		t.Fatal("lent a buffer while its last command is not answered")
	}
	s.tx = &tx{}
	s.finished.Store(5) // answered by the reader itself
	if got := b.Buffer(64); got != nil {
		t.Fatal("lent a buffer during a transaction")
	}
	s.tx = nil
	if got := b.Buffer(64); &got[0] != &buf[0] {
		t.Fatal("did not lend the retired buffer once its commands were answered")
	}
	if b.retired != nil {
		t.Fatal("kept a buffer it lent")
	}

	b.Retire(make([]byte, 128))
	if b.retired != nil {
		t.Fatal("kept a buffer of another size")
	}
	if got := b.Buffer(128); got != nil {
		t.Fatal("lent a buffer of another size")
	}

	s.dispatched = 9
	b.Retire(buf)
	s.finished.Store(9)
	s.subs = &subs{}
	b.release()
	if b.retired == nil {
		t.Fatal("gave away a buffer while subscribed")
	}
	s.subs = nil
	b.release()
	if b.retired != nil {
		t.Fatal("kept a free buffer instead of giving it to the pool")
	}
}

// TestIdleConnReadIdle: with data waiting ReadIdle reads into the buffer
// given; with none it parks (gives the buffer up), waits, and reads into
// the buffer unpark returns; a deadline or the peer leaving ends the wait.
func TestIdleConnReadIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ic, ok := newIdleConn(server).(*idleConn)
	if !ok {
		t.Fatal("a TCP connection is not read as an idleConn")
	}
	var parks, unparks int
	fresh := make([]byte, 64)
	park := func() { parks++ }
	unpark := func() []byte { unparks++; return fresh }

	// Data waiting: read into p, no park.
	if _, err := client.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	p := make([]byte, 64)
	n, err := ic.ReadIdle(p, park, unpark)
	if err != nil || string(p[:n]) != "PING\r\n" || parks != 0 || unparks != 0 {
		t.Fatalf("with data waiting: %q, %v, parks %d, unparks %d", p[:n], err, parks, unparks)
	}

	// Nothing waiting: park, then the data lands in the buffer unpark gave.
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = client.Write([]byte("ECHO x\r\n"))
	}()
	n, err = ic.ReadIdle(p, park, unpark)
	if err != nil || string(fresh[:n]) != "ECHO x\r\n" || parks != 1 || unparks != 1 {
		t.Fatalf("after waiting: %q, %v, parks %d, unparks %d", fresh[:n], err, parks, unparks)
	}

	// A deadline while parked: a timeout, and no buffer taken.
	_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = ic.ReadIdle(p, park, unpark)
	if !isTimeout(err) || parks != 2 || unparks != 1 {
		t.Fatalf("deadline: %v, parks %d, unparks %d", err, parks, unparks)
	}
	_ = server.SetReadDeadline(time.Time{})

	// The peer leaves: end of stream.
	client.Close()
	if _, err = ic.ReadIdle(p, park, unpark); err != io.EOF {
		t.Fatalf("after the peer closed: %v, want EOF", err)
	}
}
