package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/clusterproxy/clusterproxy/cache"
	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
)

// CacheConfig configures the cache gateway commands. Every zero field
// means the documented default (see package cache).
type CacheConfig struct {
	// FillLease is how long a fill token of CACHE.GET's MISS lasts without
	// activity (each CACHE.APPEND renews it). Default 30s; 100ms..10m.
	FillLease time.Duration
	// DefaultTTL is an entry's TTL when CACHE.SET or CACHE.COMMIT has no
	// TTL. Default 1h; 1s..30 days.
	DefaultTTL time.Duration
	// MaxValueBytes caps a value, and a stream's chunks together. Default
	// 8 MiB; at most 512 MiB.
	MaxValueBytes int
	// MaxChunks caps the chunks of a stream. Default 65536.
	MaxChunks int
	// NoStats turns the per-namespace counters of CACHE.STATS off.
	NoStats bool
}

// maxCacheWait bounds CACHE.GET's WAIT argument; the wait itself is also
// cut short to end before the gateway timeout.
const maxCacheWait = time.Hour

// cacheFamily is the family name in GatewayEvent.
const cacheFamily = "cache"

// cacheCommands builds the cache gateway commands:
//
//	CACHE.KEY <namespace> <endpoint> <model> <scope> <json_body>  → key
//	CACHE.GET <key> [WAIT <ms>]        → [HIT, value | [chunk...]] | [MISS, token] | [WAIT, nil]
//	CACHE.SET <key> <token> <value> [TTL <s>]   → OK
//	CACHE.APPEND <key> <token> <chunk>          → chunks so far
//	CACHE.COMMIT <key> <token> [TTL <s>]        → chunks
//	CACHE.ABORT <key> <token>                   → OK
//	CACHE.DEL <key>                             → 1 if an entry was removed, else 0
//	CACHE.STATS <namespace>                     → map hit, miss, wait, fill, abort
func (s *Server) cacheCommands() ([]gatewayCommand, error) {
	cc := s.cfg.Cache
	c, err := cache.New(s.scripter, cache.Config{
		FillLease:     cc.FillLease,
		DefaultTTL:    cc.DefaultTTL,
		MaxValueBytes: cc.MaxValueBytes,
		MaxChunks:     cc.MaxChunks,
		NoStats:       cc.NoStats,
		Logger:        s.log,
	})
	if err != nil {
		return nil, err
	}
	g := &cacheGateway{c: c, obs: s.obs}
	return []gatewayCommand{
		{command.Spec{Name: "cache.key", Arity: 6, Flags: command.ReadOnly}, g.key},
		{command.Spec{Name: "cache.get", Arity: -2, Flags: command.Write}, g.get},
		{command.Spec{Name: "cache.set", Arity: -4, Flags: command.Write}, g.set},
		{command.Spec{Name: "cache.append", Arity: 4, Flags: command.Write}, g.append},
		{command.Spec{Name: "cache.commit", Arity: -3, Flags: command.Write}, g.commit},
		{command.Spec{Name: "cache.abort", Arity: 3, Flags: command.Write}, g.abort},
		{command.Spec{Name: "cache.del", Arity: 2, Flags: command.Write}, g.del},
		{command.Spec{Name: "cache.stats", Arity: 2, Flags: command.ReadOnly}, g.stats},
	}, nil
}

// cacheGateway answers the cache commands.
type cacheGateway struct {
	c   *cache.Cache
	obs Observer
}

// fail returns the error reply for err and counts it.
func (g *cacheGateway) fail(err error) []byte {
	switch {
	case errors.Is(err, cache.ErrStaleToken):
		g.obs.GatewayEvent(cacheFamily, "stale")
	case errors.Is(err, cache.ErrWrongType):
		g.obs.GatewayEvent(cacheFamily, "error")
		return resp.AppendError(nil, "WRONGTYPE "+err.Error())
	default:
		g.obs.GatewayEvent(cacheFamily, "error")
	}
	return resp.AppendError(nil, "ERR "+err.Error())
}

// cacheSyntaxErr is the reply to a malformed command.
func cacheSyntaxErr(name, msg string) []byte {
	return resp.AppendError(nil, "ERR "+name+": "+msg)
}

// cacheParseTTL parses the optional "TTL <s>" at args[i:].
func cacheParseTTL(name string, args [][]byte, i int) (time.Duration, []byte) {
	switch len(args) - i {
	case 0:
		return 0, nil
	case 2:
		if !strings.EqualFold(string(args[i]), "ttl") {
			break
		}
		n, ok := resp.ParseInt(args[i+1])
		if !ok {
			return 0, cacheSyntaxErr(name, "TTL is not an integer")
		}
		if n < int64(cache.MinTTL/time.Second) || n > int64(cache.MaxTTL/time.Second) {
			return 0, cacheSyntaxErr(name, "TTL "+strconv.FormatInt(n, 10)+"s out of range 1.."+
				strconv.FormatInt(int64(cache.MaxTTL/time.Second), 10))
		}
		return time.Duration(n) * time.Second, nil
	}
	return 0, cacheSyntaxErr(name, "syntax error, expected [TTL <seconds>]")
}

func (g *cacheGateway) key(_ context.Context, args [][]byte, _ int) []byte {
	k, err := cache.Key(string(args[1]), string(args[2]), string(args[3]), string(args[4]), args[5])
	if err != nil {
		return g.fail(err)
	}
	return resp.AppendBulkString(nil, k)
}

func (g *cacheGateway) get(ctx context.Context, args [][]byte, proto int) []byte {
	var wait time.Duration
	switch len(args) {
	case 2:
	case 4:
		if !strings.EqualFold(string(args[2]), "wait") {
			return cacheSyntaxErr("cache.get", "syntax error, expected [WAIT <ms>]")
		}
		ms, ok := resp.ParseInt(args[3])
		if !ok {
			return cacheSyntaxErr("cache.get", "WAIT is not an integer")
		}
		if ms < 0 || ms > maxCacheWait.Milliseconds() {
			return cacheSyntaxErr("cache.get", "WAIT "+strconv.FormatInt(ms, 10)+"ms out of range 0.."+
				strconv.FormatInt(maxCacheWait.Milliseconds(), 10))
		}
		wait = time.Duration(ms) * time.Millisecond
		// End the wait before the gateway timeout, to answer WAIT rather
		// than a timeout error.
		if dl, ok := ctx.Deadline(); ok {
			left := time.Until(dl)
			left -= min(left/10, time.Second)
			wait = max(min(wait, left), 0)
		}
	default:
		return cacheSyntaxErr("cache.get", "syntax error, expected CACHE.GET <key> [WAIT <ms>]")
	}
	r, err := g.c.GetWait(ctx, string(args[1]), wait)
	if err != nil {
		return g.fail(err)
	}
	b := resp.AppendArrayHeader(nil, 2)
	switch r.Status {
	case cache.Hit:
		g.obs.GatewayEvent(cacheFamily, "hit")
		b = resp.AppendBulkString(b, "HIT")
		if !r.Streamed {
			return resp.AppendBulk(b, r.Value)
		}
		b = resp.AppendArrayHeader(b, len(r.Chunks))
		for _, ch := range r.Chunks {
			b = resp.AppendBulk(b, ch)
		}
		return b
	case cache.Miss:
		g.obs.GatewayEvent(cacheFamily, "miss")
		b = resp.AppendBulkString(b, "MISS")
		return resp.AppendBulkString(b, r.Token)
	}
	g.obs.GatewayEvent(cacheFamily, "wait")
	b = resp.AppendBulkString(b, "WAIT")
	return resp.AppendNull(b, proto)
}

func (g *cacheGateway) set(ctx context.Context, args [][]byte, _ int) []byte {
	ttl, bad := cacheParseTTL("cache.set", args, 4)
	if bad != nil {
		return bad
	}
	if err := g.c.Set(ctx, string(args[1]), string(args[2]), args[3], ttl); err != nil {
		return g.fail(err)
	}
	g.obs.GatewayEvent(cacheFamily, "fill")
	return resp.AppendOK(nil)
}

func (g *cacheGateway) append(ctx context.Context, args [][]byte, _ int) []byte {
	n, err := g.c.Append(ctx, string(args[1]), string(args[2]), args[3])
	if err != nil {
		return g.fail(err)
	}
	g.obs.GatewayEvent(cacheFamily, "append")
	return resp.AppendInt(nil, int64(n))
}

func (g *cacheGateway) commit(ctx context.Context, args [][]byte, _ int) []byte {
	ttl, bad := cacheParseTTL("cache.commit", args, 3)
	if bad != nil {
		return bad
	}
	n, err := g.c.Commit(ctx, string(args[1]), string(args[2]), ttl)
	if err != nil {
		return g.fail(err)
	}
	g.obs.GatewayEvent(cacheFamily, "fill")
	return resp.AppendInt(nil, int64(n))
}

func (g *cacheGateway) abort(ctx context.Context, args [][]byte, _ int) []byte {
	if err := g.c.Abort(ctx, string(args[1]), string(args[2])); err != nil {
		return g.fail(err)
	}
	g.obs.GatewayEvent(cacheFamily, "abort")
	return resp.AppendOK(nil)
}

func (g *cacheGateway) del(ctx context.Context, args [][]byte, _ int) []byte {
	had, err := g.c.Del(ctx, string(args[1]))
	if err != nil {
		return g.fail(err)
	}
	g.obs.GatewayEvent(cacheFamily, "del")
	if had {
		return resp.AppendInt(nil, 1)
	}
	return resp.AppendInt(nil, 0)
}

func (g *cacheGateway) stats(ctx context.Context, args [][]byte, proto int) []byte {
	st, err := g.c.Stats(ctx, string(args[1]))
	if err != nil {
		return g.fail(err)
	}
	b := resp.AppendMapHeader(nil, 5, proto)
	for _, kv := range [...]struct {
		k string
		v int64
	}{{"hit", st.Hit}, {"miss", st.Miss}, {"wait", st.Wait}, {"fill", st.Fill}, {"abort", st.Abort}} {
		b = resp.AppendBulkString(b, kv.k)
		b = resp.AppendInt(b, kv.v)
	}
	return b
}
