package proxy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// TestSlowlogRing: the log keeps the newest maxLen entries across wrap-
// arounds and length changes, and each keeps its own arguments although
// slots reuse their buffers.
func TestSlowlogRing(t *testing.T) {
	var l slowlog
	l.set(time.Millisecond, 3)
	sess := &session{addr: "127.0.0.1:1"}
	rec := func(i int) {
		c := newCall()
		c.name = "set"
		c.raw = resp.AppendCommandStrings(nil, "SET", fmt.Sprintf("key%d", i), fmt.Sprintf("value-%d", i))
		c.start = time.Now().Add(-time.Second)
		l.record(sess, c, time.Now())
	}
	check := func(wantIDs ...int) {
		t.Helper()
		l.mu.Lock()
		defer l.mu.Unlock()
		var ids []int
		for i := range len(l.entries) {
			e := l.at(i)
			ids = append(ids, int(e.id))
			args := string(e.buf)
			want := fmt.Sprintf("SETkey%dvalue-%d", e.id, e.id)
			if args != want || len(e.ends) != 3 || e.argc != 3 {
				t.Errorf("entry %d: args %q (%d ends, argc %d), want %q", e.id, args, len(e.ends), e.argc, want)
			}
		}
		if !slices.Equal(ids, wantIDs) {
			t.Fatalf("ids newest first = %v, want %v", ids, wantIDs)
		}
	}
	for i := range 10 {
		rec(i)
	}
	check(9, 8, 7)
	l.set(time.Millisecond, 2)
	check(9, 8)
	l.set(time.Millisecond, 4)
	rec(10)
	rec(11)
	check(11, 10, 9, 8)
	rec(12)
	check(12, 11, 10, 9)
}

func TestAppendSlowArgsTruncates(t *testing.T) {
	args := []string{"MSET"}
	for i := range 40 {
		args = append(args, fmt.Sprintf("k%d", i))
	}
	args[1] = string(make([]byte, 200))
	buf, ends, argc := appendSlowArgs(nil, nil, resp.AppendCommandStrings(nil, args...), "mset")
	if argc != 41 || len(ends) != slowlogMaxArgs {
		t.Fatalf("argc %d, %d kept; want 41, %d", argc, len(ends), slowlogMaxArgs)
	}
	first := string(buf[ends[0]:ends[1]])
	if want := string(make([]byte, 128)) + "... (72 more bytes)"; first != want {
		t.Errorf("long argument kept as %q", first)
	}
	if last := string(buf[ends[len(ends)-2]:ends[len(ends)-1]]); last != "... (10 more arguments)" {
		t.Errorf("last kept argument %q", last)
	}
	buf, ends, _ = appendSlowArgs(nil, nil, resp.AppendCommandStrings(nil, "AUTH", "user", "secret"), "auth")
	if string(buf) != "AUTH(redacted)(redacted)" || len(ends) != 3 {
		t.Errorf("AUTH logged as %q", buf)
	}
	// Not a well-formed command: the name, or the arguments read before the
	// damage; never a read past the end.
	for _, tc := range []struct{ raw, want string }{
		{"", "get"}, {"PING\r\n", "get"}, {"*-1\r\n", "get"}, {"*x\r\n", "get"},
		{"*2\r\n$3\r\nGET\r\n$9\r\nshort\r\n", "GET"},
		{"*2\r\n$3\r\nGET\r\n$-5\r\n", "GET"},
		{"*3\r\n$3\r\nGET\r\n", "GET"},
	} {
		buf, _, _ := appendSlowArgs(nil, nil, []byte(tc.raw), "get")
		if string(buf) != tc.want {
			t.Errorf("appendSlowArgs(%q) kept %q, want %q", tc.raw, buf, tc.want)
		}
	}
}
