package router

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
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
	for _, key := range []string{"user:{12345}:profile", "key:000000012345", "conversation:tenant-42:user-1234567:2026-12-01"} {
		b.Run(strconv.Itoa(len(key)), func(b *testing.B) {
			k := []byte(key)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = Slot(k)
			}
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestCRC16TwoBytesAtATime checks the two-bytes-per-step CRC against the
// plain byte-at-a-time definition on every length up to 64 and random bytes.
func TestCRC16TwoBytesAtATime(t *testing.T) {
	ref := func(b []byte) uint16 {
		var crc uint16
		for _, c := range b {
			crc = crc<<8 ^ crc16tab[byte(crc>>8)^c]
		}
		return crc
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 64; n++ {
		for range 50 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if got, want := crc16(b), ref(b); got != want {
				t.Fatalf("crc16(%x) = %#x, want %#x", b, got, want)
			}
		}
	}
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Fatalf("crc16(123456789) = %#x, want the XModem check value 0x31c3", got)
	}
}
