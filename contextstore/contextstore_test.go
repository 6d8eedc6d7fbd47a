package contextstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/contextstore"
	"github.com/clusterproxy/clusterproxy/internal/localcluster"
	"github.com/clusterproxy/clusterproxy/internal/testcluster"
	"github.com/redis/go-redis/v9"
)

var shared *localcluster.Cluster

func TestMain(m *testing.M) {
	testcluster.Main(m, func(c *localcluster.Cluster) int {
		shared = c
		return m.Run()
	})
}

// newSession returns a store on the shared cluster and a fresh session
// named after the test.
func newSession(t *testing.T, opt contextstore.Options) (*contextstore.Store, *contextstore.Session, *redis.ClusterClient) {
	t.Helper()
	cc := testcluster.NewClusterClient(t, shared)
	st, err := contextstore.New(cc, opt)
	if err != nil {
		t.Fatal(err)
	}
	se, err := st.Session("tenant:"+t.Name(), fmt.Sprintf("s%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return st, se, cc
}

func mustAppend(t *testing.T, se *contextstore.Session, m contextstore.Message, o contextstore.AppendOptions) contextstore.AppendResult {
	t.Helper()
	r, err := se.Append(context.Background(), m, o)
	if err != nil {
		t.Fatalf("append %+v: %v", m, err)
	}
	return r
}

func seqs(w contextstore.Window) []int64 {
	var out []int64
	for _, m := range w.Messages {
		out = append(out, m.Seq)
	}
	return out
}

func TestAppendWindowRoundTripInOrder(t *testing.T) {
	ctx := context.Background()
	_, se, _ := newSession(t, contextstore.Options{})
	if err := se.Pin(ctx, "You are terse.", 4, 0); err != nil {
		t.Fatal(err)
	}
	msgs := []contextstore.Message{
		{Role: contextstore.User, Content: "hi, there", Tokens: 3, ID: "r1:u"},
		{Role: contextstore.Assistant, Content: "", Tokens: 0, Meta: `{"tool_calls":[{"id":"c1"}]}`},
		{Role: contextstore.Tool, Content: "a,b\x00\r\n{x}", Tokens: 5, ID: "id,with,commas"},
		{Role: contextstore.System, Content: strings.Repeat("é", 1000), Tokens: 700},
		{Role: contextstore.User, Content: "last", Tokens: 1},
	}
	total := int64(0)
	for i, m := range msgs {
		r := mustAppend(t, se, m, contextstore.AppendOptions{})
		total += m.Tokens
		if r.Len != int64(i+1) || r.Tokens != total || r.Trimmed != 0 || r.Duplicate {
			t.Fatalf("append %d: %+v", i, r)
		}
	}
	w, err := se.Window(ctx, contextstore.WindowOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Messages) != 6 || w.Tokens != total+4 {
		t.Fatalf("window: %d messages, %d tokens", len(w.Messages), w.Tokens)
	}
	pin := w.Messages[0]
	if !pin.Pinned || pin.Seq != 0 || pin.Role != contextstore.System || pin.Content != "You are terse." || pin.Tokens != 4 {
		t.Fatalf("pinned: %+v", pin)
	}
	for i, m := range msgs {
		got := w.Messages[i+1]
		m.Seq = int64(i + 1)
		if got != m {
			t.Fatalf("message %d: got %+v, want %+v", i, got, m)
		}
	}
	l, err := se.Len(ctx)
	if err != nil || l != (contextstore.Length{Messages: 5, Tokens: total, Pinned: true, PinnedTokens: 4}) {
		t.Fatalf("len: %+v, %v", l, err)
	}
	// LAST keeps the newest, still in order, pinned prompt first.
	w, err = se.Window(ctx, contextstore.WindowOptions{Last: 2})
	if err != nil || fmt.Sprint(seqs(w)) != "[0 4 5]" || w.Tokens != 4+700+1 {
		t.Fatalf("last 2: %v %d %v", seqs(w), w.Tokens, err)
	}
	// A missing session is an empty window.
	st, _, _ := newSession(t, contextstore.Options{})
	other, _ := st.Session("nobody", "nothing")
	w, err = other.Window(ctx, contextstore.WindowOptions{Budget: 10})
	if err != nil || len(w.Messages) != 0 || w.Tokens != 0 {
		t.Fatalf("missing session: %+v %v", w, err)
	}
}

func TestTrimByCountKeepsPinned(t *testing.T) {
	ctx := context.Background()
	_, se, _ := newSession(t, contextstore.Options{MaxMessages: 6})
	if err := se.Pin(ctx, "rules", 10, 0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		r := mustAppend(t, se, contextstore.Message{Role: contextstore.User, Content: fmt.Sprint("m", i), Tokens: 1},
			contextstore.AppendOptions{MaxMessages: 4})
		wantTrim := int64(0)
		if i > 4 {
			wantTrim = 1
		}
		if r.Len != min(int64(i), 4) || r.Tokens != min(int64(i), 4) || r.Trimmed != wantTrim {
			t.Fatalf("append %d: %+v", i, r)
		}
	}
	w, err := se.Window(ctx, contextstore.WindowOptions{})
	if err != nil || fmt.Sprint(seqs(w)) != "[0 7 8 9 10]" || w.Messages[1].Content != "m7" {
		t.Fatalf("window %v %v", seqs(w), err)
	}
	// Without a per-call cap, the store's cap (6) applies; lowering it to 1
	// trims several at once.
	r := mustAppend(t, se, contextstore.Message{Role: contextstore.User, Tokens: 1}, contextstore.AppendOptions{})
	if r.Len != 5 || r.Trimmed != 0 {
		t.Fatalf("store cap: %+v", r)
	}
	r = mustAppend(t, se, contextstore.Message{Role: contextstore.User, Tokens: 2}, contextstore.AppendOptions{MaxMessages: 1})
	if r.Len != 1 || r.Trimmed != 5 || r.Tokens != 2 {
		t.Fatalf("cap 1: %+v", r)
	}
	w, _ = se.Window(ctx, contextstore.WindowOptions{})
	if fmt.Sprint(seqs(w)) != "[0 12]" || !w.Messages[0].Pinned {
		t.Fatalf("after cap 1: %v", seqs(w))
	}
}

func TestTrimByTokensKeepsPinned(t *testing.T) {
	ctx := context.Background()
	_, se, _ := newSession(t, contextstore.Options{MaxTokens: 1000})
	if err := se.Pin(ctx, "big rules", 900, 0); err != nil {
		t.Fatal(err)
	}
	o := contextstore.AppendOptions{MaxTokens: 100}
	for i := 1; i <= 5; i++ {
		r := mustAppend(t, se, contextstore.Message{Role: contextstore.Assistant, Content: "x", Tokens: 30}, o)
		if r.Tokens > 100 || r.Len != min(int64(i), 3) {
			t.Fatalf("append %d: %+v", i, r)
		}
	}
	// 40 more tokens: 130 > 100, so the oldest goes.
	r := mustAppend(t, se, contextstore.Message{Role: contextstore.User, Tokens: 40}, o)
	if r.Len != 3 || r.Tokens != 100 || r.Trimmed != 1 {
		t.Fatalf("40: %+v", r)
	}
	// A message of exactly the cap leaves only itself.
	r = mustAppend(t, se, contextstore.Message{Role: contextstore.User, Tokens: 100}, o)
	if r.Len != 1 || r.Tokens != 100 || r.Trimmed != 3 {
		t.Fatalf("100: %+v", r)
	}
	// One above the cap is refused, nothing stored.
	_, err := se.Append(ctx, contextstore.Message{Role: contextstore.User, Tokens: 101}, o)
	if !errors.Is(err, contextstore.ErrInvalid) {
		t.Fatalf("101: %v", err)
	}
	w, err := se.Window(ctx, contextstore.WindowOptions{})
	if err != nil || fmt.Sprint(seqs(w)) != "[0 7]" || w.Tokens != 1000 || w.Messages[0].Content != "big rules" {
		t.Fatalf("window %v %d %v", seqs(w), w.Tokens, err)
	}
	// Zero-token messages are kept by the token cap.
	for i := 0; i < 3; i++ {
		mustAppend(t, se, contextstore.Message{Role: contextstore.Tool, Tokens: 0}, o)
	}
	if l, _ := se.Len(ctx); l.Messages != 4 || l.Tokens != 100 {
		t.Fatalf("len %+v", l)
	}
}

// The window never exceeds the budget and is exactly the longest suffix
// that fits, in order, over random sessions and budgets.
func TestWindowNeverExceedsBudget(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for round := 0; round < 8; round++ {
		_, se, _ := newSession(t, contextstore.Options{})
		n := rng.Intn(150)
		toks := make([]int64, n)
		for i := range toks {
			toks[i] = int64(rng.Intn(300))
			if rng.Intn(10) == 0 {
				toks[i] = 0
			}
			mustAppend(t, se, contextstore.Message{Role: contextstore.User, Content: fmt.Sprint(i), Tokens: toks[i]}, contextstore.AppendOptions{})
		}
		pin := int64(-1)
		if rng.Intn(2) == 0 {
			pin = int64(rng.Intn(200))
			if err := se.Pin(ctx, "p", pin, 0); err != nil {
				t.Fatal(err)
			}
		}
		for q := 0; q < 40; q++ {
			o := contextstore.WindowOptions{Budget: int64(rng.Intn(3000)), Last: int64(rng.Intn(n + 5))}
			if rng.Intn(4) == 0 {
				o.Budget = 0
			}
			if rng.Intn(3) == 0 {
				o.Last = 0
			}
			// The model: pinned first, then the longest suffix that fits.
			used, want := int64(0), []int64{}
			if pin >= 0 {
				used = pin
				want = append(want, 0)
			}
			if o.Budget > 0 && used > o.Budget {
				_, err := se.Window(ctx, o)
				if !errors.Is(err, contextstore.ErrPinnedOverBudget) {
					t.Fatalf("%+v: pinned %d: err %v", o, pin, err)
				}
				continue
			}
			start := n
			for start > 0 && (o.Last == 0 || int64(n-start) < o.Last) && (o.Budget == 0 || used+toks[start-1] <= o.Budget) {
				start--
				used += toks[start]
			}
			for i := start; i < n; i++ {
				want = append(want, int64(i+1))
			}
			w, err := se.Window(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			sum := int64(0)
			for _, m := range w.Messages {
				sum += m.Tokens
				if !m.Pinned && m.Content != fmt.Sprint(m.Seq-1) {
					t.Fatalf("message %d content %q", m.Seq, m.Content)
				}
			}
			if o.Budget > 0 && sum > o.Budget {
				t.Fatalf("%+v: window holds %d tokens", o, sum)
			}
			if sum != w.Tokens || sum != used || fmt.Sprint(seqs(w)) != fmt.Sprint(want) {
				t.Fatalf("n=%d pin=%d %+v: got %v (%d/%d tokens), want %v (%d)", n, pin, o, seqs(w), sum, w.Tokens, want, used)
			}
		}
	}
}

func TestPinnedPromptOverBudget(t *testing.T) {
	ctx := context.Background()
	_, se, _ := newSession(t, contextstore.Options{})
	mustAppend(t, se, contextstore.Message{Role: contextstore.User, Tokens: 1}, contextstore.AppendOptions{})
	if err := se.Pin(ctx, "long", 50, 0); err != nil {
		t.Fatal(err)
	}
	_, err := se.Window(ctx, contextstore.WindowOptions{Budget: 49})
	if !errors.Is(err, contextstore.ErrPinnedOverBudget) || !strings.Contains(err.Error(), "50 tokens") {
		t.Fatalf("budget 49: %v", err)
	}
	w, err := se.Window(ctx, contextstore.WindowOptions{Budget: 50})
	if err != nil || fmt.Sprint(seqs(w)) != "[0]" || w.Tokens != 50 {
		t.Fatalf("budget 50: %v %v", seqs(w), err)
	}
	// Replace, then remove the pin.
	if err := se.Pin(ctx, "short", 5, 0); err != nil {
		t.Fatal(err)
	}
	w, _ = se.Window(ctx, contextstore.WindowOptions{Budget: 6})
	if len(w.Messages) != 2 || w.Messages[0].Content != "short" || w.Tokens != 6 {
		t.Fatalf("replaced: %+v", w)
	}
	if err := se.Pin(ctx, "", 0, 0); err != nil {
		t.Fatal(err)
	}
	w, _ = se.Window(ctx, contextstore.WindowOptions{})
	if fmt.Sprint(seqs(w)) != "[1]" {
		t.Fatalf("unpinned: %v", seqs(w))
	}
	if l, _ := se.Len(ctx); l.Pinned {
		t.Fatalf("unpinned len %+v", l)
	}
}

func TestIdempotentAppendByID(t *testing.T) {
	ctx := context.Background()
	_, se, _ := newSession(t, contextstore.Options{MaxIDs: 3})
	m := contextstore.Message{ID: "req-1", Role: contextstore.User, Content: "q", Tokens: 2}
	if r := mustAppend(t, se, m, contextstore.AppendOptions{}); r.Duplicate || r.Len != 1 {
		t.Fatalf("first: %+v", r)
	}
	if r := mustAppend(t, se, m, contextstore.AppendOptions{}); !r.Duplicate || r.Len != 1 || r.Tokens != 2 {
		t.Fatalf("second: %+v", r)
	}
	// Concurrent retries of one id store it once.
	m2 := contextstore.Message{ID: "req-2", Role: contextstore.Assistant, Content: "a", Tokens: 3}
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := se.Append(ctx, m2, contextstore.AppendOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			if !r.Duplicate {
				mu.Lock()
				stored++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if l, _ := se.Len(ctx); stored != 1 || l.Messages != 2 || l.Tokens != 5 {
		t.Fatalf("stored %d times, len %+v", stored, l)
	}
	// Pop forgets the popped message's id.
	got, ok, err := se.Pop(ctx)
	if err != nil || !ok || got.ID != "req-2" || got.Seq != 2 {
		t.Fatalf("pop: %+v %v %v", got, ok, err)
	}
	if r := mustAppend(t, se, m2, contextstore.AppendOptions{}); r.Duplicate || r.Len != 2 {
		t.Fatalf("after pop: %+v", r)
	}
	// Only the MaxIDs (3) newest ids are kept: req-1 is forgotten after
	// three more.
	for _, id := range []string{"a", "b", "c"} {
		mustAppend(t, se, contextstore.Message{ID: id, Role: contextstore.User}, contextstore.AppendOptions{})
	}
	if r := mustAppend(t, se, m, contextstore.AppendOptions{}); r.Duplicate {
		t.Fatalf("req-1 still remembered: %+v", r)
	}
	if r := mustAppend(t, se, contextstore.Message{ID: "c", Role: contextstore.User}, contextstore.AppendOptions{}); !r.Duplicate {
		t.Fatalf("c forgotten: %+v", r)
	}
	// Trimming does not forget ids.
	r := mustAppend(t, se, contextstore.Message{ID: "d", Role: contextstore.User}, contextstore.AppendOptions{MaxMessages: 1})
	if r.Len != 1 {
		t.Fatalf("trim: %+v", r)
	}
	if r := mustAppend(t, se, contextstore.Message{ID: "c", Role: contextstore.User}, contextstore.AppendOptions{}); !r.Duplicate {
		t.Fatalf("trimmed c forgotten: %+v", r)
	}
}

func pttls(t *testing.T, cc *redis.ClusterClient, se *contextstore.Session) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, k := range se.Keys() {
		d, err := cc.PTTL(context.Background(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func TestTTLRefreshedOnWrite(t *testing.T) {
	ctx := context.Background()
	_, se, cc := newSession(t, contextstore.Options{DefaultTTL: time.Hour})
	inRange := func(what string, lo, hi time.Duration) {
		t.Helper()
		for i, d := range pttls(t, cc, se) {
			if d < lo || d > hi {
				t.Fatalf("%s: key %d TTL %v, want in [%v, %v]", what, i, d, lo, hi)
			}
		}
	}
	// A new session without a TTL gets the default.
	mustAppend(t, se, contextstore.Message{ID: "x", Role: contextstore.User, Tokens: 1}, contextstore.AppendOptions{})
	inRange("default", 50*time.Minute, time.Hour)
	// A TTL given once sticks for later writes.
	mustAppend(t, se, contextstore.Message{ID: "y", Role: contextstore.User, Tokens: 1}, contextstore.AppendOptions{TTL: 100 * time.Second})
	inRange("given", 80*time.Second, 100*time.Second)
	shorten := func() {
		for _, k := range se.Keys() {
			if err := cc.PExpire(ctx, k, 5*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
		}
		inRange("shortened", time.Millisecond, 5*time.Second)
	}
	shorten()
	mustAppend(t, se, contextstore.Message{Role: contextstore.User, Tokens: 1}, contextstore.AppendOptions{})
	inRange("append", 80*time.Second, 100*time.Second)
	shorten()
	if err := se.Pin(ctx, "p", 1, 0); err != nil {
		t.Fatal(err)
	}
	inRange("pin", 80*time.Second, 100*time.Second)
	shorten()
	if _, _, err := se.Pop(ctx); err != nil {
		t.Fatal(err)
	}
	inRange("pop", 80*time.Second, 100*time.Second)
	if err := se.Pin(ctx, "p", 1, 200*time.Second); err != nil {
		t.Fatal(err)
	}
	inRange("pin TTL", 180*time.Second, 200*time.Second)
	// Reads do not touch the TTL.
	shorten()
	if _, err := se.Window(ctx, contextstore.WindowOptions{}); err != nil {
		t.Fatal(err)
	}
	inRange("window", time.Millisecond, 5*time.Second)
}

func TestPopLenClear(t *testing.T) {
	ctx := context.Background()
	_, se, cc := newSession(t, contextstore.Options{})
	if _, ok, err := se.Pop(ctx); ok || err != nil {
		t.Fatalf("pop empty: %v %v", ok, err)
	}
	if l, err := se.Len(ctx); err != nil || l != (contextstore.Length{}) {
		t.Fatalf("len empty: %+v %v", l, err)
	}
	for i := 1; i <= 3; i++ {
		mustAppend(t, se, contextstore.Message{Role: contextstore.User, Content: fmt.Sprint("m", i), Tokens: int64(i), Meta: `{"i":1}`}, contextstore.AppendOptions{})
	}
	if err := se.Pin(ctx, "p", 7, 0); err != nil {
		t.Fatal(err)
	}
	m, ok, err := se.Pop(ctx)
	if err != nil || !ok || m.Content != "m3" || m.Tokens != 3 || m.Seq != 3 || m.Meta != `{"i":1}` || m.Pinned {
		t.Fatalf("pop: %+v %v %v", m, ok, err)
	}
	if l, _ := se.Len(ctx); l != (contextstore.Length{Messages: 2, Tokens: 3, Pinned: true, PinnedTokens: 7}) {
		t.Fatalf("len: %+v", l)
	}
	// Sequence numbers are not reused after a pop.
	r := mustAppend(t, se, contextstore.Message{Role: contextstore.User, Tokens: 1}, contextstore.AppendOptions{})
	w, _ := se.Window(ctx, contextstore.WindowOptions{})
	if r.Len != 3 || fmt.Sprint(seqs(w)) != "[0 1 2 4]" {
		t.Fatalf("after pop: %+v %v", r, seqs(w))
	}
	// A message of zero tokens pops too.
	mustAppend(t, se, contextstore.Message{Role: contextstore.Tool, Tokens: 0}, contextstore.AppendOptions{})
	if m, ok, err := se.Pop(ctx); err != nil || !ok || m.Tokens != 0 || m.Seq != 5 {
		t.Fatalf("pop zero tokens: %+v %v %v", m, ok, err)
	}
	if l, _ := se.Len(ctx); l.Messages != 3 || l.Tokens != 4 {
		t.Fatalf("len after zero pop: %+v", l)
	}
	if ok, err := se.Clear(ctx); !ok || err != nil {
		t.Fatalf("clear: %v %v", ok, err)
	}
	for _, k := range se.Keys() {
		if n, _ := cc.Exists(ctx, k).Result(); n != 0 {
			t.Fatalf("key %s left", k)
		}
	}
	if ok, err := se.Clear(ctx); ok || err != nil {
		t.Fatalf("clear again: %v %v", ok, err)
	}
}

func TestKeysOneSlotAndUnambiguous(t *testing.T) {
	ctx := context.Background()
	st, _, cc := newSession(t, contextstore.Options{})
	a, _ := st.Session("a:b", "c")
	b, _ := st.Session("a", "b:c")
	if a.Keys()[0] == b.Keys()[0] {
		t.Fatalf("same keys %v", a.Keys())
	}
	slot, err := cc.ClusterKeySlot(ctx, a.Keys()[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range a.Keys() {
		if s, _ := cc.ClusterKeySlot(ctx, k).Result(); s != slot {
			t.Fatalf("%s in slot %d, want %d", k, s, slot)
		}
	}
}

func TestWrongType(t *testing.T) {
	ctx := context.Background()
	for i := range 4 {
		_, se, cc := newSession(t, contextstore.Options{})
		k := se.Keys()[i]
		if err := cc.Set(ctx, k, "x", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		check := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, contextstore.ErrWrongType) {
				t.Fatalf("key %d, %s: err = %v, want ErrWrongType", i, what, err)
			}
		}
		_, err := se.Append(ctx, contextstore.Message{Role: contextstore.User}, contextstore.AppendOptions{})
		check("append", err)
		_, _, err = se.Pop(ctx)
		check("pop", err)
		check("pin", se.Pin(ctx, "p", 1, 0))
		if i < 3 {
			_, err = se.Window(ctx, contextstore.WindowOptions{})
			check("window", err)
			_, err = se.Len(ctx)
			check("len", err)
		}
		if got, _ := cc.Get(ctx, k).Result(); got != "x" {
			t.Fatalf("key %d changed: %q", i, got)
		}
		// Clear deletes whatever is there.
		if ok, err := se.Clear(ctx); !ok || err != nil {
			t.Fatalf("clear: %v %v", ok, err)
		}
	}
}

func TestInvalidArguments(t *testing.T) {
	ctx := context.Background()
	st, se, _ := newSession(t, contextstore.Options{MaxMessages: 10, MaxTokens: 100, MaxContentBytes: 50, MaxMetaBytes: 20, MaxTTL: time.Hour, DefaultTTL: time.Minute})
	user := func(mod func(*contextstore.Message)) contextstore.Message {
		m := contextstore.Message{Role: contextstore.User, Content: "c", Tokens: 1}
		mod(&m)
		return m
	}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"empty tenant", second(st.Session("", "s")), "tenant id is empty"},
		{"empty session", second(st.Session("t", "")), "session id is empty"},
		{"brace tenant", second(st.Session("t{x", "s")), "contains a brace"},
		{"brace session", second(st.Session("t", "s}")), "contains a brace"},
		{"long tenant", second(st.Session(strings.Repeat("t", contextstore.MaxTenantLen+1), "s")), "longer than 128"},
		{"long session", second(st.Session("t", strings.Repeat("s", contextstore.MaxSessionLen+1))), "longer than 256"},
		{"bad role", appendErr(se, user(func(m *contextstore.Message) { m.Role = "bot" }), contextstore.AppendOptions{}), `role "bot" is not one of`},
		{"empty role", appendErr(se, user(func(m *contextstore.Message) { m.Role = "" }), contextstore.AppendOptions{}), `role "" is not one of`},
		{"negative tokens", appendErr(se, user(func(m *contextstore.Message) { m.Tokens = -1 }), contextstore.AppendOptions{}), "tokens -1 is negative"},
		{"tokens over cap", appendErr(se, user(func(m *contextstore.Message) { m.Tokens = 101 }), contextstore.AppendOptions{}), "more than the token cap 100"},
		{"tokens over call cap", appendErr(se, user(func(m *contextstore.Message) { m.Tokens = 11 }), contextstore.AppendOptions{MaxTokens: 10}), "more than the token cap 10"},
		{"content too large", appendErr(se, user(func(m *contextstore.Message) { m.Content = strings.Repeat("x", 51) }), contextstore.AppendOptions{}), "51 bytes, more than the limit 50"},
		{"id too long", appendErr(se, user(func(m *contextstore.Message) { m.ID = strings.Repeat("i", 129) }), contextstore.AppendOptions{}), "message id is 129 bytes"},
		{"meta not JSON", appendErr(se, user(func(m *contextstore.Message) { m.Meta = "{x" }), contextstore.AppendOptions{}), "not valid JSON"},
		{"meta too large", appendErr(se, user(func(m *contextstore.Message) { m.Meta = `"` + strings.Repeat("m", 20) + `"` }), contextstore.AppendOptions{}), "metadata is 22 bytes"},
		{"message cap too large", appendErr(se, user(func(*contextstore.Message) {}), contextstore.AppendOptions{MaxMessages: 11}), "message cap 11 is out of range [1, 10]"},
		{"message cap negative", appendErr(se, user(func(*contextstore.Message) {}), contextstore.AppendOptions{MaxMessages: -1}), "message cap -1"},
		{"token cap too large", appendErr(se, user(func(*contextstore.Message) {}), contextstore.AppendOptions{MaxTokens: 101}), "token cap 101 is out of range"},
		{"token cap negative", appendErr(se, user(func(*contextstore.Message) {}), contextstore.AppendOptions{MaxTokens: -5}), "token cap -5"},
		{"TTL too short", appendErr(se, user(func(*contextstore.Message) {}), contextstore.AppendOptions{TTL: 999 * time.Millisecond}), "TTL 999ms is out of range"},
		{"TTL too long", appendErr(se, user(func(*contextstore.Message) {}), contextstore.AppendOptions{TTL: 2 * time.Hour}), "TTL 2h0m0s is out of range"},
		{"negative budget", second(se.Window(ctx, contextstore.WindowOptions{Budget: -1})), "budget -1 is negative"},
		{"negative last", second(se.Window(ctx, contextstore.WindowOptions{Last: -1})), "last -1 is negative"},
		{"pin negative tokens", se.Pin(ctx, "p", -1, 0), "tokens -1 is negative"},
		{"pin over cap", se.Pin(ctx, "p", 101, 0), "more than the token cap 100"},
		{"pin too large", se.Pin(ctx, strings.Repeat("p", 51), 1, 0), "51 bytes"},
		{"unpin with tokens", se.Pin(ctx, "", 3, 0), "non-zero tokens"},
		{"pin TTL", se.Pin(ctx, "p", 1, time.Millisecond), "TTL 1ms is out of range"},
		{"option negative", second(contextstore.New(redis.NewClient(&redis.Options{}), contextstore.Options{MaxMessages: -1})), "MaxMessages -1 is out of range"},
		{"option ceiling", second(contextstore.New(redis.NewClient(&redis.Options{}), contextstore.Options{MaxTokens: 1<<40 + 1})), "MaxTokens 1099511627777 is out of range"},
		{"option prefix", second(contextstore.New(redis.NewClient(&redis.Options{}), contextstore.Options{Prefix: "a{"})), "contains a brace"},
		{"option TTLs", second(contextstore.New(redis.NewClient(&redis.Options{}), contextstore.Options{DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour})), "DefaultTTL at most MaxTTL"},
	}
	for _, c := range cases {
		if !errors.Is(c.err, contextstore.ErrInvalid) || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrInvalid with %q", c.name, c.err, c.want)
		}
		var ae *contextstore.ArgError
		if errors.As(c.err, &ae) && strings.HasPrefix(ae.Msg, "contextstore") {
			t.Errorf("%s: ArgError.Msg %q has the package prefix", c.name, ae.Msg)
		}
	}
	// Nothing was written.
	if l, err := se.Len(ctx); err != nil || l != (contextstore.Length{}) {
		t.Fatalf("len after refused calls: %+v %v", l, err)
	}
	if _, err := contextstore.New(nil, contextstore.Options{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	if r, err := contextstore.ParseRole("tool"); err != nil || r != contextstore.Tool {
		t.Fatalf("ParseRole: %v %v", r, err)
	}
	if _, err := contextstore.ParseRole("TOOL"); !errors.Is(err, contextstore.ErrInvalid) {
		t.Fatalf("ParseRole(TOOL): %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func appendErr(se *contextstore.Session, m contextstore.Message, o contextstore.AppendOptions) error {
	_, err := se.Append(context.Background(), m, o)
	return err
}
