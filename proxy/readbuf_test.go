package proxy

import (
	"sync"
	"testing"
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
	s.answered = 5
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
