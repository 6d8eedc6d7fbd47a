package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/cache"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/redis/go-redis/v9"
)

func newCache(t *testing.T, cfg cache.Config) (*cache.Cache, *redis.ClusterClient) {
	t.Helper()
	cc := testcluster.NewClusterClient(t, cluster)
	c, err := cache.New(cc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, cc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testKey(t *testing.T, ns, body string) string {
	t.Helper()
	return mustKey(t, ns, "/v1/chat/completions", "m", "", body)
}

func miss(t *testing.T, c *cache.Cache, key string) string {
	t.Helper()
	r, err := c.Get(ctxT(t), key)
	if err != nil || r.Status != cache.Miss || len(r.Token) != 32 {
		t.Fatalf("Get: %+v, %v; want MISS with a token", r, err)
	}
	return r.Token
}

func TestSingleFlight(t *testing.T) {
	c, _ := newCache(t, cache.Config{})
	ctx := ctxT(t)
	key := testKey(t, "sf", `{"q":1}`)
	const n = 50
	results := make([]cache.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = c.Get(ctx, key)
		}()
	}
	close(start)
	wg.Wait()
	var tokens []string
	waits := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("get %d: %v", i, errs[i])
		}
		switch r.Status {
		case cache.Miss:
			tokens = append(tokens, r.Token)
		case cache.Wait:
			waits++
			if r.LeaseLeft <= 0 || r.LeaseLeft > cache.DefaultFillLease {
				t.Errorf("WAIT lease left %v, want in (0, 30s]", r.LeaseLeft)
			}
		default:
			t.Errorf("get %d: %v", i, r.Status)
		}
	}
	if len(tokens) != 1 || waits != n-1 {
		t.Fatalf("%d fill tokens and %d waits, want 1 and %d", len(tokens), waits, n-1)
	}
	if err := c.Set(ctx, key, tokens[0], []byte("answer"), 0); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, key)
	if err != nil || r.Status != cache.Hit || string(r.Value) != "answer" || r.Streamed {
		t.Fatalf("after set: %+v, %v", r, err)
	}
	st, err := c.Stats(ctx, "sf")
	if err != nil {
		t.Fatal(err)
	}
	if st != (cache.Stats{Hit: 1, Miss: 1, Wait: n - 1, Fill: 1}) {
		t.Errorf("stats %+v", st)
	}
}

func TestWaitersGetFill(t *testing.T) {
	c, _ := newCache(t, cache.Config{})
	ctx := ctxT(t)
	key := testKey(t, "waiters", `{"q":1}`)
	tok := miss(t, c, key)
	const n = 10
	results := make([]cache.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = c.GetWait(ctx, key, 20*time.Second)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	value := []byte("binary\r\n\x00value")
	if err := c.Set(ctx, key, tok, value, time.Minute); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, r := range results {
		if errs[i] != nil || r.Status != cache.Hit || !bytes.Equal(r.Value, value) {
			t.Errorf("waiter %d: %+v, %v; want HIT", i, r, errs[i])
		}
	}
	// A short wait that passes answers WAIT.
	key2 := testKey(t, "waiters", `{"q":2}`)
	miss(t, c, key2)
	begin := time.Now()
	r, err := c.GetWait(ctx, key2, 200*time.Millisecond)
	if err != nil || r.Status != cache.Wait || time.Since(begin) < 200*time.Millisecond {
		t.Errorf("short wait: %+v, %v after %v; want WAIT after 200ms", r, err, time.Since(begin))
	}
	// A context that ends first ends the wait with its error.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.GetWait(cctx, key2, 10*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled wait: %v, want deadline exceeded", err)
	}
	if _, err := c.GetWait(ctx, key2, -time.Second); !errors.Is(err, cache.ErrBadArgument) {
		t.Errorf("negative wait: %v", err)
	}
}

// When the lease ends unfilled, exactly one waiter gets a fresh token; its
// fill reaches the others.
func TestLeaseEndsOneWaiterFills(t *testing.T) {
	c, _ := newCache(t, cache.Config{FillLease: 500 * time.Millisecond})
	ctx := ctxT(t)
	key := testKey(t, "lease", `{"q":1}`)
	old := miss(t, c, key) // never filled
	const n = 10
	results := make([]cache.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.GetWait(ctx, key, 20*time.Second)
			if err == nil && r.Status == cache.Miss {
				err = c.Set(ctx, key, r.Token, []byte("second"), time.Minute)
			}
			results[i], errs[i] = r, err
		}()
	}
	wg.Wait()
	misses := 0
	for i, r := range results {
		switch {
		case errs[i] != nil:
			t.Errorf("waiter %d: %v", i, errs[i])
		case r.Status == cache.Miss:
			misses++
			if r.Token == old {
				t.Error("the fresh token is the old one")
			}
		case r.Status != cache.Hit || string(r.Value) != "second":
			t.Errorf("waiter %d: %+v", i, r)
		}
	}
	if misses != 1 {
		t.Errorf("%d waiters got a fresh token, want 1", misses)
	}
	if err := c.Set(ctx, key, old, []byte("late"), time.Minute); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("set with the expired token: %v, want ErrStaleToken", err)
	}
}

func TestStaleToken(t *testing.T) {
	c, _ := newCache(t, cache.Config{})
	ctx := ctxT(t)
	key := testKey(t, "stale", `{"q":1}`)
	tok := miss(t, c, key)
	other := strings.Repeat("0", 32)
	if err := c.Set(ctx, key, other, []byte("x"), 0); !errors.Is(err, cache.ErrStaleToken) ||
		!strings.Contains(err.Error(), "cache: set: fill token is stale") {
		t.Errorf("set with a foreign token: %v", err)
	}
	if _, err := c.Append(ctx, key, other, []byte("x")); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("append with a foreign token: %v", err)
	}
	if _, err := c.Commit(ctx, key, other, 0); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("commit with a foreign token: %v", err)
	}
	if err := c.Abort(ctx, key, other); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("abort with a foreign token: %v", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("G", 32), strings.Repeat("A", 32)} {
		if err := c.Set(ctx, key, bad, []byte("x"), 0); !errors.Is(err, cache.ErrBadToken) {
			t.Errorf("set with token %q: %v, want ErrBadToken", bad, err)
		}
	}
	if err := c.Set(ctx, key, tok, []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	// The token is spent once used.
	if err := c.Set(ctx, key, tok, []byte("v2"), 0); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("second set: %v", err)
	}
	// Del ends a fill in progress: its token goes stale.
	key2 := testKey(t, "stale", `{"q":2}`)
	tok2 := miss(t, c, key2)
	if _, err := c.Append(ctx, key2, tok2, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if had, err := c.Del(ctx, key2); err != nil || had {
		t.Errorf("del of a fill in progress: %v, %v; want false", had, err)
	}
	if _, err := c.Commit(ctx, key2, tok2, 0); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("commit after del: %v", err)
	}
	if had, err := c.Del(ctx, key); err != nil || !had {
		t.Errorf("del: %v, %v; want true", had, err)
	}
	miss(t, c, key)
}

func TestStream(t *testing.T) {
	c, cc := newCache(t, cache.Config{})
	ctx := ctxT(t)
	key := testKey(t, "stream", `{"q":1}`)
	tok := miss(t, c, key)
	chunks := [][]byte{[]byte("Hel"), []byte("lo\r\n"), {}, []byte("\x00wor"), []byte("ld")}
	for i, ch := range chunks {
		n, err := c.Append(ctx, key, tok, ch)
		if err != nil || n != i+1 {
			t.Fatalf("append %d: %d, %v", i, n, err)
		}
		// never visible before the commit
		if r, err := c.Get(ctx, key); err != nil || r.Status != cache.Wait {
			t.Fatalf("get during the stream: %+v, %v", r, err)
		}
	}
	if n, err := c.Commit(ctx, key, tok, time.Minute); err != nil || n != len(chunks) {
		t.Fatalf("commit: %d, %v", n, err)
	}
	r, err := c.Get(ctx, key)
	if err != nil || r.Status != cache.Hit || !r.Streamed || len(r.Chunks) != len(chunks) {
		t.Fatalf("get: %+v, %v", r, err)
	}
	for i := range chunks {
		if !bytes.Equal(r.Chunks[i], chunks[i]) {
			t.Errorf("chunk %d: %q, want %q", i, r.Chunks[i], chunks[i])
		}
	}
	if ttl := cc.PTTL(ctx, key).Val(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("entry TTL %v, want about 1m", ttl)
	}
	if n := cc.Exists(ctx, key+":lock", key+":part").Val(); n != 0 {
		t.Errorf("%d lease/part keys left after commit", n)
	}

	// Aborted midway: never visible, and the next Get may fill anew.
	key2 := testKey(t, "stream", `{"q":2}`)
	tok2 := miss(t, c, key2)
	for _, ch := range []string{"par", "tial"} {
		if _, err := c.Append(ctx, key2, tok2, []byte(ch)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Abort(ctx, key2, tok2); err != nil {
		t.Fatal(err)
	}
	if n := cc.Exists(ctx, key2, key2+":lock", key2+":part").Val(); n != 0 {
		t.Errorf("%d keys left after abort", n)
	}
	tok3 := miss(t, c, key2)
	if _, err := c.Append(ctx, key2, tok2, []byte("x")); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("append with the aborted token: %v", err)
	}
	// The new fill does not inherit the aborted chunks.
	if _, err := c.Append(ctx, key2, tok3, []byte("whole")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, key2, tok3, 0); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Get(ctx, key2); err != nil || len(r.Chunks) != 1 || string(r.Chunks[0]) != "whole" {
		t.Errorf("after refill: %+v, %v", r, err)
	}

	// A lease that ends mid-stream drops it: the part is never published.
	c2, _ := newCache(t, cache.Config{FillLease: 300 * time.Millisecond})
	key3 := testKey(t, "stream", `{"q":3}`)
	tok4 := miss(t, c2, key3)
	if _, err := c2.Append(ctx, key3, tok4, []byte("slow")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	tok5 := miss(t, c2, key3)
	if _, err := c2.Commit(ctx, key3, tok4, 0); !errors.Is(err, cache.ErrStaleToken) {
		t.Errorf("commit after the lease: %v", err)
	}
	if n, err := c2.Commit(ctx, key3, tok5, 0); err != nil || n != 0 {
		t.Errorf("empty commit: %d, %v", n, err)
	}
	if r, err := c2.Get(ctx, key3); err != nil || !r.Streamed || len(r.Chunks) != 0 {
		t.Errorf("empty stream: %+v, %v", r, err)
	}
	// A waiter sees an abort at once: it gets the token.
	key4 := testKey(t, "stream", `{"q":4}`)
	tok6 := miss(t, c, key4)
	done := make(chan cache.Result, 1)
	go func() {
		r, _ := c.GetWait(ctx, key4, 20*time.Second)
		done <- r
	}()
	time.Sleep(100 * time.Millisecond)
	if err := c.Abort(ctx, key4, tok6); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Status != cache.Miss || r.Token == tok6 {
		t.Errorf("waiter after abort: %+v", r)
	}
}

func TestLimits(t *testing.T) {
	c, cc := newCache(t, cache.Config{MaxValueBytes: 1024, MaxChunks: 3})
	ctx := ctxT(t)
	key := testKey(t, "limits", `{"q":1}`)
	tok := miss(t, c, key)
	for _, ttl := range []time.Duration{-time.Second, 999 * time.Millisecond, cache.MaxTTL + time.Second} {
		if err := c.Set(ctx, key, tok, []byte("x"), ttl); !errors.Is(err, cache.ErrBadTTL) {
			t.Errorf("ttl %v: %v, want ErrBadTTL", ttl, err)
		}
		if _, err := c.Commit(ctx, key, tok, ttl); !errors.Is(err, cache.ErrBadTTL) {
			t.Errorf("commit ttl %v: %v, want ErrBadTTL", ttl, err)
		}
	}
	if err := c.Set(ctx, key, tok, make([]byte, 1025), 0); !errors.Is(err, cache.ErrTooLarge) ||
		!strings.Contains(err.Error(), "1025 bytes, more than 1024") {
		t.Errorf("value of 1025 bytes: %v", err)
	}
	if err := c.Set(ctx, key, tok, make([]byte, 1024), cache.MinTTL); err != nil {
		t.Errorf("value of 1024 bytes: %v", err)
	}
	if ttl := cc.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Second {
		t.Errorf("TTL %v, want at most 1s", ttl)
	}
	time.Sleep(1500 * time.Millisecond)
	tok = miss(t, c, key) // expired

	// default TTL
	if err := c.Set(ctx, key, tok, nil, 0); err != nil {
		t.Fatal(err)
	}
	if ttl := cc.PTTL(ctx, key).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("default TTL %v, want 1h", ttl)
	}
	if r, err := c.Get(ctx, key); err != nil || r.Status != cache.Hit || len(r.Value) != 0 || r.Streamed {
		t.Errorf("empty value: %+v, %v", r, err)
	}

	// stream size and chunk caps
	key2 := testKey(t, "limits", `{"q":2}`)
	tok2 := miss(t, c, key2)
	if _, err := c.Append(ctx, key2, tok2, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, key2, tok2, make([]byte, 25)); !errors.Is(err, cache.ErrTooLarge) {
		t.Errorf("stream over the cap: %v", err)
	}
	if _, err := c.Append(ctx, key2, tok2, make([]byte, 1025)); !errors.Is(err, cache.ErrTooLarge) {
		t.Errorf("chunk over the cap: %v", err)
	}
	for range 2 {
		if _, err := c.Append(ctx, key2, tok2, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Append(ctx, key2, tok2, []byte("x")); !errors.Is(err, cache.ErrTooManyChunks) {
		t.Errorf("fourth chunk: %v", err)
	}
	// refused appends left the stream as it was
	if n, err := c.Commit(ctx, key2, tok2, 0); err != nil || n != 3 {
		t.Errorf("commit: %d, %v", n, err)
	}

	for _, cfg := range []cache.Config{
		{FillLease: time.Millisecond}, {FillLease: time.Hour}, {FillLease: -1},
		{DefaultTTL: time.Millisecond}, {DefaultTTL: 31 * 24 * time.Hour},
		{MaxValueBytes: -1}, {MaxValueBytes: cache.MaxMaxValueBytes + 1},
		{MaxChunks: -1}, {MaxChunks: cache.MaxMaxChunks + 1},
	} {
		if _, err := cache.New(cc, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := cache.New(nil, cache.Config{}); err == nil {
		t.Error("New(nil) accepted")
	}
}

func TestBadKeysAndWrongType(t *testing.T) {
	c, cc := newCache(t, cache.Config{})
	ctx := ctxT(t)
	tok := strings.Repeat("a", 32)
	for _, k := range []string{"", "plain", "gwc:v1:{x}"} {
		_, err1 := c.Get(ctx, k)
		_, err2 := c.GetWait(ctx, k, time.Second)
		err3 := c.Set(ctx, k, tok, nil, 0)
		_, err4 := c.Append(ctx, k, tok, nil)
		_, err5 := c.Commit(ctx, k, tok, 0)
		err6 := c.Abort(ctx, k, tok)
		_, err7 := c.Del(ctx, k)
		for i, err := range []error{err1, err2, err3, err4, err5, err6, err7} {
			if !errors.Is(err, cache.ErrBadKey) {
				t.Errorf("key %q call %d: %v, want ErrBadKey", k, i+1, err)
			}
		}
	}
	if _, err := c.Stats(ctx, "a{b"); !errors.Is(err, cache.ErrBadNamespace) {
		t.Errorf("stats of a bad namespace: %v", err)
	}

	key := testKey(t, "wrongtype", `{"q":1}`)
	if err := cc.Set(ctx, key, "foreign", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, key); !errors.Is(err, cache.ErrWrongType) || !strings.Contains(err.Error(), "holds a string") {
		t.Errorf("get of a foreign string: %v", err)
	}
	if err := cc.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cc.RPush(ctx, key, "x", "y").Err(); err != nil { // a list, but not an entry
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, key); !errors.Is(err, cache.ErrWrongType) {
		t.Errorf("get of a foreign list: %v", err)
	}
	key2 := testKey(t, "wrongtype", `{"q":2}`)
	if err := cc.Set(ctx, key2+":lock", "foreign", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, key2); !errors.Is(err, cache.ErrWrongType) {
		t.Errorf("get with a foreign lock key: %v", err)
	}
	if err := c.Set(ctx, key2, tok, nil, 0); !errors.Is(err, cache.ErrWrongType) {
		t.Errorf("set with a foreign lock key: %v", err)
	}
	key3 := testKey(t, "wrongtype", `{"q":3}`)
	tok3 := miss(t, c, key3)
	if err := cc.Set(ctx, key3+":part", "foreign", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, key3, tok3, []byte("x")); !errors.Is(err, cache.ErrWrongType) {
		t.Errorf("append with a foreign part key: %v", err)
	}
	// Chunks removed behind the cache's back: the stream is lost, never
	// published short.
	if err := cc.Del(ctx, key3+":part").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, key3, tok3, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, key3, tok3, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := cc.Del(ctx, key3+":part").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, key3, tok3, []byte("z")); !errors.Is(err, cache.ErrStreamLost) {
		t.Errorf("append after the part vanished: %v, want ErrStreamLost", err)
	}
	if _, err := c.Commit(ctx, key3, tok3, 0); !errors.Is(err, cache.ErrStreamLost) {
		t.Errorf("commit after the part vanished: %v, want ErrStreamLost", err)
	}
	if r, err := c.Get(ctx, key3); err != nil || r.Status != cache.Wait {
		t.Errorf("get after a lost stream: %+v, %v", r, err)
	}
	if err := c.Abort(ctx, key3, tok3); err != nil {
		t.Errorf("abort of a lost stream: %v", err)
	}
	if err := cc.Set(ctx, "gwc:v1:stats:{wrongtype2}", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stats(ctx, "wrongtype2"); !errors.Is(err, cache.ErrWrongType) {
		t.Errorf("stats of a foreign key: %v", err)
	}
	// A failed count never fails the call.
	key4 := mustKey(t, "wrongtype2", "/e", "m", "", `{}`)
	if r, err := c.Get(ctx, key4); err != nil || r.Status != cache.Miss {
		t.Errorf("get with broken counters: %+v, %v", r, err)
	}
}

func TestStatsAndNoStats(t *testing.T) {
	c, _ := newCache(t, cache.Config{})
	ctx := ctxT(t)
	ns := fmt.Sprintf("stats-%d", time.Now().UnixNano())
	k1 := mustKey(t, ns, "/e", "m", "", `{"a":1}`)
	k2 := mustKey(t, ns, "/e", "m", "", `{"a":2}`)
	tok1 := miss(t, c, k1)
	tok2 := miss(t, c, k2)
	if r, _ := c.Get(ctx, k1); r.Status != cache.Wait {
		t.Fatalf("want WAIT, got %v", r.Status)
	}
	if err := c.Set(ctx, k1, tok1, []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Abort(ctx, k2, tok2); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r, _ := c.Get(ctx, k1); r.Status != cache.Hit {
			t.Fatalf("want HIT, got %v", r.Status)
		}
	}
	if st, err := c.Stats(ctx, ns); err != nil || st != (cache.Stats{Hit: 3, Miss: 2, Wait: 1, Fill: 1, Abort: 1}) {
		t.Errorf("stats %+v, %v", st, err)
	}
	quiet, _ := newCache(t, cache.Config{NoStats: true})
	if r, _ := quiet.Get(ctx, k1); r.Status != cache.Hit {
		t.Fatalf("want HIT, got %v", r.Status)
	}
	if st, _ := c.Stats(ctx, ns); st.Hit != 3 {
		t.Errorf("NoStats counted: %+v", st)
	}
	if st, err := c.Stats(ctx, ns+"-unused"); err != nil || st != (cache.Stats{}) {
		t.Errorf("stats of an unused namespace: %+v, %v", st, err)
	}
}
