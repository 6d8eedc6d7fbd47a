package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Endpoint is the API endpoint of the example's requests, part of the cache
// key.
const Endpoint = "/v1/chat/completions"

// Config is what a gateway knows about a tenant and a conversation before
// a request comes in. Every field must be set (DefaultConfig fills them).
type Config struct {
	// Tenant names the rate-limit tenant, the cache scope (answers are
	// shared within a tenant, not across tenants) and the context tenant.
	Tenant string
	// Session is the conversation id.
	Session string
	// Namespace is the cache namespace.
	Namespace string
	// Model is the model name, part of the cache key.
	Model string
	// RPM, TPM and Concurrency are the tenant's limits.
	RPM, TPM, Concurrency int64
	// HistoryBudget is the most tokens of earlier conversation sent to
	// the model (the CTX.WINDOW budget).
	HistoryBudget int64
	// MaxOutput is the request's max_tokens: the most tokens the answer
	// may have.
	MaxOutput int64
	// CacheWait is how long a request waits for another one that is
	// computing the same answer.
	CacheWait time.Duration
	// CacheTTL is the life of a cached answer.
	CacheTTL time.Duration
}

// DefaultConfig returns the example's settings for tenant and session.
func DefaultConfig(tenant, session string) Config {
	return Config{
		Tenant: tenant, Session: session, Namespace: "chat", Model: "echo-1",
		RPM: 600, TPM: 90000, Concurrency: 8,
		HistoryBudget: 3000, MaxOutput: 500,
		CacheWait: 5 * time.Second, CacheTTL: time.Hour,
	}
}

// Request is one chat request.
type Request struct {
	// ID identifies the request; the conversation's messages get the ids
	// ID+":user" and ID+":assistant", so a retry of the request (same ID)
	// does not store them twice.
	ID string
	// Prompt is the user's message.
	Prompt string
}

// Turn is a message of the conversation as the model sees it.
type Turn struct {
	Role    string
	Content string
	Tokens  int64
}

// Model answers prompt after history. It stands for the call to the model
// server.
type Model func(ctx context.Context, history []Turn, prompt string) (string, error)

// EchoModel is a deterministic fake model: it answers the prompt back. The
// answer depends on the prompt alone, as the cache key does (see README).
func EchoModel(_ context.Context, _ []Turn, prompt string) (string, error) {
	return "You said: " + prompt, nil
}

// ErrModel is the error of FailingModel.
var ErrModel = errors.New("the model server is unavailable")

// FailingModel is a model whose every call fails.
func FailingModel(context.Context, []Turn, string) (string, error) { return "", ErrModel }

// CountTokens is the example's token count: one token per
// whitespace-separated word. A real gateway uses the model's tokenizer (or
// the usage the model server reports).
func CountTokens(s string) int64 { return int64(len(strings.Fields(s))) }

// Estimate is the token estimate charged by the rate limiter before the
// model is called: the prompt, plus the most history and the most output
// the request may use. Settle corrects it with the actual count.
func (c Config) Estimate(prompt string) int64 {
	return CountTokens(prompt) + c.HistoryBudget + c.MaxOutput
}

// Body is the request body the client sent, the input of the cache key.
func (c Config) Body(prompt string) []byte {
	b, _ := json.Marshal(map[string]any{
		"model":      c.Model,
		"max_tokens": c.MaxOutput,
		"messages":   []map[string]string{{"role": "user", "content": prompt}},
	})
	return b
}

// cached is the cached form of an answer.
type cached struct {
	Answer string `json:"answer"`
	Tokens int64  `json:"tokens"`
}

// Outcome is what happened to one request.
type Outcome struct {
	// Answer is the assistant's answer.
	Answer string
	// Cache is "HIT" (answered from the cache), "MISS" (the model was
	// called and the answer cached) or "WAIT" (another request was still
	// computing it after Config.CacheWait: the model was called, nothing
	// cached).
	Cache string
	// Lease is the rate-limit lease of the request.
	Lease string
	// Estimate is the tokens charged at acquire.
	Estimate int64
	// Actual is the tokens settled: history, prompt and answer for a
	// model call, 0 for a cache hit.
	Actual int64
	// Delta is the settle's correction of the estimate (negative: a
	// refund).
	Delta int64
	// HistoryTokens is the tokens of the window sent to the model.
	HistoryTokens int64
	// AnswerTokens is the tokens of the answer.
	AnswerTokens int64
}

// LimitedError is returned when the rate limiter refuses a request: the
// gateway answers 429 with a Retry-After.
type LimitedError struct {
	// RetryAfter is the wait before the request would be allowed, or -1
	// when it can never be (its estimate is above the TPM limit).
	RetryAfter time.Duration
}

// Error implements error.
func (e *LimitedError) Error() string {
	if e.RetryAfter < 0 {
		return "chatflow: rate limited: the request can never fit the limits"
	}
	return fmt.Sprintf("chatflow: rate limited: retry after %v", e.RetryAfter)
}
