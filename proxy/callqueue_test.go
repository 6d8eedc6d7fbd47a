package proxy

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestCallQueue: calls come out in order and in batches; take returns false
// once closed and drained; a producer at the limit waits until the writer
// releases a call.
func TestCallQueue(t *testing.T) {
	q := newCallQueue()
	calls := make([]*call, 5)
	for i := range calls {
		calls[i] = newCall()
		q.put(calls[i])
	}
	batch, ok := q.take(nil)
	if !ok || len(batch) != 5 {
		t.Fatalf("take = %d calls, %v", len(batch), ok)
	}
	for i, c := range batch {
		if c != calls[i] {
			t.Fatalf("call %d out of order", i)
		}
	}

	// take waits for a put.
	got := make(chan []*call)
	go func() {
		b, _ := q.take(nil)
		got <- b
	}()
	time.Sleep(20 * time.Millisecond)
	q.put(calls[0])
	select {
	case b := <-got:
		if len(b) != 1 || b[0] != calls[0] {
			t.Fatalf("woken with %v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("take not woken by put")
	}

	// Backpressure.
	var queued atomic.Int32
	queued.Store(3)
	entered := make(chan struct{})
	go func() {
		q.waitRoom(&queued, 3)
		close(entered)
	}()
	select {
	case <-entered:
		t.Fatal("waitRoom returned at the limit")
	case <-time.After(50 * time.Millisecond):
	}
	queued.Add(-1)
	q.released()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("waitRoom not woken by released")
	}

	q.put(calls[1])
	q.close()
	if b, ok := q.take(nil); !ok || len(b) != 1 {
		t.Fatalf("after close, queued calls still come out: %d, %v", len(b), ok)
	}
	if _, ok := q.take(nil); ok {
		t.Fatal("take on a closed, empty queue reported more")
	}
}
