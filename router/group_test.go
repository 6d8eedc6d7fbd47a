package router

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestGroupWakesOnceAllComplete(t *testing.T) {
	var g Group
	for round := 0; round < 3; round++ { // a Group is reusable
		g.Reset()
		reqs := make([]*Request, 5)
		for i := range reqs {
			reqs[i] = NewRequest()
			g.Add(reqs[i])
		}
		var completed atomic.Int32
		for i, req := range reqs {
			go func() {
				time.Sleep(time.Duration(len(reqs)-i) * time.Millisecond)
				completed.Add(1)
				req.complete([]byte(":1\r\n"), nil)
			}()
		}
		g.Wait()
		if n := completed.Load(); n != int32(len(reqs)) {
			t.Fatalf("round %d: Wait returned after %d of %d completions", round, n, len(reqs))
		}
		for i, req := range reqs {
			if req.state.Load() != reqDone {
				t.Fatalf("round %d: request %d not marked ended", round, i)
			}
			if string(req.Reply) != ":1\r\n" {
				t.Fatalf("round %d: request %d reply %q", round, i, req.Reply)
			}
		}
	}
}

func TestGroupEmptyAndSynchronous(t *testing.T) {
	var g Group
	g.Reset()
	done := make(chan struct{})
	go func() { g.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait on an empty group blocked")
	}
	// Requests completed before Wait (a route error completes at once).
	g.Reset()
	a, b := NewRequest(), NewRequest()
	g.Add(a)
	a.complete(nil, ErrNoRoute)
	g.Add(b)
	b.complete(nil, ErrNoRoute)
	done = make(chan struct{})
	go func() { g.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait blocked although every request had completed")
	}
}

// TestRequestWait: a waiter that comes after the reply does not sleep, one
// that comes before is woken, and no wake-up is left over for the next
// attempt.
func TestRequestWait(t *testing.T) {
	req := NewRequest()
	req.complete([]byte("+A\r\n"), nil)
	req.wait()
	if string(req.Reply) != "+A\r\n" {
		t.Fatalf("reply %q", req.Reply)
	}
	req.state.Store(reqPending) // the next attempt, as Router.Send does
	go func() {
		time.Sleep(20 * time.Millisecond)
		req.complete([]byte("+B\r\n"), nil)
	}()
	select {
	case <-func() chan struct{} {
		ch := make(chan struct{})
		go func() { req.wait(); close(ch) }()
		return ch
	}():
	case <-time.After(5 * time.Second):
		t.Fatal("a parked waiter was not woken")
	}
	if string(req.Reply) != "+B\r\n" {
		t.Fatalf("reply %q", req.Reply)
	}
	select {
	case <-req.done:
		t.Fatal("a wake-up was left over for the next attempt")
	default:
	}
}
