package wake

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaiterNoLostWakeUp: a producer that raises a counter and wakes, and a
// consumer that waits for each value, never deadlock however they
// interleave.
func TestWaiterNoLostWakeUp(t *testing.T) {
	w := New()
	var n atomic.Int64
	const total = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range total {
			n.Add(1)
			w.Wake()
		}
	}()
	done := make(chan struct{})
	go func() {
		for want := int64(1); want <= total; want++ {
			w.WaitUntil(func() bool { return n.Load() >= want })
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("consumer stuck at %d of %d", n.Load(), total)
	}
	wg.Wait()
}

func TestWakeWithoutSleeperLeavesNothing(t *testing.T) {
	w := New()
	w.Wake()
	select {
	case <-w.C():
		t.Fatal("a wake-up with nobody announced was kept")
	default:
	}
	w.Want()
	w.Wake()
	select {
	case <-w.C():
	default:
		t.Fatal("an announced sleeper got no wake-up")
	}
}
