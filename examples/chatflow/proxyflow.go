package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ProxyFlow runs a chat request through the proxy's gateway commands with
// a plain Redis client: what a gateway in any language does.
type ProxyFlow struct {
	rdb   *redis.Client
	cfg   Config
	model Model
}

// NewProxyFlow returns a ProxyFlow on rdb, a client of the proxy.
func NewProxyFlow(rdb *redis.Client, cfg Config, model Model) *ProxyFlow {
	return &ProxyFlow{rdb: rdb, cfg: cfg, model: model}
}

// Chat answers one chat request:
//
//	RL.ACQUIRE → CACHE.KEY → CACHE.GET WAIT
//	  HIT:  RL.SETTLE 0 → CTX.APPEND user, assistant
//	  MISS: CTX.WINDOW → model → RL.SETTLE actual → CACHE.SET → CTX.APPEND user, assistant
//	        (model failed: RL.RELEASE, CACHE.ABORT)
//
// A refusal of the rate limiter is a *LimitedError.
func (f *ProxyFlow) Chat(ctx context.Context, req Request) (out Outcome, err error) {
	c := f.cfg
	promptTokens := CountTokens(req.Prompt)
	out.Estimate = c.Estimate(req.Prompt)

	// 1. Rate limits: one request, the estimated tokens and a concurrency
	// slot, all or nothing.
	v, err := f.rdb.Do(ctx, "RL.ACQUIRE", c.Tenant, "RPM", c.RPM, "TPM", c.TPM,
		"CONCURRENCY", c.Concurrency, "TOKENS", out.Estimate).Result()
	if err != nil {
		return out, fmt.Errorf("chatflow: acquire: %w", err)
	}
	grant, err := fields(v)
	if err != nil {
		return out, fmt.Errorf("chatflow: acquire: %w", err)
	}
	if grant["allowed"] != int64(1) {
		return out, &LimitedError{RetryAfter: retryAfter(grant["limits"])}
	}
	out.Lease, _ = grant["lease"].(string)
	// Until the lease is settled, any failure releases its concurrency
	// slot (the estimate stays charged).
	settled := false
	defer func() {
		if !settled {
			_ = f.rdb.Do(context.WithoutCancel(ctx), "RL.RELEASE", c.Tenant, out.Lease).Err()
		}
	}()

	// 2. Cache lookup: a hit, or a miss with the fill token (this request
	// computes the answer), or, after CacheWait, WAIT.
	key, err := f.rdb.Do(ctx, "CACHE.KEY", c.Namespace, Endpoint, c.Model, c.Tenant, string(c.Body(req.Prompt))).Text()
	if err != nil {
		return out, fmt.Errorf("chatflow: cache key: %w", err)
	}
	res, err := f.rdb.Do(ctx, "CACHE.GET", key, "WAIT", c.CacheWait.Milliseconds()).Slice()
	if err != nil || len(res) != 2 {
		return out, fmt.Errorf("chatflow: cache get: %v %w", res, err)
	}
	out.Cache, _ = res[0].(string)
	if out.Cache == "HIT" {
		var hit cached
		s, _ := res[1].(string)
		if err := json.Unmarshal([]byte(s), &hit); err != nil {
			return out, fmt.Errorf("chatflow: cached answer: %w", err)
		}
		out.Answer, out.AnswerTokens = hit.Answer, hit.Tokens
		// No model tokens were spent: settle 0 refunds the estimate.
		if err := f.settle(ctx, &out, 0); err != nil {
			return out, err
		}
		settled = true
		return out, f.remember(ctx, req, out)
	}
	fillToken, _ := res[1].(string) // "" for WAIT: answer without the cache

	// 3. Context: the newest turns of the conversation that fit the budget.
	history, err := f.window(ctx)
	if err != nil {
		f.abort(ctx, key, fillToken)
		return out, err
	}
	for _, t := range history {
		out.HistoryTokens += t.Tokens
	}

	// 4. The model call.
	answer, err := f.model(ctx, history, req.Prompt)
	if err != nil {
		f.abort(ctx, key, fillToken) // a waiting request takes over
		return out, fmt.Errorf("chatflow: model: %w", err)
	}
	out.Answer, out.AnswerTokens = answer, CountTokens(answer)

	// 5. Settle with the actual tokens: the difference is refunded (or
	// charged), and the concurrency slot freed.
	if err := f.settle(ctx, &out, out.HistoryTokens+promptTokens+out.AnswerTokens); err != nil {
		f.abort(ctx, key, fillToken)
		return out, err
	}
	settled = true

	// 6. Fill the cache with the token of the miss.
	if fillToken != "" {
		val, _ := json.Marshal(cached{Answer: out.Answer, Tokens: out.AnswerTokens})
		err := f.rdb.Do(ctx, "CACHE.SET", key, fillToken, string(val), "TTL", int64(c.CacheTTL/time.Second)).Err()
		// A stale token (the model took longer than the fill lease, and
		// another request filled) costs the cache entry, not the answer.
		if err != nil && !strings.Contains(err.Error(), "fill token is stale") {
			return out, fmt.Errorf("chatflow: cache set: %w", err)
		}
	}

	// 7. Remember the turns.
	return out, f.remember(ctx, req, out)
}

// settle runs RL.SETTLE with the actual tokens.
func (f *ProxyFlow) settle(ctx context.Context, out *Outcome, actual int64) error {
	v, err := f.rdb.Do(ctx, "RL.SETTLE", f.cfg.Tenant, out.Lease, actual).Result()
	if err != nil {
		return fmt.Errorf("chatflow: settle: %w", err)
	}
	m, err := fields(v)
	if err != nil {
		return fmt.Errorf("chatflow: settle: %w", err)
	}
	out.Actual, _ = m["tokens"].(int64)
	out.Delta, _ = m["delta"].(int64)
	return nil
}

// abort gives up a fill token, if any, so that a waiting request gets a
// new one at once instead of after the fill lease.
func (f *ProxyFlow) abort(ctx context.Context, key, fillToken string) {
	if fillToken != "" {
		_ = f.rdb.Do(context.WithoutCancel(ctx), "CACHE.ABORT", key, fillToken).Err()
	}
}

// window reads the conversation with CTX.WINDOW.
func (f *ProxyFlow) window(ctx context.Context) ([]Turn, error) {
	msgs, err := f.rdb.Do(ctx, "CTX.WINDOW", f.cfg.Tenant, f.cfg.Session, "BUDGET", f.cfg.HistoryBudget).Slice()
	if err != nil {
		return nil, fmt.Errorf("chatflow: context window: %w", err)
	}
	turns := make([]Turn, 0, len(msgs))
	for _, m := range msgs {
		fm, err := fields(m)
		if err != nil {
			return nil, fmt.Errorf("chatflow: context window: %w", err)
		}
		t := Turn{}
		t.Role, _ = fm["role"].(string)
		t.Content, _ = fm["content"].(string)
		t.Tokens, _ = fm["tokens"].(int64)
		turns = append(turns, t)
	}
	return turns, nil
}

// remember appends the user's and the assistant's turns. Their ids make a
// retry of the request harmless.
func (f *ProxyFlow) remember(ctx context.Context, req Request, out Outcome) error {
	c := f.cfg
	if err := f.rdb.Do(ctx, "CTX.APPEND", c.Tenant, c.Session, "user", req.Prompt, CountTokens(req.Prompt),
		"ID", req.ID+":user").Err(); err != nil {
		return fmt.Errorf("chatflow: context append: %w", err)
	}
	meta := fmt.Sprintf(`{"model":%q,"cache":%q}`, c.Model, out.Cache)
	if err := f.rdb.Do(ctx, "CTX.APPEND", c.Tenant, c.Session, "assistant", out.Answer, out.AnswerTokens,
		"ID", req.ID+":assistant", "META", meta).Err(); err != nil {
		return fmt.Errorf("chatflow: context append: %w", err)
	}
	return nil
}

// fields reads a map reply: a RESP3 map, or a RESP2 flat array of names
// and values.
func fields(v any) (map[string]any, error) {
	out := map[string]any{}
	switch x := v.(type) {
	case map[any]any:
		for k, v := range x {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("map key %v is not a string", k)
			}
			out[s] = v
		}
	case []any:
		if len(x)%2 != 0 {
			return nil, fmt.Errorf("reply of %d values is not name/value pairs", len(x))
		}
		for i := 0; i < len(x); i += 2 {
			s, ok := x[i].(string)
			if !ok {
				return nil, fmt.Errorf("name %v is not a string", x[i])
			}
			out[s] = x[i+1]
		}
	default:
		return nil, fmt.Errorf("unexpected reply %T", v)
	}
	return out, nil
}

// retryAfter is the longest retry_after_ms among the limits, or -1 when
// none has one: the refusing limit can never allow the request (a limit
// that allows has -1 too).
func retryAfter(limits any) time.Duration {
	list, _ := limits.([]any)
	longest := time.Duration(-1)
	for _, l := range list {
		m, err := fields(l)
		if err != nil {
			continue
		}
		if ms, _ := m["retry_after_ms"].(int64); time.Duration(ms)*time.Millisecond > longest {
			longest = time.Duration(ms) * time.Millisecond
		}
	}
	return longest
}
