package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// ThrottleResult is the outcome of Throttle, redis-cell's five values.
type ThrottleResult struct {
	// Limited reports that the request was refused (nothing was charged).
	Limited bool
	// Limit is the bucket's size, max_burst+1.
	Limit int64
	// Remaining is how many units could be taken now.
	Remaining int64
	// RetryAfter is, when limited, the wait before the same request would
	// be allowed; -1 when allowed or when it can never be.
	RetryAfter time.Duration
	// ResetAfter is the wait until the bucket is full again.
	ResetAfter time.Duration
}

// Values returns the result as CL.THROTTLE answers it: limited (0/1),
// limit, remaining, retry after and reset after in whole seconds, rounded
// up when the fraction is at least a millisecond (retry after is -1 when
// allowed or never allowed), exactly as redis-cell.
func (r ThrottleResult) Values() [5]int64 {
	var limited int64
	if r.Limited {
		limited = 1
	}
	return [5]int64{limited, r.Limit, r.Remaining, cellSeconds(r.RetryAfter), cellSeconds(r.ResetAfter)}
}

// cellSeconds rounds as redis-cell: whole seconds, plus one when the
// sub-second part has at least a whole millisecond; negatives are -1.
func cellSeconds(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	s := int64(d / time.Second)
	if (d%time.Second)/time.Millisecond > 0 {
		s++
	}
	return s
}

// Throttle applies quantity units to the bucket key: max_burst+1 units,
// refilled at count units per period seconds (redis-cell's CL.THROTTLE).
// quantity 0 only looks; a negative one is an error; one above the
// bucket's size is limited with RetryAfter -1 (it can never be allowed).
// Bucket parameters are passed on every call, so they can change at will.
func (l *Limiter) Throttle(ctx context.Context, key string, maxBurst, count, period, quantity int64) (ThrottleResult, error) {
	if err := checkID("key", key); err != nil {
		return ThrottleResult{}, err
	}
	if err := checkThrottle(maxBurst, count, period, quantity); err != nil {
		return ThrottleResult{}, err
	}
	periodUS := period * 1_000_000
	limit := maxBurst + 1
	if quantity > limit {
		// Never allowed; the script still reports the bucket's state.
		quantity = limit + 1
	}
	v, err := l.run(ctx, l.throttle, "throttle", []string{l.opts.Prefix + ":{" + key + "}"}, periodUS, count, limit, quantity)
	if err != nil {
		return ThrottleResult{}, err
	}
	vals, _ := v.([]interface{})
	n, err := ints(vals, 0, 5)
	if err != nil {
		return ThrottleResult{}, err
	}
	return ThrottleResult{
		Limited:    n[0] == 1,
		Limit:      n[1],
		Remaining:  n[2],
		RetryAfter: usDuration(n[3]),
		ResetAfter: usDuration(n[4]),
	}, nil
}

func usDuration(us int64) time.Duration {
	if us < 0 {
		return -1
	}
	return time.Duration(us) * time.Microsecond
}

func checkThrottle(maxBurst, count, period, quantity int64) error {
	switch {
	case maxBurst < 0:
		return fmt.Errorf("%w: max_burst %d is negative", ErrInvalid, maxBurst)
	case count <= 0:
		return fmt.Errorf("%w: count per period %d must be positive", ErrInvalid, count)
	case period <= 0:
		return fmt.Errorf("%w: period %d must be a positive number of seconds", ErrInvalid, period)
	case quantity < 0:
		return fmt.Errorf("%w: quantity %d is negative", ErrInvalid, quantity)
	case period > MaxSpanSeconds || maxBurst >= MaxSpanSeconds/period:
		return fmt.Errorf("%w: overflow: (max_burst+1)*period must not exceed %d seconds", ErrInvalid, int64(MaxSpanSeconds))
	case count > period*1_000_000:
		return fmt.Errorf("%w: rate too high: count %d per %d s is more than one per microsecond", ErrInvalid, count, period)
	}
	return nil
}
