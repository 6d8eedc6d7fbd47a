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
			select {
			case <-req.Done():
			default:
				t.Fatalf("round %d: request %d has no completion token", round, i)
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
