package proxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/clusterproxy/clusterproxy/router"
	"github.com/redis/go-redis/v9"
)

// routerScripter runs Lua scripts through the router: the shared,
// pipelined node connections, with MOVED/ASK/TRYAGAIN and failover handled
// as for any client command. It implements go-redis's redis.Scripter, so
// the gateway packages (ratelimit, cache, contextstore) run unchanged
// inside the proxy and in a Go service holding a redis.ClusterClient.
//
// Replies are decoded the way go-redis decodes RESP2: integers as int64,
// simple and bulk strings as string, arrays as []interface{}, a nil reply
// as redis.Nil (nil inside an array), and an error reply as an error that
// satisfies redis.Error (a value inside an array).
type routerScripter struct {
	r *router.Router
	// conn spreads the scripter's requests over the node connections.
	conn int
}

var _ redis.Scripter = (*routerScripter)(nil)

// nodeError is an error reply from a node; like go-redis's own, it
// satisfies redis.Error, so redis.HasErrorPrefix and Script.Run's NOSCRIPT
// fallback work on it.
type nodeError string

func (e nodeError) Error() string { return string(e) }

// RedisError marks nodeError as a reply from Redis (the redis.Error
// interface).
func (nodeError) RedisError() {}

// Eval implements redis.Scripter.
func (s *routerScripter) Eval(ctx context.Context, script string, keys []string, args ...interface{}) *redis.Cmd {
	return s.eval(ctx, "eval", script, keys, args, false)
}

// EvalSha implements redis.Scripter.
func (s *routerScripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...interface{}) *redis.Cmd {
	return s.eval(ctx, "evalsha", sha1, keys, args, false)
}

// EvalRO implements redis.Scripter.
func (s *routerScripter) EvalRO(ctx context.Context, script string, keys []string, args ...interface{}) *redis.Cmd {
	return s.eval(ctx, "eval_ro", script, keys, args, true)
}

// EvalShaRO implements redis.Scripter.
func (s *routerScripter) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...interface{}) *redis.Cmd {
	return s.eval(ctx, "evalsha_ro", sha1, keys, args, true)
}

// ScriptExists implements redis.Scripter: a script exists when every master
// has it.
func (s *routerScripter) ScriptExists(ctx context.Context, hashes ...string) *redis.BoolSliceCmd {
	args := make([]interface{}, 0, 2+len(hashes))
	args = append(args, "script", "exists")
	for _, h := range hashes {
		args = append(args, h)
	}
	cmd := redis.NewBoolSliceCmd(ctx, args...)
	out := make([]bool, len(hashes))
	for i := range out {
		out[i] = true
	}
	frame := encodeArgs(args)
	for _, addr := range s.r.Masters() {
		v, err := s.do(ctx, frame, -1, addr, true)
		if err != nil {
			cmd.SetErr(err)
			return cmd
		}
		vals, ok := v.([]interface{})
		if !ok || len(vals) != len(hashes) {
			cmd.SetErr(fmt.Errorf("proxy: script exists: unexpected reply %v", v))
			return cmd
		}
		for i, e := range vals {
			if n, _ := e.(int64); n != 1 {
				out[i] = false
			}
		}
	}
	cmd.SetVal(out)
	return cmd
}

// ScriptLoad implements redis.Scripter: the script is loaded on every
// master, so that EVALSHA finds it whichever master owns the keys.
func (s *routerScripter) ScriptLoad(ctx context.Context, script string) *redis.StringCmd {
	cmd := redis.NewStringCmd(ctx, "script", "load", script)
	frame := encodeArgs([]interface{}{"script", "load", script})
	masters := s.r.Masters()
	if len(masters) == 0 {
		cmd.SetErr(fmt.Errorf("proxy: script load: %w", router.ErrNoTopology))
		return cmd
	}
	for _, addr := range masters {
		v, err := s.do(ctx, frame, -1, addr, false)
		if err != nil {
			cmd.SetErr(err)
			return cmd
		}
		sha, _ := v.(string)
		cmd.SetVal(sha)
	}
	return cmd
}

func (s *routerScripter) eval(ctx context.Context, name, body string, keys []string, args []interface{}, readOnly bool) *redis.Cmd {
	all := make([]interface{}, 0, 3+len(keys)+len(args))
	all = append(all, name, body, len(keys))
	slot := -1
	for _, k := range keys {
		sl := router.Slot([]byte(k))
		if slot >= 0 && sl != slot {
			cmd := redis.NewCmd(ctx, all...)
			cmd.SetErr(nodeError(crossSlot))
			return cmd
		}
		slot = sl
		all = append(all, k)
	}
	all = append(all, args...)
	cmd := redis.NewCmd(ctx, all...)
	v, err := s.do(ctx, encodeArgs(all), slot, "", readOnly)
	if err != nil {
		cmd.SetErr(err)
	} else {
		cmd.SetVal(v)
	}
	return cmd
}

// do sends frame to the master of slot (or to addr) and decodes the reply.
// The router bounds the wait (retry window, read timeout); ctx is checked
// before sending, as the router cannot take back a request once queued.
func (s *routerScripter) do(ctx context.Context, frame []byte, slot int, addr string, readOnly bool) (interface{}, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := router.NewRequest()
	req.Frame = frame
	req.Slot = slot
	req.Addr = addr
	req.Conn = s.conn
	req.Proto = resp.RESP2
	req.Resendable = readOnly
	s.r.Do(req)
	if req.Err != nil {
		return nil, errors.New(string(resp.ErrorText(errorReply(req.Err))))
	}
	return decodeReply(req.Reply, 0)
}

// maxDecodeDepth bounds the nesting decodeReply follows.
const maxDecodeDepth = 32

// decodeReply turns a RESP2 reply frame into go-redis's value shapes; a nil
// reply at the top is redis.Nil, an error reply a nodeError.
func decodeReply(frame []byte, depth int) (interface{}, error) {
	if len(frame) < 3 {
		return nil, fmt.Errorf("proxy: short reply %q", frame)
	}
	switch frame[0] {
	case '-', '!':
		return nil, nodeError(resp.ErrorText(frame))
	case '+':
		return string(frame[1 : len(frame)-2]), nil
	case ':':
		n, ok := resp.IntValue(frame)
		if !ok {
			return nil, fmt.Errorf("proxy: bad integer reply %q", frame)
		}
		return n, nil
	case '_':
		return nil, redis.Nil
	case '#':
		return frame[1] == 't', nil
	case ',':
		f, err := strconv.ParseFloat(string(frame[1:len(frame)-2]), 64)
		if err != nil {
			return nil, fmt.Errorf("proxy: bad double reply %q", frame)
		}
		return f, nil
	case '$', '=':
		if b, ok := resp.BulkValue(frame); ok {
			return string(b), nil
		}
		return nil, redis.Nil // $-1
	case '*', '~', '%', '>':
		if depth >= maxDecodeDepth {
			return nil, errors.New("proxy: reply nested too deeply")
		}
		elems, isNull, err := resp.Elements(frame, nil)
		if err != nil {
			return nil, fmt.Errorf("proxy: bad reply: %w", err)
		}
		if isNull {
			return nil, redis.Nil
		}
		out := make([]interface{}, len(elems))
		for i, e := range elems {
			v, err := decodeReply(e, depth+1)
			switch {
			case err == redis.Nil:
				v = nil
			case err != nil:
				var ne nodeError
				if !errors.As(err, &ne) {
					return nil, err
				}
				v = ne
			}
			out[i] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("proxy: unknown reply type %q", frame[0])
}

// encodeArgs encodes a command the way go-redis writes its arguments, in
// one buffer sized up front: a conversation turn or a cached answer is
// copied once, into the frame.
func encodeArgs(args []interface{}) []byte {
	n := 16
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v) + 16
		case []byte:
			n += len(v) + 16
		default:
			n += 48
		}
	}
	b := resp.AppendArrayHeader(make([]byte, 0, n), len(args))
	for _, a := range args {
		switch v := a.(type) {
		case string:
			b = resp.AppendBulkString(b, v)
		case []byte:
			b = resp.AppendBulk(b, v)
		default:
			var tmp [32]byte
			b = resp.AppendBulk(b, appendArg(tmp[:0], a))
		}
	}
	return b
}

// appendArg appends one argument to dst, formatted as go-redis does.
func appendArg(dst []byte, a interface{}) []byte {
	switch v := a.(type) {
	case nil:
		return dst
	case string:
		return append(dst, v...)
	case []byte:
		return append(dst, v...)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int8:
		return strconv.AppendInt(dst, int64(v), 10)
	case int16:
		return strconv.AppendInt(dst, int64(v), 10)
	case int32:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case float32:
		return strconv.AppendFloat(dst, float64(v), 'f', -1, 32)
	case float64:
		if math.IsInf(v, 1) {
			return append(dst, "+inf"...)
		} else if math.IsInf(v, -1) {
			return append(dst, "-inf"...)
		}
		return strconv.AppendFloat(dst, v, 'f', -1, 64)
	case bool:
		if v {
			return append(dst, '1')
		}
		return append(dst, '0')
	case time.Time:
		return v.AppendFormat(dst, time.RFC3339Nano)
	case time.Duration:
		return strconv.AppendInt(dst, v.Nanoseconds(), 10)
	case fmt.Stringer:
		return append(dst, v.String()...)
	}
	return fmt.Appendf(dst, "%v", a)
}
