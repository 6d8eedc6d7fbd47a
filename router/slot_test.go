package router

import (
	"io"
	"log/slog"
	"testing"
)

func TestSlot(t *testing.T) {
	// Reference values from Redis 7.0 CLUSTER KEYSLOT.
	cases := map[string]int{
		"":              0,
		"foo":           12182,
		"bar":           5061,
		"123456789":     12739,
		"{user1000}.a":  3443,
		"{user1000}.b":  3443,
		"user1000":      3443,
		"foo{}{bar}":    8363, // empty first tag: whole key hashed
		"foo{{bar}}zap": 4015, // tag is "{bar"
		"foo{bar}{zap}": 5061, // first tag only
		"{":             4092,
		"}{":            12793,
	}
	for k, want := range cases {
		if got := Slot([]byte(k)); got != want {
			t.Errorf("Slot(%q) = %d, want %d", k, got, want)
		}
	}
}

func BenchmarkSlot(b *testing.B) {
	key := []byte("user:{12345}:profile")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = Slot(key)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
