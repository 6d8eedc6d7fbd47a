// Package ratelimit is a cluster-wide rate limiter for Redis Cluster: a
// token bucket in GCRA form (the maths of redis-cell), plus an
// all-or-nothing multi-limit call for LLM traffic with leases.
//
// State lives in Redis, so any number of processes (or proxies) enforce one
// limit together. Every call is one Lua script on keys of one slot: the
// package builds the keys with a hash tag made of the caller's key or
// tenant ("rl:{tenant}:rpm", ...), and time comes from the server (TIME),
// never from the caller's clock. It runs on any redis.Scripter: a
// *redis.ClusterClient, a *redis.Client (to a node or to clusterproxy), or
// the proxy's own router.
//
// # Throttle
//
// Throttle is redis-cell's CL.THROTTLE: a bucket of max_burst+1 units
// refilled at count units per period seconds, and the same five results
// (limited, limit, remaining, retry after and reset after, in whole seconds
// rounded up). A quantity of 0 peeks; a quantity above the bucket's size is
// never allowed (limited, retry after -1).
//
// # Acquire, Settle, Release
//
// Acquire checks requests per minute (RPM), tokens per minute (TPM, charged
// with an estimate) and concurrent requests of one tenant together: if any
// limit refuses, none is charged. An allowed call returns a lease id. When
// the model has answered, Settle charges or refunds the difference between
// the actual and estimated tokens, once (a second Settle of the lease
// changes nothing and says so), and frees the concurrency slot; Release
// frees the slot alone (on failure). A lease expires after its TTL, so a
// crashed gateway cannot hold a slot for ever.
//
//	lim, _ := ratelimit.New(clusterClient, ratelimit.Options{})
//	g, err := lim.Acquire(ctx, "tenant-42", ratelimit.Request{
//		Limits: ratelimit.Limits{RPM: 600, TPM: 90000, Concurrency: 8},
//		Tokens: 1200, // estimate: prompt + max_tokens
//	})
//	if err != nil { ... }
//	if !g.Allowed { ... answer 429, Retry-After from g.RetryAfter() ... }
//	used := callModel()
//	_, err = lim.Settle(ctx, "tenant-42", g.Lease, used)
//
// # Limits
//
// Keys and tenants are 1 to MaxKeyLen (512) bytes. Tenant rates (RPM, TPM)
// are 1 to MaxPerMinute (60,000,000), concurrency 1 to MaxConcurrency
// (1,000,000), token counts 0 to MaxTokens (100,000,000). Throttle needs
// max_burst >= 0, count >= 1, period >= 1 s, at most one unit per
// microsecond (count <= period*1e6), and (max_burst+1)*period at most
// MaxSpanSeconds (about 142 years), so that all arithmetic is exact.
package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Documented limits of the arguments.
const (
	// MaxKeyLen is the longest key or tenant accepted, in bytes.
	MaxKeyLen = 512
	// MaxPerMinute is the highest RPM or TPM limit (one unit per µs).
	MaxPerMinute = 60_000_000
	// MaxConcurrency is the highest concurrency limit.
	MaxConcurrency = 1_000_000
	// MaxTokens is the highest token estimate or actual count.
	MaxTokens = 100_000_000
	// MaxSpanSeconds bounds (max_burst+1)*period of a Throttle: 2^52 µs.
	MaxSpanSeconds = (1 << 52) / 1_000_000
	// MaxLeaseTTL is the longest lease TTL.
	MaxLeaseTTL = 24 * time.Hour
)

// Errors. Validation errors wrap ErrInvalid; a key holding another type of
// value gives ErrWrongType; Settle and Release of a lease that is not
// known (never granted, or past its TTL plus the settle grace) give
// ErrUnknownLease.
var (
	ErrInvalid      = errors.New("ratelimit: invalid argument")
	ErrWrongType    = errors.New("ratelimit: wrong type")
	ErrUnknownLease = errors.New("ratelimit: unknown or expired lease")
)

// Options configures a Limiter. Every zero field means the documented
// default.
type Options struct {
	// Prefix starts every key. Default "rl". It must not contain '{' or '}'.
	Prefix string
	// LeaseTTL is the life of a lease when the request does not set one:
	// past it, its concurrency slot is free again. Default 5 minutes.
	LeaseTTL time.Duration
	// SettleGrace is how long after its TTL a lease can still be settled
	// (its record lives LeaseTTL + SettleGrace). Default 15 minutes.
	SettleGrace time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = "rl"
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return o, fmt.Errorf("%w: prefix %q contains a brace", ErrInvalid, o.Prefix)
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 5 * time.Minute
	}
	if o.LeaseTTL > MaxLeaseTTL {
		return o, fmt.Errorf("%w: lease TTL %v above %v", ErrInvalid, o.LeaseTTL, MaxLeaseTTL)
	}
	if o.SettleGrace <= 0 {
		o.SettleGrace = 15 * time.Minute
	}
	if o.SettleGrace > MaxLeaseTTL {
		return o, fmt.Errorf("%w: settle grace %v above %v", ErrInvalid, o.SettleGrace, MaxLeaseTTL)
	}
	return o, nil
}

// Limiter runs the rate-limit scripts on a redis.Scripter. It is safe for
// concurrent use.
type Limiter struct {
	s    redis.Scripter
	opts Options

	throttle, acquire, settle, release, peek, reset *redis.Script
}

// New returns a Limiter on s.
func New(s redis.Scripter, opts Options) (*Limiter, error) {
	if s == nil {
		return nil, errors.New("ratelimit: nil scripter")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Limiter{
		s:        s,
		opts:     opts,
		throttle: redis.NewScript(throttleScript),
		acquire:  redis.NewScript(acquireScript),
		settle:   redis.NewScript(settleScript),
		release:  redis.NewScript(releaseScript),
		peek:     redis.NewScript(peekScript),
		reset:    redis.NewScript(resetScript),
	}, nil
}

// checkID validates a key or tenant.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if len(id) > MaxKeyLen {
		return fmt.Errorf("%w: %s is %d bytes, above the maximum of %d", ErrInvalid, what, len(id), MaxKeyLen)
	}
	return nil
}

// checkTenant checks a tenant id: an id, and no brace, which would end or
// nest the hash tag {tenant} that keeps a tenant's keys in one slot.
func checkTenant(tenant string) error {
	if err := checkID("tenant", tenant); err != nil {
		return err
	}
	if strings.ContainsAny(tenant, "{}") {
		return fmt.Errorf("%w: tenant %q contains a brace ('{' or '}')", ErrInvalid, tenant)
	}
	return nil
}

// tenantKeys are the keys of one tenant, all under the hash tag {tenant}.
type tenantKeys struct{ rpm, tpm, leases, gen string }

func (l *Limiter) tenantKeys(tenant string) tenantKeys {
	base := l.opts.Prefix + ":{" + tenant + "}:"
	return tenantKeys{rpm: base + "rpm", tpm: base + "tpm", leases: base + "leases", gen: base + "gen"}
}

func (l *Limiter) leaseKey(tenant, lease string) string {
	return l.opts.Prefix + ":{" + tenant + "}:lease:" + lease
}

// leaseIDLen is the length of a lease id: 16 random bytes in hex.
const leaseIDLen = 32

func newLeaseID() (string, error) {
	var b [leaseIDLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ratelimit: lease id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func checkLease(lease string) error {
	if len(lease) != leaseIDLen {
		return fmt.Errorf("%w: lease id %q is not %d hex digits", ErrInvalid, clip(lease), leaseIDLen)
	}
	for i := 0; i < len(lease); i++ {
		c := lease[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: lease id %q is not %d hex digits", ErrInvalid, clip(lease), leaseIDLen)
		}
	}
	return nil
}

// clip shortens a caller's value for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// run runs a script and maps a wrong-type reply to ErrWrongType.
func (l *Limiter) run(ctx context.Context, sc *redis.Script, op string, keys []string, args ...interface{}) (interface{}, error) {
	v, err := sc.Run(ctx, l.s, keys, args...).Result()
	if err != nil {
		if msg, ok := strings.CutPrefix(err.Error(), "WRONGTYPE "); ok {
			return nil, fmt.Errorf("%w: %s", ErrWrongType, strings.TrimPrefix(msg, "ratelimit: "))
		}
		return nil, fmt.Errorf("ratelimit: %s: %w", op, err)
	}
	return v, nil
}

// ints reads n integers from a script reply starting at i.
func ints(vals []interface{}, i, n int) ([]int64, error) {
	if len(vals) < i+n {
		return nil, fmt.Errorf("ratelimit: short script reply (%d values)", len(vals))
	}
	out := make([]int64, n)
	for j := range out {
		x, ok := vals[i+j].(int64)
		if !ok {
			return nil, fmt.Errorf("ratelimit: unexpected script reply value %v", vals[i+j])
		}
		out[j] = x
	}
	return out, nil
}
