package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// Limits are the limits of one tenant; a zero field is no such limit.
// Like Throttle's, they are passed on every call and may change at will.
type Limits struct {
	// RPM is the requests allowed per minute (also the burst).
	RPM int64
	// TPM is the tokens allowed per minute (also the burst).
	TPM int64
	// Concurrency is the requests allowed in flight (leases not settled,
	// released or expired).
	Concurrency int64
}

func (lim Limits) check() error {
	if lim.RPM == 0 && lim.TPM == 0 && lim.Concurrency == 0 {
		return fmt.Errorf("%w: no limit given (RPM, TPM or CONCURRENCY)", ErrInvalid)
	}
	for _, c := range []struct {
		name string
		v    int64
		max  int64
	}{{"RPM", lim.RPM, MaxPerMinute}, {"TPM", lim.TPM, MaxPerMinute}, {"CONCURRENCY", lim.Concurrency, MaxConcurrency}} {
		if c.v < 0 {
			return fmt.Errorf("%w: %s %d is negative", ErrInvalid, c.name, c.v)
		}
		if c.v > c.max {
			return fmt.Errorf("%w: %s %d is above the maximum of %d", ErrInvalid, c.name, c.v, c.max)
		}
	}
	return nil
}

// Request is one Acquire.
type Request struct {
	Limits
	// Tokens is the estimated token cost, charged to TPM now and corrected
	// by Settle. 0 to MaxTokens.
	Tokens int64
	// LeaseTTL is the lease's life; past it, its concurrency slot is free.
	// Zero means Options.LeaseTTL; at most MaxLeaseTTL.
	LeaseTTL time.Duration
}

// LimitState is the state of one limit after a call.
type LimitState struct {
	// Name is "rpm", "tpm" or "concurrency".
	Name string
	// Limit is the limit as given.
	Limit int64
	// Remaining is how much of it is left now (requests, tokens or slots).
	Remaining int64
	// Limited reports that this limit refused the request.
	Limited bool
	// Never reports that the request is larger than this limit can ever
	// grant (tokens above TPM).
	Never bool
	// RetryAfter is, when Limited and not Never, the wait before this limit
	// would allow the request (for concurrency: until the earliest lease
	// expires, at the latest); otherwise -1.
	RetryAfter time.Duration
	// ResetAfter is the wait until the limit is fully available again (for
	// concurrency: until the last lease expires, at the latest).
	ResetAfter time.Duration
}

// Grant is the outcome of Acquire.
type Grant struct {
	// Allowed reports that every limit allowed the request and all were
	// charged; when false, none was.
	Allowed bool
	// Lease identifies the grant for Settle and Release; empty when refused.
	Lease string
	// Limits has one state per limit given, in the order rpm, tpm,
	// concurrency.
	Limits []LimitState
}

// RetryAfter is the longest wait among the limits that refused, or -1 when
// allowed or when some limit can never allow the request.
func (g Grant) RetryAfter() time.Duration {
	if g.Allowed {
		return -1
	}
	var d time.Duration = -1
	for _, s := range g.Limits {
		if s.Never {
			return -1
		}
		if s.Limited && s.RetryAfter > d {
			d = s.RetryAfter
		}
	}
	return d
}

// Acquire charges one request to the tenant's limits, all or nothing: RPM
// by one, TPM by req.Tokens, and a concurrency slot held by the returned
// lease until Settle, Release or its TTL. The concurrency slot is taken only
// when a concurrency limit is given.
func (l *Limiter) Acquire(ctx context.Context, tenant string, req Request) (Grant, error) {
	if err := checkTenant(tenant); err != nil {
		return Grant{}, err
	}
	if err := req.check(); err != nil {
		return Grant{}, err
	}
	if req.Tokens < 0 || req.Tokens > MaxTokens {
		return Grant{}, fmt.Errorf("%w: TOKENS %d is not between 0 and %d", ErrInvalid, req.Tokens, MaxTokens)
	}
	ttl := req.LeaseTTL
	if ttl == 0 {
		ttl = l.opts.LeaseTTL
	}
	if ttl < time.Millisecond || ttl > MaxLeaseTTL {
		return Grant{}, fmt.Errorf("%w: lease TTL %v is not between 1ms and %v", ErrInvalid, ttl, MaxLeaseTTL)
	}
	tokens := req.Tokens
	if tokens > req.TPM && req.TPM > 0 {
		tokens = req.TPM + 1 // never allowed; keeps the script's arithmetic small
	}
	lease, err := newLeaseID()
	if err != nil {
		return Grant{}, err
	}
	k := l.tenantKeys(tenant)
	v, err := l.run(ctx, l.acquire, "acquire",
		[]string{k.rpm, k.tpm, k.leases, k.gen, l.leaseKey(tenant, lease)},
		req.RPM, req.TPM, req.Concurrency, tokens, ttl.Milliseconds(), (ttl + l.opts.SettleGrace).Milliseconds(), lease)
	if err != nil {
		return Grant{}, err
	}
	vals, _ := v.([]interface{})
	head, err := ints(vals, 0, 1)
	if err != nil {
		return Grant{}, err
	}
	states, err := limitStates(vals[1:])
	if err != nil {
		return Grant{}, err
	}
	g := Grant{Allowed: head[0] == 1, Limits: states}
	if g.Allowed {
		g.Lease = lease
	}
	return g, nil
}

// limitStates decodes the scripts' per-limit groups of seven values.
func limitStates(vals []interface{}) ([]LimitState, error) {
	if len(vals)%7 != 0 {
		return nil, fmt.Errorf("ratelimit: script reply of %d values is not per-limit groups", len(vals))
	}
	out := make([]LimitState, 0, len(vals)/7)
	for i := 0; i < len(vals); i += 7 {
		name, _ := vals[i].(string)
		n, err := ints(vals, i+1, 6)
		if err != nil {
			return nil, err
		}
		s := LimitState{Name: name, Limit: n[0], Remaining: n[1], Limited: n[2] == 1, Never: n[3] == 1,
			RetryAfter: usDuration(n[4]), ResetAfter: usDuration(n[5])}
		if !s.Limited || s.Never {
			s.RetryAfter = -1
		}
		out = append(out, s)
	}
	return out, nil
}

// SettleResult is the outcome of Settle.
type SettleResult struct {
	// Settled is true when this call settled the lease, false when it had
	// been settled before (and this call changed nothing).
	Settled bool
	// Delta is the tokens charged (positive) or refunded (negative) to TPM
	// by this call: actual minus estimate; 0 when Settled is false.
	Delta int64
	// Tokens is the actual token count recorded for the lease (this call's,
	// or the earlier settle's).
	Tokens int64
}

// Settle records the actual tokens of a lease: it charges or refunds the
// difference from the estimate to the tenant's TPM and frees the lease's
// concurrency slot. It acts once; a repeated Settle changes nothing and
// returns Settled false. A lease unknown, or older than its TTL plus
// Options.SettleGrace, gives ErrUnknownLease. After Reset, the TPM of an
// earlier lease is no longer adjusted.
func (l *Limiter) Settle(ctx context.Context, tenant, lease string, actual int64) (SettleResult, error) {
	if err := checkTenant(tenant); err != nil {
		return SettleResult{}, err
	}
	if err := checkLease(lease); err != nil {
		return SettleResult{}, err
	}
	if actual < 0 || actual > MaxTokens {
		return SettleResult{}, fmt.Errorf("%w: actual tokens %d is not between 0 and %d", ErrInvalid, actual, MaxTokens)
	}
	k := l.tenantKeys(tenant)
	v, err := l.run(ctx, l.settle, "settle", []string{k.tpm, k.leases, k.gen, l.leaseKey(tenant, lease)}, lease, actual)
	if err != nil {
		return SettleResult{}, err
	}
	vals, _ := v.([]interface{})
	n, err := ints(vals, 0, 3)
	if err != nil {
		return SettleResult{}, err
	}
	if n[0] < 0 {
		return SettleResult{}, fmt.Errorf("%w: %s", ErrUnknownLease, lease)
	}
	return SettleResult{Settled: n[0] == 1, Delta: n[1], Tokens: n[2]}, nil
}

// Release frees the lease's concurrency slot without settling its tokens
// (the estimate stays charged; Settle with the actual count refunds it). It
// returns false when the lease had been released (or settled) before.
func (l *Limiter) Release(ctx context.Context, tenant, lease string) (bool, error) {
	if err := checkTenant(tenant); err != nil {
		return false, err
	}
	if err := checkLease(lease); err != nil {
		return false, err
	}
	k := l.tenantKeys(tenant)
	v, err := l.run(ctx, l.release, "release", []string{k.leases, l.leaseKey(tenant, lease)}, lease)
	if err != nil {
		return false, err
	}
	n, _ := v.(int64)
	if n < 0 {
		return false, fmt.Errorf("%w: %s", ErrUnknownLease, lease)
	}
	return n == 1, nil
}

// Peek returns the state of the tenant's limits without changing them.
// Limited means a request costing nothing more would be refused now (TPM in
// debt after Settle, or every concurrency slot taken).
func (l *Limiter) Peek(ctx context.Context, tenant string, lim Limits) ([]LimitState, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if err := lim.check(); err != nil {
		return nil, err
	}
	k := l.tenantKeys(tenant)
	v, err := l.run(ctx, l.peek, "peek", []string{k.rpm, k.tpm, k.leases}, lim.RPM, lim.TPM, lim.Concurrency)
	if err != nil {
		return nil, err
	}
	vals, _ := v.([]interface{})
	return limitStates(vals)
}

// Reset clears the tenant's RPM and TPM usage and frees every lease's
// concurrency slot. Leases granted before stay known (Settle and Release
// answer for them) but no longer change TPM.
func (l *Limiter) Reset(ctx context.Context, tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	k := l.tenantKeys(tenant)
	_, err := l.run(ctx, l.reset, "reset", []string{k.rpm, k.tpm, k.leases, k.gen})
	return err
}
