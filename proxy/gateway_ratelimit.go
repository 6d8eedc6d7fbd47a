package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/ratelimit"
)

// RateLimitConfig configures the ratelimit gateway commands. Every zero field
// means the documented default.
type RateLimitConfig struct {
	// LeaseTTL is the life of an RL.ACQUIRE lease without LEASE <ms>: past
	// it, its concurrency slot is free again. Default 5 minutes; at most
	// 24 hours.
	LeaseTTL time.Duration
	// SettleGrace is how long after its TTL a lease can still be settled.
	// Default 15 minutes.
	SettleGrace time.Duration
}

// rlFamily is the family name in gateway events.
const rlFamily = "ratelimit"

// rateLimitCommands builds the ratelimit gateway commands:
//
//	CL.THROTTLE <key> <max_burst> <count> <period_s> [<quantity>]
//	RL.ACQUIRE <tenant> [RPM n] [TPM n] [CONCURRENCY n] [TOKENS n] [LEASE ms]
//	RL.SETTLE <tenant> <lease> <actual_tokens>
//	RL.RELEASE <tenant> <lease>
//	RL.PEEK <tenant> [RPM n] [TPM n] [CONCURRENCY n]
//	RL.RESET <tenant>
func (s *Server) rateLimitCommands() ([]gatewayCommand, error) {
	lim, err := ratelimit.New(s.scripter, ratelimit.Options{
		LeaseTTL:    s.cfg.RateLimit.LeaseTTL,
		SettleGrace: s.cfg.RateLimit.SettleGrace,
	})
	if err != nil {
		return nil, err
	}
	h := &rlHandlers{lim: lim, obs: s.obs}
	return []gatewayCommand{
		{command.Spec{Name: "cl.throttle", Arity: -5, Flags: command.Write}, h.throttle},
		{command.Spec{Name: "rl.acquire", Arity: -2, Flags: command.Write}, h.acquire},
		{command.Spec{Name: "rl.settle", Arity: 4, Flags: command.Write}, h.settle},
		{command.Spec{Name: "rl.release", Arity: 3, Flags: command.Write}, h.release},
		{command.Spec{Name: "rl.peek", Arity: -2, Flags: command.ReadOnly}, h.peek},
		{command.Spec{Name: "rl.reset", Arity: 2, Flags: command.Write}, h.reset},
	}, nil
}

type rlHandlers struct {
	lim *ratelimit.Limiter
	obs Observer
}

// rlError turns a ratelimit error into an error reply.
func (h *rlHandlers) rlError(err error) []byte {
	h.obs.GatewayEvent(rlFamily, "error")
	if errors.Is(err, ratelimit.ErrWrongType) {
		return resp.AppendError(nil, "WRONGTYPE "+err.Error())
	}
	return resp.AppendError(nil, "ERR "+err.Error())
}

func argError(msg string) []byte { return resp.AppendError(nil, "ERR "+msg) }

// rlInt parses an integer argument named name.
func rlInt(name string, b []byte) (int64, []byte) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, argError(name + " is not an integer or out of range")
	}
	return n, nil
}

func (h *rlHandlers) throttle(ctx context.Context, args [][]byte, _ int) []byte {
	if len(args) > 6 {
		return argError("wrong number of arguments for 'cl.throttle' command")
	}
	var n [4]int64
	n[3] = 1
	for i, name := range []string{"max_burst", "count per period", "period", "quantity"} {
		if 2+i >= len(args) {
			break
		}
		v, bad := rlInt(name, args[2+i])
		if bad != nil {
			return bad
		}
		n[i] = v
	}
	r, err := h.lim.Throttle(ctx, string(args[1]), n[0], n[1], n[2], n[3])
	if err != nil {
		return h.rlError(err)
	}
	if r.Limited {
		h.obs.GatewayEvent(rlFamily, "limited")
	} else {
		h.obs.GatewayEvent(rlFamily, "allowed")
	}
	v := r.Values()
	out := resp.AppendArrayHeader(make([]byte, 0, 48), 5)
	for _, x := range v {
		out = resp.AppendInt(out, x)
	}
	return out
}

// parseLimits reads [RPM n] [TPM n] [CONCURRENCY n] and, when acquire,
// [TOKENS n] [LEASE ms], in any order.
func parseLimits(cmd string, args [][]byte, acquire bool) (ratelimit.Request, []byte) {
	var req ratelimit.Request
	var leaseMs int64
	for i := 0; i < len(args); i += 2 {
		opt := strings.ToUpper(string(args[i]))
		var dst *int64
		switch opt {
		case "RPM":
			dst = &req.RPM
		case "TPM":
			dst = &req.TPM
		case "CONCURRENCY":
			dst = &req.Concurrency
		case "TOKENS":
			if acquire {
				dst = &req.Tokens
			}
		case "LEASE":
			if acquire {
				dst = &leaseMs
			}
		}
		if dst == nil {
			return req, argError("unknown option '" + clipArg(args[i]) + "' for '" + cmd + "'")
		}
		if i+1 >= len(args) {
			return req, argError(opt + " needs a value")
		}
		v, bad := rlInt(opt, args[i+1])
		if bad != nil {
			return req, bad
		}
		if (opt == "RPM" || opt == "TPM" || opt == "CONCURRENCY") && v <= 0 {
			return req, argError(opt + " must be a positive integer")
		}
		if opt == "LEASE" && (v <= 0 || v > ratelimit.MaxLeaseTTL.Milliseconds()) {
			return req, argError("LEASE must be between 1 and " + strconv.FormatInt(ratelimit.MaxLeaseTTL.Milliseconds(), 10) + " ms")
		}
		*dst = v
	}
	req.LeaseTTL = time.Duration(leaseMs) * time.Millisecond
	return req, nil
}

func clipArg(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

func (h *rlHandlers) acquire(ctx context.Context, args [][]byte, proto int) []byte {
	req, bad := parseLimits("rl.acquire", args[2:], true)
	if bad != nil {
		return bad
	}
	g, err := h.lim.Acquire(ctx, string(args[1]), req)
	if err != nil {
		return h.rlError(err)
	}
	if g.Allowed {
		h.obs.GatewayEvent(rlFamily, "allowed")
	} else {
		h.obs.GatewayEvent(rlFamily, "limited")
	}
	out := resp.AppendMapHeader(make([]byte, 0, 256), 4, proto)
	out = resp.AppendBulkString(out, "allowed")
	if g.Allowed {
		out = resp.AppendInt(out, 1)
	} else {
		out = resp.AppendInt(out, 0)
	}
	out = resp.AppendBulkString(out, "lease")
	if g.Allowed {
		out = resp.AppendBulkString(out, g.Lease)
	} else {
		out = resp.AppendNull(out, proto)
	}
	out = resp.AppendBulkString(out, "limits")
	out = appendLimitStates(out, g.Limits, proto)
	// The wait before the whole request could be allowed: -1 when it is
	// allowed, or when some limit can never allow it.
	out = resp.AppendBulkString(out, "retry_after_ms")
	return resp.AppendInt(out, ceilMs(g.RetryAfter()))
}

// appendLimitStates appends an array of per-limit maps: name, limit,
// remaining, retry_after_ms (-1 when this limit does not refuse, or never
// can allow), reset_after_ms, limited (this limit refuses: 1) and never
// (the request is larger than this limit can ever grant: 1).
func appendLimitStates(out []byte, states []ratelimit.LimitState, proto int) []byte {
	out = resp.AppendArrayHeader(out, len(states))
	for _, st := range states {
		out = resp.AppendMapHeader(out, 7, proto)
		out = resp.AppendBulkString(out, "name")
		out = resp.AppendBulkString(out, st.Name)
		out = resp.AppendBulkString(out, "limit")
		out = resp.AppendInt(out, st.Limit)
		out = resp.AppendBulkString(out, "remaining")
		out = resp.AppendInt(out, st.Remaining)
		out = resp.AppendBulkString(out, "retry_after_ms")
		out = resp.AppendInt(out, ceilMs(st.RetryAfter))
		out = resp.AppendBulkString(out, "reset_after_ms")
		out = resp.AppendInt(out, ceilMs(st.ResetAfter))
		out = resp.AppendBulkString(out, "limited")
		out = resp.AppendInt(out, boolInt(st.Limited))
		out = resp.AppendBulkString(out, "never")
		out = resp.AppendInt(out, boolInt(st.Never))
	}
	return out
}

// ceilMs is d in whole milliseconds rounded up; negative is -1.
func ceilMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func (h *rlHandlers) settle(ctx context.Context, args [][]byte, proto int) []byte {
	actual, bad := rlInt("actual_tokens", args[3])
	if bad != nil {
		return bad
	}
	r, err := h.lim.Settle(ctx, string(args[1]), string(args[2]), actual)
	if err != nil {
		return h.rlError(err)
	}
	if r.Settled {
		h.obs.GatewayEvent(rlFamily, "settled")
	} else {
		h.obs.GatewayEvent(rlFamily, "settle_repeated")
	}
	out := resp.AppendMapHeader(make([]byte, 0, 64), 3, proto)
	out = resp.AppendBulkString(out, "settled")
	if r.Settled {
		out = resp.AppendInt(out, 1)
	} else {
		out = resp.AppendInt(out, 0)
	}
	out = resp.AppendBulkString(out, "delta")
	out = resp.AppendInt(out, r.Delta)
	out = resp.AppendBulkString(out, "tokens")
	return resp.AppendInt(out, r.Tokens)
}

func (h *rlHandlers) release(ctx context.Context, args [][]byte, _ int) []byte {
	ok, err := h.lim.Release(ctx, string(args[1]), string(args[2]))
	if err != nil {
		return h.rlError(err)
	}
	if ok {
		h.obs.GatewayEvent(rlFamily, "released")
		return resp.AppendInt(nil, 1)
	}
	h.obs.GatewayEvent(rlFamily, "release_repeated")
	return resp.AppendInt(nil, 0)
}

func (h *rlHandlers) peek(ctx context.Context, args [][]byte, proto int) []byte {
	req, bad := parseLimits("rl.peek", args[2:], false)
	if bad != nil {
		return bad
	}
	states, err := h.lim.Peek(ctx, string(args[1]), req.Limits)
	if err != nil {
		return h.rlError(err)
	}
	h.obs.GatewayEvent(rlFamily, "peeked")
	return appendLimitStates(nil, states, proto)
}

func (h *rlHandlers) reset(ctx context.Context, args [][]byte, _ int) []byte {
	if err := h.lim.Reset(ctx, string(args[1])); err != nil {
		return h.rlError(err)
	}
	h.obs.GatewayEvent(rlFamily, "reset")
	return resp.AppendOK(nil)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
