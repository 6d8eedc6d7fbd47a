package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/clusterproxy/clusterproxy/cache"
	"github.com/clusterproxy/clusterproxy/contextstore"
	"github.com/clusterproxy/clusterproxy/ratelimit"
	"github.com/redis/go-redis/v9"
)

// PackageFlow runs the same chat request with the Go packages on a
// redis.Scripter (a go-redis ClusterClient, or a Client of the proxy). The
// packages use the keys the proxy's commands use, so a Go service and
// gateways behind the proxy share limits, cache and conversations.
type PackageFlow struct {
	lim   *ratelimit.Limiter
	cache *cache.Cache
	ctxs  *contextstore.Store
	cfg   Config
	model Model
}

// NewPackageFlow builds the three packages on s with their defaults.
func NewPackageFlow(s redis.Scripter, cfg Config, model Model) (*PackageFlow, error) {
	lim, err := ratelimit.New(s, ratelimit.Options{})
	if err != nil {
		return nil, err
	}
	c, err := cache.New(s, cache.Config{})
	if err != nil {
		return nil, err
	}
	st, err := contextstore.New(s, contextstore.Options{})
	if err != nil {
		return nil, err
	}
	return &PackageFlow{lim: lim, cache: c, ctxs: st, cfg: cfg, model: model}, nil
}

// Chat answers one chat request, as ProxyFlow.Chat does.
func (f *PackageFlow) Chat(ctx context.Context, req Request) (out Outcome, err error) {
	c := f.cfg
	promptTokens := CountTokens(req.Prompt)
	out.Estimate = c.Estimate(req.Prompt)
	sess, err := f.ctxs.Session(c.Tenant, c.Session)
	if err != nil {
		return out, err
	}

	// 1. Rate limits, all or nothing.
	g, err := f.lim.Acquire(ctx, c.Tenant, ratelimit.Request{
		Limits: ratelimit.Limits{RPM: c.RPM, TPM: c.TPM, Concurrency: c.Concurrency},
		Tokens: out.Estimate,
	})
	if err != nil {
		return out, err
	}
	if !g.Allowed {
		return out, &LimitedError{RetryAfter: g.RetryAfter()}
	}
	out.Lease = g.Lease
	settled := false
	defer func() {
		if !settled {
			_, _ = f.lim.Release(context.WithoutCancel(ctx), c.Tenant, g.Lease)
		}
	}()
	settle := func(actual int64) error {
		r, err := f.lim.Settle(ctx, c.Tenant, g.Lease, actual)
		if err != nil {
			return err
		}
		settled = true
		out.Actual, out.Delta = r.Tokens, r.Delta
		return nil
	}

	// 2. Cache lookup.
	key, err := cache.Key(c.Namespace, Endpoint, c.Model, c.Tenant, c.Body(req.Prompt))
	if err != nil {
		return out, err
	}
	res, err := f.cache.GetWait(ctx, key, c.CacheWait)
	if err != nil {
		return out, err
	}
	out.Cache = res.Status.String()
	if res.Status == cache.Hit {
		var hit cached
		if err := json.Unmarshal(res.Value, &hit); err != nil {
			return out, fmt.Errorf("chatflow: cached answer: %w", err)
		}
		out.Answer, out.AnswerTokens = hit.Answer, hit.Tokens
		if err := settle(0); err != nil { // no model tokens spent
			return out, err
		}
		return out, f.remember(ctx, sess, req, out)
	}
	abort := func() {
		if res.Status == cache.Miss {
			_ = f.cache.Abort(context.WithoutCancel(ctx), key, res.Token)
		}
	}

	// 3. Context window.
	win, err := sess.Window(ctx, contextstore.WindowOptions{Budget: c.HistoryBudget})
	if err != nil {
		abort()
		return out, err
	}
	history := make([]Turn, len(win.Messages))
	for i, m := range win.Messages {
		history[i] = Turn{Role: string(m.Role), Content: m.Content, Tokens: m.Tokens}
	}
	out.HistoryTokens = win.Tokens

	// 4. The model call.
	answer, err := f.model(ctx, history, req.Prompt)
	if err != nil {
		abort()
		return out, fmt.Errorf("chatflow: model: %w", err)
	}
	out.Answer, out.AnswerTokens = answer, CountTokens(answer)

	// 5. Settle with the actual tokens.
	if err := settle(out.HistoryTokens + promptTokens + out.AnswerTokens); err != nil {
		abort()
		return out, err
	}

	// 6. Fill the cache (a stale token: the model took longer than the
	// fill lease and another request filled; the answer stands).
	if res.Status == cache.Miss {
		val, _ := json.Marshal(cached{Answer: out.Answer, Tokens: out.AnswerTokens})
		if err := f.cache.Set(ctx, key, res.Token, val, c.CacheTTL); err != nil && !errors.Is(err, cache.ErrStaleToken) {
			return out, err
		}
	}

	// 7. Remember the turns.
	return out, f.remember(ctx, sess, req, out)
}

// remember appends the user's and the assistant's turns, with ids.
func (f *PackageFlow) remember(ctx context.Context, sess *contextstore.Session, req Request, out Outcome) error {
	if _, err := sess.Append(ctx, contextstore.Message{ID: req.ID + ":user", Role: contextstore.User,
		Content: req.Prompt, Tokens: CountTokens(req.Prompt)}, contextstore.AppendOptions{}); err != nil {
		return err
	}
	meta := fmt.Sprintf(`{"model":%q,"cache":%q}`, f.cfg.Model, out.Cache)
	_, err := sess.Append(ctx, contextstore.Message{ID: req.ID + ":assistant", Role: contextstore.Assistant,
		Content: out.Answer, Tokens: out.AnswerTokens, Meta: meta}, contextstore.AppendOptions{})
	return err
}
