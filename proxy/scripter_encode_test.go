package proxy

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

type stringer struct{}

func (stringer) String() string { return "str" }

// TestEncodeArgs: each argument type is written as go-redis writes it, in
// a buffer allocated once.
func TestEncodeArgs(t *testing.T) {
	long := strings.Repeat("p", 2048)
	args := []interface{}{
		"evalsha", []byte("ab"), nil, 7, int8(-8), int16(16), int32(-32), int64(math.MinInt64),
		uint(1), uint8(8), uint16(16), uint32(32), uint64(math.MaxUint64),
		float32(1.5), 0.25, math.Inf(1), math.Inf(-1), true, false,
		time.Date(2026, 12, 2, 13, 0, 0, 5, time.UTC), 3 * time.Second, stringer{}, struct{ A int }{4}, long,
	}
	want := []string{
		"evalsha", "ab", "", "7", "-8", "16", "-32", "-9223372036854775808",
		"1", "8", "16", "32", "18446744073709551615",
		"1.5", "0.25", "+inf", "-inf", "1", "0",
		"2026-12-02T13:00:00.000000005Z", "3000000000", "str", "{4}", long,
	}
	var exp strings.Builder
	exp.WriteString("*24\r\n")
	for _, w := range want {
		exp.WriteString("$" + strconv.Itoa(len(w)) + "\r\n" + w + "\r\n")
	}
	got := encodeArgs(args)
	if string(got) != exp.String() {
		t.Fatalf("encodeArgs:\n got %.300q\nwant %.300q", got, exp.String())
	}
	call := []interface{}{"evalsha", "sha", 2, "k1", "k2", long, 42, int64(1 << 40), 1.5}
	if n := testing.AllocsPerRun(100, func() { encodeArgs(call) }); n != 1 {
		t.Errorf("encodeArgs made %v allocations, want 1 (its frame)", n)
	}
}
