package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/contextstore"
	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/clusterproxy/clusterproxy/metrics"
	"github.com/clusterproxy/clusterproxy/proxy"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// ctxMsg is a CTX.WINDOW / CTX.POP message in the client's shape: a flat
// array in RESP2, a map in RESP3.
func ctxMsg(proto int, seq int64, id any, role, content string, tokens int64, meta any) any {
	if proto == 3 {
		return map[interface{}]interface{}{"seq": seq, "id": id, "role": role, "content": content, "tokens": tokens, "meta": meta}
	}
	return []interface{}{"seq", seq, "id", id, "role", role, "content", content, "tokens", tokens, "meta", meta}
}

func ctxAppendReply(proto int, length, tokens, trimmed, dup int64) any {
	if proto == 3 {
		return map[interface{}]interface{}{"length": length, "tokens": tokens, "trimmed": trimmed, "duplicate": dup}
	}
	return []interface{}{length, tokens, trimmed, dup}
}

func TestContextCommands(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, shared, proxy.Config{Observer: m}, router.Options{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", proto), func(t *testing.T) {
			c := p.client(t, proto)
			tenant, sess := "ctxcmd", fmt.Sprintf("s%d-%d", proto, time.Now().UnixNano())
			do := func(want any, args ...any) {
				t.Helper()
				got, err := c.Do(ctx, args...).Result()
				if err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%v:\n got %#v\nwant %#v", args, got, want)
				}
			}
			do("OK", "ctx.pin", tenant, sess, "Be brief.", 3)
			do(ctxAppendReply(proto, 1, 2, 0, 0), "CTX.APPEND", tenant, sess, "user", "hello", 2, "ID", "r1:u", "META", `{"a":1}`)
			do(ctxAppendReply(proto, 1, 2, 0, 1), "ctx.append", tenant, sess, "USER", "hello", 2, "id", "r1:u")
			do(ctxAppendReply(proto, 2, 6, 0, 0), "ctx.append", tenant, sess, "assistant", "hi, how can I help?", 4, "TTL", 600)
			do(ctxAppendReply(proto, 3, 7, 0, 0), "ctx.append", tenant, sess, "tool", "", 1)
			do(int64(3), "ctx.len", tenant, sess)
			pin := ctxMsg(proto, 0, nil, "system", "Be brief.", 3, nil)
			m1 := ctxMsg(proto, 1, "r1:u", "user", "hello", 2, `{"a":1}`)
			m2 := ctxMsg(proto, 2, nil, "assistant", "hi, how can I help?", 4, nil)
			m3 := ctxMsg(proto, 3, nil, "tool", "", 1, nil)
			do([]interface{}{pin, m1, m2, m3}, "ctx.window", tenant, sess)
			do([]interface{}{pin, m2, m3}, "ctx.window", tenant, sess, "budget", 8)
			do([]interface{}{pin, m3}, "ctx.window", tenant, sess, "LAST", 1, "BUDGET", 100)
			do([]interface{}{pin}, "ctx.window", tenant, sess, "BUDGET", 3)
			err := c.Do(ctx, "ctx.window", tenant, sess, "BUDGET", 2).Err()
			if err == nil || err.Error() != "ERR the pinned prompt alone exceeds the budget: it needs 3 tokens, the budget is 2" {
				t.Fatalf("over budget: %v", err)
			}
			// Caps trim the oldest, never the pinned prompt.
			do(ctxAppendReply(proto, 2, 6, 2, 0), "ctx.append", tenant, sess, "user", "next", 5, "MAXMSGS", 2)
			do(ctxAppendReply(proto, 1, 5, 2, 0), "ctx.append", tenant, sess, "assistant", "ok", 5, "MAXTOKENS", 9)
			m5 := ctxMsg(proto, 5, nil, "assistant", "ok", 5, nil)
			do([]interface{}{pin, m5}, "ctx.window", tenant, sess)
			// Pop, then an empty pop.
			do(m5, "ctx.pop", tenant, sess)
			if err := c.Do(ctx, "ctx.pop", tenant, sess).Err(); err != redis.Nil {
				t.Fatalf("empty pop: %v", err)
			}
			do([]interface{}{pin}, "ctx.window", tenant, sess)
			do("OK", "ctx.pin", tenant, sess, "", 0)
			do([]interface{}{}, "ctx.window", tenant, sess)
			do(int64(1), "ctx.clear", tenant, sess)
			do(int64(0), "ctx.clear", tenant, sess)
			do(int64(0), "ctx.len", tenant, sess)
		})
	}
	for event, want := range map[string]float64{"append": 10, "duplicate": 2, "trim": 4, "window": 14, "pop": 4, "pin": 4, "clear": 4, "len": 4, "error": 2} {
		got := metricValue(t, reg, "clusterproxy_gateway_events_total", map[string]string{"family": "context", "event": event})
		if got != want {
			t.Errorf("event %s: %v, want %v", event, got, want)
		}
	}
}

func TestContextCommandErrors(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{Context: proxy.ContextConfig{Options: contextstore.Options{
		MaxContentBytes: 100, MaxMessages: 50, MaxTTL: time.Hour}}}, router.Options{})
	ctx := context.Background()
	cc := testcluster.NewClusterClient(t, shared)
	st, err := contextstore.New(cc, contextstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := st.Session("ctxerr", "wrongtype")
	if err := cc.Set(ctx, wrong.Keys()[2], "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 101)
	cases := []struct {
		args []any
		want string
	}{
		{[]any{"ctx.append", "ctxerr", "s", "user", "c"}, "ERR wrong number of arguments for 'ctx.append' command"},
		{[]any{"ctx.len", "ctxerr"}, "ERR wrong number of arguments for 'ctx.len' command"},
		{[]any{"ctx.len", "ctxerr", "s", "extra"}, "ERR wrong number of arguments for 'ctx.len' command"},
		{[]any{"ctx.append", "ctxerr", "s", "bot", "c", 1}, `ERR role "bot" is not one of system, user, assistant, tool`},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", "1.5"}, "ERR tokens must be an integer, got '1.5'"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", "abc"}, "ERR tokens must be an integer, got 'abc'"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", "99999999999999999999"}, "ERR tokens must be an integer, got '99999999999999999999'"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", -1}, "ERR tokens must not be negative, got -1"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1 << 41}, "ERR message needs 2199023255552 tokens, more than the token cap 1000000"},
		{[]any{"ctx.append", "ctxerr", "s", "user", long, 1}, "ERR message content is 101 bytes, more than the limit 100"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "FOO", 1}, "ERR unknown option 'FOO' (allowed: ID, META, MAXMSGS, MAXTOKENS, TTL)"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "ID"}, "ERR option ID needs a value"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "ID", "a", "id", "b"}, "ERR option ID given twice"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "ID", ""}, "ERR ID is empty"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "ID", strings.Repeat("i", 129)}, "ERR message id is 129 bytes, longer than 128"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "META", "{bad"}, "ERR metadata is not valid JSON"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "MAXMSGS", 0}, "ERR MAXMSGS must be a positive integer, got '0'"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "MAXMSGS", 51}, "ERR message cap 51 is out of range [1, 50]"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "MAXTOKENS", "x"}, "ERR MAXTOKENS must be a positive integer, got 'x'"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 5, "MAXTOKENS", 4}, "ERR message needs 5 tokens, more than the token cap 4"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "TTL", -3}, "ERR TTL must be a positive integer, got '-3'"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "TTL", 3601}, "ERR TTL 3601 is out of range [1, 3600] seconds"},
		{[]any{"ctx.append", "ctxerr", "s", "user", "c", 1, "TTL", int64(1) << 62}, "ERR TTL 4611686018427387904 is out of range [1, 3600] seconds"},
		{[]any{"ctx.append", "", "s", "user", "c", 1}, "ERR tenant id is empty"},
		{[]any{"ctx.append", "ctxerr", "", "user", "c", 1}, "ERR session id is empty"},
		{[]any{"ctx.window", "ctx{err}", "s"}, `ERR tenant id "ctx{err}" contains a brace`},
		{[]any{"ctx.len", "ctxerr", strings.Repeat("s", 257)}, "ERR session id is 257 bytes, longer than 256"},
		{[]any{"ctx.window", "ctxerr", "s", "BUDGET", -1}, "ERR BUDGET must be a positive integer, got '-1'"},
		{[]any{"ctx.window", "ctxerr", "s", "LAST", "many"}, "ERR LAST must be a positive integer, got 'many'"},
		{[]any{"ctx.window", "ctxerr", "s", "TTL", 5}, "ERR unknown option 'TTL' (allowed: BUDGET, LAST)"},
		{[]any{"ctx.pin", "ctxerr", "s", "p"}, "ERR wrong number of arguments for 'ctx.pin' command"},
		{[]any{"ctx.pin", "ctxerr", "s", "p", "x"}, "ERR tokens must be an integer, got 'x'"},
		{[]any{"ctx.pin", "ctxerr", "s", "", 3}, "ERR empty pinned prompt (which removes the pin) with non-zero tokens"},
		{[]any{"ctx.pin", "ctxerr", "s", "p", 1, "LAST", 1}, "ERR unknown option 'LAST' (allowed: TTL)"},
		{[]any{"ctx.append", "ctxerr", "wrongtype", "user", "c", 1}, "WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]any{"ctx.window", "ctxerr", "wrongtype"}, "WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]any{"ctx.len", "ctxerr", "wrongtype"}, "WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]any{"ctx.pop", "ctxerr", "wrongtype"}, "WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]any{"ctx.pin", "ctxerr", "wrongtype", "p", 1}, "WRONGTYPE Operation against a key holding the wrong kind of value"},
	}
	for _, proto := range []int{2, 3} {
		c := p.client(t, proto)
		for _, tc := range cases {
			err := c.Do(ctx, tc.args...).Err()
			var re redis.Error
			if !errors.As(err, &re) || err.Error() != tc.want {
				t.Errorf("RESP%d %v:\n got %v\nwant %s", proto, tc.args, err, tc.want)
			}
		}
		// The connection is still usable, and nothing was written.
		if n, err := c.Do(ctx, "ctx.len", "ctxerr", "s").Int64(); err != nil || n != 0 {
			t.Fatalf("RESP%d: len after errors: %v %v", proto, n, err)
		}
	}
	if got, _ := cc.Get(ctx, wrong.Keys()[2]).Result(); got != "x" {
		t.Fatalf("wrong-type key changed: %q", got)
	}
	// A bad configuration fails New.
	rt, err := router.New(router.Options{Seeds: shared.Addrs()[:1], Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := rt.Client()
	if err != nil {
		t.Fatal(err)
	}
	table, err := command.Load(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	_, err = proxy.New(proxy.Config{Logger: quietLogger(), Context: proxy.ContextConfig{Options: contextstore.Options{MaxMessages: -1}}}, rt, table)
	if !errors.Is(err, contextstore.ErrInvalid) {
		t.Fatalf("bad config: %v", err)
	}
}

// The contextstore package works unchanged on a plain client of the proxy
// (EVALSHA/EVALSHA_RO through it) and on the proxy's own scripter, and
// sees what the commands wrote.
func TestContextStoreThroughProxy(t *testing.T) {
	p := startProxy(t, shared, proxy.Config{}, router.Options{})
	ctx := context.Background()
	sess := fmt.Sprintf("s%d", time.Now().UnixNano())
	for i, sc := range []redis.Scripter{p.client(t, 2), p.client(t, 3), p.Server.Scripter()} {
		st, err := contextstore.New(sc, contextstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		se, err := st.Session("ctxgo", sess)
		if err != nil {
			t.Fatal(err)
		}
		r, err := se.Append(ctx, contextstore.Message{Role: contextstore.User, Content: fmt.Sprint("m", i), Tokens: 10}, contextstore.AppendOptions{})
		if err != nil || r.Len != int64(i+1) {
			t.Fatalf("scripter %d: append %+v %v", i, r, err)
		}
		w, err := se.Window(ctx, contextstore.WindowOptions{Budget: 15})
		if err != nil || len(w.Messages) != 1 || w.Messages[0].Content != fmt.Sprint("m", i) {
			t.Fatalf("scripter %d: window %+v %v", i, w, err)
		}
	}
	n, err := p.client(t, 2).Do(ctx, "ctx.len", "ctxgo", sess).Int64()
	if err != nil || n != 3 {
		t.Fatalf("ctx.len = %d, %v", n, err)
	}
}
