package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clusterproxy/clusterproxy/bench/internal/stats"
	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// LLM step names, in flow order; they label the per-step latencies.
const (
	StepAcquire = "rl.acquire"
	StepKey     = "cache.key"
	StepGet     = "cache.get"
	StepWindow  = "ctx.window"
	StepSettle  = "rl.settle"
	StepFill    = "cache.set"
	StepAppend  = "ctx.append"
)

var llmSteps = []string{StepAcquire, StepKey, StepGet, StepWindow, StepSettle, StepFill, StepAppend}

// Limits the flow asks RL.ACQUIRE for: the highest the ratelimit package
// accepts (60,000,000 per minute, 1,000,000 concurrent), so that the
// figures measure the commands rather than the limiter's verdicts. With the
// default sizes (768 tokens per flow) one tenant allows about 78,000 flows
// per minute; -tenants spreads the load when a run goes faster. A refusal
// counts as an error, with the reply quoted.
const (
	llmRPM         = "60000000"
	llmTPM         = "60000000"
	llmConcurrency = "1000000"
	llmEndpoint    = "/v1/chat/completions"
	llmPopular     = 16   // distinct popular prompts (cache hits once filled)
	llmWaitMS      = "50" // CACHE.GET WAIT while another caller fills
	llmWindowTok   = "8000"
	llmCacheTTL    = "600"
	llmCtxTTL      = "600"
)

// LLM is the gateway flow of one chat completion request, one command per
// step on one connection: RL.ACQUIRE, CACHE.KEY (once per distinct prompt,
// memoised as a gateway would), CACHE.GET, CTX.WINDOW, RL.SETTLE, CACHE.SET
// on a miss, and CTX.APPEND of the prompt and the answer (two commands, one
// round trip). Conversations last cfg.Turns requests, then CTX.CLEAR starts
// a new one. A share cfg.HitRatio of requests repeats one of 16 popular
// prompts (answers shared across tenants: empty cache scope), so they hit
// the cache once it is filled; the rest are unique and miss. An operation
// is one whole flow.
type LLM struct{}

// Name returns "llm".
func (LLM) Name() string { return "llm" }

// Check probes the gateway command families; a target without them (a
// plain cluster, a proxy built without them) is unsupported.
func (LLM) Check(ctx context.Context, t *Target, cfg Config) error {
	c, err := dial(ctx, t.anyAddr(0))
	if err != nil {
		return err
	}
	defer c.close()
	probes := [][]string{
		{"RL.PEEK", cfg.Prefix + "probe", "RPM", "10"},
		{"CACHE.KEY", cfg.Prefix + "probe", "chat", "bench", "probe", "{}"},
		{"CTX.LEN", cfg.Prefix + "probe", "probe"},
	}
	for _, p := range probes {
		f, err := c.doStrings(p...)
		if err != nil {
			return err
		}
		if err := replyError(f); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrUnsupported, p[0], err)
		}
	}
	return nil
}

// Run runs one round.
func (LLM) Run(ctx context.Context, t *Target, cfg Config, bud Budget, live *Live) (Round, error) {
	workers := cfg.Conns
	conns := make([]*conn, workers)
	var mu sync.Mutex
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
	}()
	for i := range conns {
		c, err := dial(ctx, t.anyAddr(i))
		if err != nil {
			return Round{}, err
		}
		mu.Lock()
		conns[i] = c
		mu.Unlock()
	}
	sig := histSigFigs(workers)
	flows := make([]*llmWorker, workers)
	runErrs := make([]error, workers)
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	bg := newBudget(bud)
	began := time.Now()
	var wg sync.WaitGroup
	for i := range workers {
		w := newLLMWorker(cfg, i, conns[i], sig, nonce)
		flows[i] = w
		wg.Go(func() {
			for bg.take(1) == 1 {
				err := w.nextConversation()
				start := time.Now()
				if err == nil {
					err = w.flow()
				}
				if err != nil {
					var re replyErr
					if !errors.As(err, &re) {
						if ctx.Err() == nil {
							runErrs[i] = err
						}
						return
					}
					w.errs.n++
					if w.errs.first == "" {
						w.errs.first = err.Error()
					}
					live.Errors.Add(1)
					continue
				}
				w.total.Record(time.Since(start))
				live.Ops.Add(1)
			}
		})
	}
	wg.Wait()
	r := Round{Elapsed: time.Since(began), Latency: stats.NewHist(sig), Extra: map[string]float64{}}
	r.Steps = make([]Step, len(llmSteps))
	for j, name := range llmSteps {
		r.Steps[j] = Step{Name: name, Latency: stats.NewHist(sig)}
	}
	var hits, misses, waits int64
	for _, w := range flows {
		r.Latency.Merge(w.total)
		for j := range llmSteps {
			r.Steps[j].Latency.Merge(w.steps[j])
		}
		r.Errors += w.errs.n
		if r.FirstError == "" {
			r.FirstError = w.errs.first
		}
		hits += w.hits
		misses += w.misses
		waits += w.waits
	}
	r.Ops = r.Latency.Count()
	r.Extra["cache_hits"] = float64(hits)
	r.Extra["cache_misses"] = float64(misses)
	r.Extra["cache_waits"] = float64(waits)
	if err := errors.Join(runErrs...); err != nil {
		return r, err
	}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("load: round against %s interrupted: %w", t.Name, err)
	}
	return r, nil
}

// replyErr is an error reply to one step: counted, and the worker goes on.
type replyErr struct {
	step string
	msg  string
}

func (e replyErr) Error() string { return e.step + ": " + e.msg }

// llmWorker is one connection's conversation state.
type llmWorker struct {
	cfg    Config
	c      *conn
	rng    *rand.Rand
	id     int
	nonce  string // per round: unique prompts and sessions never repeat across rounds or runs
	tenant string
	conv   int // conversations started
	turn   int // turns done in the current conversation
	uniq   int // unique prompts issued
	keys   map[string]string

	total       *stats.Hist
	steps       []*stats.Hist
	errs        errorSink
	hits        int64
	misses      int64
	waits       int64
	answer      []byte
	promptTok   string
	answerTok   string
	el          [][]byte
	promptBytes []byte
}

func newLLMWorker(cfg Config, id int, c *conn, sig int, nonce string) *llmWorker {
	w := &llmWorker{
		cfg:       cfg,
		nonce:     nonce,
		c:         c,
		rng:       rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(id))),
		id:        id,
		tenant:    cfg.Prefix + "tenant-" + strconv.Itoa(id%cfg.Tenants),
		keys:      map[string]string{},
		total:     stats.NewHist(sig),
		answer:    makeValue(cfg.Answer),
		promptTok: strconv.Itoa(max(1, cfg.Prompt/4)),
		answerTok: strconv.Itoa(max(1, cfg.Answer/4)),
	}
	for range llmSteps {
		w.steps = append(w.steps, stats.NewHist(sig))
	}
	return w
}

func (w *llmWorker) session() string {
	return w.nonce + "-w" + strconv.Itoa(w.id) + "-c" + strconv.Itoa(w.conv)
}

// step runs one command and records its latency under step j.
func (w *llmWorker) step(j int, args ...string) ([]byte, error) {
	start := time.Now()
	f, err := w.c.doStrings(args...)
	if err != nil {
		return nil, err
	}
	w.steps[j].Record(time.Since(start))
	if err := replyError(f); err != nil {
		return nil, replyErr{step: llmSteps[j], msg: err.Error()}
	}
	return f, nil
}

// prompt returns the prompt id and text of this turn.
func (w *llmWorker) prompt() (string, string) {
	var id string
	if w.rng.Float64() < w.cfg.HitRatio {
		id = "p" + strconv.Itoa(w.rng.IntN(llmPopular))
	} else {
		w.uniq++
		id = "u" + w.nonce + "-" + strconv.Itoa(w.id) + "-" + strconv.Itoa(w.uniq)
	}
	b := append(w.promptBytes[:0], "prompt "...)
	b = append(b, id...)
	b = append(b, ' ')
	for len(b) < w.cfg.Prompt {
		b = append(b, 'a'+byte(len(b)%26))
	}
	w.promptBytes = b
	return id, string(b)
}

// nextConversation ends a finished conversation (CTX.CLEAR, outside the
// measured flows) and starts a new one.
func (w *llmWorker) nextConversation() error {
	if w.turn < w.cfg.Turns {
		return nil
	}
	f, err := w.c.doStrings("CTX.CLEAR", w.tenant, w.session())
	if err != nil {
		return err
	}
	w.conv++
	w.turn = 0
	if err := replyError(f); err != nil {
		return replyErr{step: "ctx.clear", msg: err.Error()}
	}
	return nil
}

// flow runs one request.
func (w *llmWorker) flow() error {
	id, prompt := w.prompt()
	sess := w.session()

	f, err := w.step(0, "RL.ACQUIRE", w.tenant, "RPM", llmRPM, "TPM", llmTPM, "CONCURRENCY", llmConcurrency,
		"TOKENS", w.promptTok)
	if err != nil {
		return err
	}
	lease, err := w.lease(f)
	if err != nil {
		return err
	}

	key, ok := w.keys[id]
	if !ok {
		body := `{"model":"bench","messages":[{"role":"user","content":"` + prompt + `"}]}`
		f, err := w.step(1, "CACHE.KEY", w.cfg.Prefix+"ns", llmEndpoint, "bench", "", body)
		if err != nil {
			return err
		}
		k, ok := text(f)
		if !ok {
			return replyErr{step: StepKey, msg: fmt.Sprintf("unexpected reply %q", f)}
		}
		key = k
		if len(w.keys) > 1<<16 { // unique prompts never repeat: bound the memo
			clear(w.keys)
		}
		w.keys[id] = key
	}

	f, err = w.step(2, "CACHE.GET", key, "WAIT", llmWaitMS)
	if err != nil {
		return err
	}
	w.el, _, err = resp.Elements(f, w.el[:0])
	if err != nil || len(w.el) != 2 {
		return replyErr{step: StepGet, msg: fmt.Sprintf("unexpected reply %q", f)}
	}
	status, _ := text(w.el[0])
	var token string
	switch strings.ToUpper(status) {
	case "HIT":
		w.hits++
	case "MISS":
		w.misses++
		token, _ = text(w.el[1])
	case "WAIT":
		w.waits++
	default:
		return replyErr{step: StepGet, msg: fmt.Sprintf("unexpected status %q", status)}
	}

	if _, err := w.step(3, "CTX.WINDOW", w.tenant, sess, "BUDGET", llmWindowTok); err != nil {
		return err
	}
	if _, err := w.step(4, "RL.SETTLE", w.tenant, lease, w.answerTok); err != nil {
		return err
	}
	if token != "" {
		if _, err := w.step(5, "CACHE.SET", key, token, string(w.answer), "TTL", llmCacheTTL); err != nil {
			return err
		}
	}

	// Both messages in one round trip.
	start := time.Now()
	c := w.c
	c.wbuf = appendCommand(c.wbuf[:0], []byte("CTX.APPEND"), []byte(w.tenant), []byte(sess), []byte("user"),
		w.promptBytes, []byte(w.promptTok), []byte("TTL"), []byte(llmCtxTTL))
	c.wbuf = appendCommand(c.wbuf, []byte("CTX.APPEND"), []byte(w.tenant), []byte(sess), []byte("assistant"),
		w.answer, []byte(w.answerTok), []byte("TTL"), []byte(llmCtxTTL))
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return fmt.Errorf("load: write to %s: %w", c.addr, err)
	}
	var appendErr error
	for range 2 {
		f, err := c.rd.ReadReply()
		if err != nil {
			return fmt.Errorf("load: read from %s: %w", c.addr, err)
		}
		if e := replyError(f); e != nil && appendErr == nil {
			appendErr = replyErr{step: StepAppend, msg: e.Error()}
		}
	}
	w.steps[6].Record(time.Since(start))
	w.turn++
	return appendErr
}

// lease extracts the lease id from an RL.ACQUIRE reply (a RESP2 flat array
// or RESP3 map of allowed, lease, limits).
func (w *llmWorker) lease(f []byte) (string, error) {
	var err error
	w.el, _, err = resp.Elements(f, w.el[:0])
	if err != nil {
		return "", replyErr{step: StepAcquire, msg: fmt.Sprintf("unexpected reply %q", f)}
	}
	allowed, lease := "", ""
	for i := 0; i+1 < len(w.el); i += 2 {
		k, _ := text(w.el[i])
		switch k {
		case "allowed":
			allowed, _ = text(w.el[i+1])
		case "lease":
			lease, _ = text(w.el[i+1])
		}
	}
	if allowed != "1" || lease == "" {
		return "", replyErr{step: StepAcquire, msg: fmt.Sprintf("refused (allowed=%q): %q", allowed, f)}
	}
	return lease, nil
}
