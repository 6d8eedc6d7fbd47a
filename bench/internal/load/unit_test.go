package load

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterproxy/clusterproxy/router"
)

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, []byte("SET"), []byte("k"), []byte("")))
	if want := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestBudgetCounted(t *testing.T) {
	b := newBudget(Budget{N: 1000})
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				n := b.take(7)
				if n == 0 {
					return
				}
				if n > 7 {
					t.Errorf("take(7) gave %d", n)
				}
				total.Add(int64(n))
			}
		})
	}
	wg.Wait()
	if total.Load() != 1000 {
		t.Errorf("handed out %d operations, want exactly 1000", total.Load())
	}
}

func TestBudgetDuration(t *testing.T) {
	b := newBudget(Budget{Duration: 30 * time.Millisecond})
	if b.take(5) != 5 {
		t.Fatal("a fresh time budget must hand out what is asked")
	}
	time.Sleep(40 * time.Millisecond)
	if n := b.take(5); n != 0 {
		t.Errorf("take after the deadline = %d, want 0", n)
	}
}

func TestWorkerKey(t *testing.T) {
	w := &Worker{}
	if got := string(w.Key(2, "bench:", 0)); got != "bench:0" {
		t.Errorf("got %q", got)
	}
	if got := string(w.Key(0, "p:", 1234567)); got != "p:1234567" {
		t.Errorf("got %q", got)
	}
	if len(w.Keys) != 3 || string(w.Keys[2]) != "bench:0" {
		t.Errorf("scratch keys %q", w.Keys)
	}
}

func TestMultiWorkloadSplitsForCluster(t *testing.T) {
	cfg := Config{Multi: 4, Keys: 1000}.Normalize()
	w := &Worker{Rng: newRng(1), Value: makeValue(8)}
	for _, set := range []bool{false, true} {
		single := &Batch{}
		multiWorkload{cfg: cfg, set: set}.Fill(single, w, 3)
		if single.ops != 3 || len(single.cmds) != 3 {
			t.Errorf("set=%v single: %d ops, %d commands, want 3 and 3", set, single.ops, len(single.cmds))
		}
		cl := &Batch{Cluster: true}
		multiWorkload{cfg: cfg, set: set}.Fill(cl, w, 3)
		if cl.ops != 3 || len(cl.cmds) != 12 {
			t.Errorf("set=%v cluster: %d ops, %d commands, want 3 and 12", set, cl.ops, len(cl.cmds))
		}
		for _, c := range cl.cmds {
			// Each command's slot is its key's.
			cmd := cl.buf[c.start:c.end]
			if c.slot < 0 || c.slot >= router.SlotCount || len(cmd) == 0 {
				t.Fatalf("bad command ref %+v", c)
			}
		}
	}
}

func TestGetSetRatio(t *testing.T) {
	cfg := Config{SetRatio: 1, GetRatio: 3}.Normalize()
	w := &Worker{Rng: newRng(2), Value: makeValue(8)}
	b := &Batch{}
	getSetWorkload{cfg: cfg}.Fill(b, w, 4000)
	sets := 0
	for _, c := range b.cmds {
		if string(b.buf[c.start+8:c.start+11]) == "SET" {
			sets++
		}
	}
	if sets < 850 || sets > 1150 {
		t.Errorf("%d SETs in 4000 at 1:3, want about 1000", sets)
	}
}

func TestSentAt(t *testing.T) {
	d, ok := sentAt([]byte("123456:xxxx"))
	if !ok || d != 123456 {
		t.Errorf("got %v %v", d, ok)
	}
	for _, bad := range []string{"", ":x", "abc:x", "123"} {
		if _, ok := sentAt([]byte(bad)); ok {
			t.Errorf("sentAt(%q) accepted", bad)
		}
	}
}

func TestLeaseParsing(t *testing.T) {
	w := &llmWorker{}
	resp2 := "*6\r\n$7\r\nallowed\r\n:1\r\n$5\r\nlease\r\n$3\r\nL-1\r\n$6\r\nlimits\r\n*0\r\n"
	resp3 := "%3\r\n+allowed\r\n:1\r\n+lease\r\n$3\r\nL-2\r\n+limits\r\n*0\r\n"
	refused := "*6\r\n$7\r\nallowed\r\n:0\r\n$5\r\nlease\r\n$-1\r\n$6\r\nlimits\r\n*0\r\n"
	if l, err := w.lease([]byte(resp2)); err != nil || l != "L-1" {
		t.Errorf("RESP2: %q %v", l, err)
	}
	if l, err := w.lease([]byte(resp3)); err != nil || l != "L-2" {
		t.Errorf("RESP3: %q %v", l, err)
	}
	var re replyErr
	if _, err := w.lease([]byte(refused)); !errors.As(err, &re) || re.step != StepAcquire {
		t.Errorf("refused: err %v, want a counted step error", err)
	}
	if _, err := w.lease([]byte(":1\r\n")); !errors.As(err, &re) {
		t.Errorf("not an array: err %v", err)
	}
}

func TestNormalizeDefaults(t *testing.T) {
	c := Config{}.Normalize()
	if c.Conns != 50 || c.Pipeline != 1 || c.Keys != 100000 || c.Size != 64 || c.SetRatio != 1 || c.GetRatio != 1 ||
		c.Multi != 10 || c.Prefix != "bench:" || c.Turns != 20 || c.Prompt != 2048 || c.Answer != 1024 || c.Subs != 10 {
		t.Errorf("defaults %+v", c)
	}
	if c := (Config{SetRatio: 0, GetRatio: 5}).Normalize(); c.SetRatio != 0 || c.GetRatio != 5 {
		t.Errorf("a GET-only ratio must stay: %+v", c)
	}
}

func newRng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }
