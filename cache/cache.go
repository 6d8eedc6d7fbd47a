package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits and defaults of Config and of the TTL given to Set and Commit.
const (
	// DefaultFillLease is the default Config.FillLease.
	DefaultFillLease = 30 * time.Second
	// MinFillLease and MaxFillLease bound Config.FillLease.
	MinFillLease = 100 * time.Millisecond
	MaxFillLease = 10 * time.Minute
	// DefaultTTL is the default Config.DefaultTTL.
	DefaultTTL = time.Hour
	// MinTTL and MaxTTL bound an entry's TTL (and Config.DefaultTTL).
	MinTTL = time.Second
	MaxTTL = 30 * 24 * time.Hour
	// DefaultMaxValueBytes is the default Config.MaxValueBytes: 8 MiB.
	DefaultMaxValueBytes = 8 << 20
	// MaxMaxValueBytes bounds Config.MaxValueBytes: 512 MiB, Redis's
	// largest string.
	MaxMaxValueBytes = 512 << 20
	// DefaultMaxChunks is the default Config.MaxChunks.
	DefaultMaxChunks = 65536
	// MaxMaxChunks bounds Config.MaxChunks.
	MaxMaxChunks = 1 << 20
)

// GetWait polls with a backoff from pollMin to pollMax.
const (
	pollMin = 5 * time.Millisecond
	pollMax = 200 * time.Millisecond
)

// Config configures a Cache. Every zero field means the documented
// default.
type Config struct {
	// FillLease is how long a fill token stays valid without activity
	// (each Append renews it). When it ends unfilled, the next Get grants a
	// new token. Default 30s; range 100ms..10m.
	FillLease time.Duration
	// DefaultTTL is an entry's TTL when Set or Commit is given 0. Default
	// 1h; range MinTTL..MaxTTL (1s..30 days).
	DefaultTTL time.Duration
	// MaxValueBytes caps a value, and the chunks of one stream together.
	// Default 8 MiB; at most 512 MiB.
	MaxValueBytes int
	// MaxChunks caps the chunks of one stream. Default 65536; at most
	// 1,048,576.
	MaxChunks int
	// NoStats turns the per-namespace counters off (one script call less
	// per Get, Set, Commit and Abort).
	NoStats bool
	// Logger receives the failures of counting (never the cache's own
	// errors, which are returned). Default slog.Default().
	Logger *slog.Logger
}

// Cache is a response cache in a Redis Cluster. It is safe for concurrent
// use.
type Cache struct {
	s   redis.Scripter
	cfg Config
}

// New returns a Cache running its scripts on s, or an error when a Config
// field is out of its documented range.
func New(s redis.Scripter, cfg Config) (*Cache, error) {
	if s == nil {
		return nil, errors.New("cache: new: nil scripter")
	}
	if cfg.FillLease == 0 {
		cfg.FillLease = DefaultFillLease
	}
	if cfg.FillLease < MinFillLease || cfg.FillLease > MaxFillLease {
		return nil, fmt.Errorf("cache: new: %w: fill lease %v outside [%v, %v]", ErrBadArgument, cfg.FillLease, MinFillLease, MaxFillLease)
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.DefaultTTL < MinTTL || cfg.DefaultTTL > MaxTTL {
		return nil, fmt.Errorf("cache: new: %w: default TTL %v outside [%v, %v]", ErrBadTTL, cfg.DefaultTTL, MinTTL, MaxTTL)
	}
	if cfg.MaxValueBytes == 0 {
		cfg.MaxValueBytes = DefaultMaxValueBytes
	}
	if cfg.MaxValueBytes < 1 || cfg.MaxValueBytes > MaxMaxValueBytes {
		return nil, fmt.Errorf("cache: new: %w: max value bytes %d outside [1, %d]", ErrBadArgument, cfg.MaxValueBytes, MaxMaxValueBytes)
	}
	if cfg.MaxChunks == 0 {
		cfg.MaxChunks = DefaultMaxChunks
	}
	if cfg.MaxChunks < 1 || cfg.MaxChunks > MaxMaxChunks {
		return nil, fmt.Errorf("cache: new: %w: max chunks %d outside [1, %d]", ErrBadArgument, cfg.MaxChunks, MaxMaxChunks)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Cache{s: s, cfg: cfg}, nil
}

// Config returns the cache's configuration, defaults filled in.
func (c *Cache) Config() Config { return c.cfg }

// Status is the outcome of a Get.
type Status int

// The outcomes of a Get.
const (
	// Hit: the entry is there (Result.Value, or Result.Chunks when
	// Result.Streamed).
	Hit Status = iota + 1
	// Miss: the entry is not there and this caller holds the fill token
	// (Result.Token): it must Set, stream (Append, Commit) or Abort.
	Miss
	// Wait: another caller is filling the entry.
	Wait
)

// String returns "HIT", "MISS" or "WAIT".
func (s Status) String() string {
	switch s {
	case Hit:
		return "HIT"
	case Miss:
		return "MISS"
	case Wait:
		return "WAIT"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is what Get found.
type Result struct {
	Status Status
	// Value is the value of a Hit on an entry stored with Set.
	Value []byte
	// Streamed tells a Hit on an entry stored with Append and Commit;
	// Chunks are its chunks in order.
	Streamed bool
	Chunks   [][]byte
	// Token is the fill token of a Miss.
	Token string
	// LeaseLeft is, for a Wait, how long the current fill lease has left.
	LeaseLeft time.Duration
}

// keys returns the entry's keys after checking it, and its namespace.
func keys(key string) ([]string, string, error) {
	ns, err := Namespace(key)
	if err != nil {
		return nil, "", err
	}
	return []string{key, key + ":lock", key + ":part"}, ns, nil
}

// newToken returns a fresh fill token: 16 random bytes in hex.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// checkToken validates a token's form.
func checkToken(tok string) error {
	if len(tok) != 32 {
		return fmt.Errorf("%w: want 32 hex digits, got %d bytes", ErrBadToken, len(tok))
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: want 32 lower-case hex digits", ErrBadToken)
		}
	}
	return nil
}

// ttlMillis validates a TTL (0 = DefaultTTL) and returns it in ms.
func (c *Cache) ttlMillis(ttl time.Duration) (int64, error) {
	if ttl == 0 {
		ttl = c.cfg.DefaultTTL
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return 0, fmt.Errorf("%w: %v outside [%v, %v]", ErrBadTTL, ttl, MinTTL, MaxTTL)
	}
	return ttl.Milliseconds(), nil
}

// scriptError maps a script's error reply to the package's errors.
func scriptError(err error) error {
	var re redis.Error
	if !errors.As(err, &re) {
		return err
	}
	msg := err.Error()
	code, _, _ := strings.Cut(msg, " ")
	switch code {
	case "STALETOKEN":
		return ErrStaleToken
	case "TOOLARGE":
		return ErrTooLarge
	case "TOOMANY":
		return ErrTooManyChunks
	case "LOST":
		return ErrStreamLost
	case "WRONGTYPE":
		return fmt.Errorf("%w: %s", ErrWrongType, strings.TrimPrefix(msg, "WRONGTYPE cache: "))
	}
	return err
}

// count adds one to a namespace counter, best effort.
func (c *Cache) count(ctx context.Context, ns, field string) {
	if c.cfg.NoStats {
		return
	}
	if err := statsIncrScript.Run(ctx, c.s, []string{statsKey(ns)}, field).Err(); err != nil {
		c.cfg.Logger.Warn("cache: counting failed", "namespace", ns, "counter", field, "err", err)
	}
}

// Get looks key up (a key from Key). It answers Hit with the entry, Miss
// with a fill token for this caller alone, or Wait when another caller
// holds the fill lease. Exactly one of any number of concurrent Gets of a
// missing key gets Miss.
func (c *Cache) Get(ctx context.Context, key string) (Result, error) {
	ks, ns, err := keys(key)
	if err != nil {
		return Result{}, fmt.Errorf("cache: get: %w", err)
	}
	res, err := c.get(ctx, ks)
	if err != nil {
		return Result{}, fmt.Errorf("cache: get: %w", err)
	}
	c.count(ctx, ns, counterOf(res.Status))
	return res, nil
}

// GetWait is Get that, finding another caller filling the entry, waits up
// to wait (and no longer than ctx allows) for the fill: it then answers
// Hit, or Miss with a fresh token when the lease ended unfilled (or was
// aborted) and this caller won it, or Wait when wait passed first. It polls
// with a backoff from 5ms to 200ms. wait 0 is Get.
func (c *Cache) GetWait(ctx context.Context, key string, wait time.Duration) (Result, error) {
	if wait < 0 {
		return Result{}, fmt.Errorf("cache: get: %w: negative wait %v", ErrBadArgument, wait)
	}
	ks, ns, err := keys(key)
	if err != nil {
		return Result{}, fmt.Errorf("cache: get: %w", err)
	}
	res, err := c.get(ctx, ks)
	if err != nil {
		return Result{}, fmt.Errorf("cache: get: %w", err)
	}
	if res.Status == Wait {
		c.count(ctx, ns, "wait")
		if wait == 0 {
			return res, nil
		}
		deadline := time.Now().Add(wait)
		pause := pollMin
		t := time.NewTimer(0)
		defer t.Stop()
		for res.Status == Wait {
			left := time.Until(deadline)
			if left <= 0 {
				return res, nil
			}
			t.Reset(min(pause, left))
			select {
			case <-ctx.Done():
				return Result{}, fmt.Errorf("cache: get: waiting for the fill: %w", ctx.Err())
			case <-t.C:
			}
			pause = min(pause*2, pollMax)
			if res, err = c.get(ctx, ks); err != nil {
				return Result{}, fmt.Errorf("cache: get: %w", err)
			}
		}
	}
	c.count(ctx, ns, counterOf(res.Status))
	return res, nil
}

func counterOf(s Status) string {
	switch s {
	case Hit:
		return "hit"
	case Miss:
		return "miss"
	}
	return "wait"
}

// get runs the get script once.
func (c *Cache) get(ctx context.Context, ks []string) (Result, error) {
	v, err := getScript.Run(ctx, c.s, ks, newToken(), c.cfg.FillLease.Milliseconds()).Result()
	if err != nil {
		return Result{}, scriptError(err)
	}
	arr, ok := v.([]interface{})
	if !ok || len(arr) != 2 {
		return Result{}, fmt.Errorf("unexpected reply %T", v)
	}
	status, _ := arr[0].(string)
	switch status {
	case "HIT":
		items, ok := arr[1].([]interface{})
		if !ok || len(items) == 0 {
			return Result{}, fmt.Errorf("unexpected entry %T", arr[1])
		}
		kind, _ := items[0].(string)
		vals := make([][]byte, len(items)-1)
		for i, it := range items[1:] {
			s, ok := it.(string)
			if !ok {
				return Result{}, fmt.Errorf("unexpected entry item %T", it)
			}
			vals[i] = []byte(s)
		}
		switch {
		case kind == "v" && len(vals) == 1:
			return Result{Status: Hit, Value: vals[0]}, nil
		case kind == "s":
			return Result{Status: Hit, Streamed: true, Chunks: vals}, nil
		}
		return Result{}, fmt.Errorf("%w: entry %s is not a cache entry", ErrWrongType, ks[0])
	case "MISS":
		tok, _ := arr[1].(string)
		return Result{Status: Miss, Token: tok}, nil
	case "WAIT":
		ms, _ := arr[1].(int64)
		return Result{Status: Wait, LeaseLeft: time.Duration(max(ms, 0)) * time.Millisecond}, nil
	}
	return Result{}, fmt.Errorf("unexpected status %v", arr[0])
}

// Set stores value under key with the fill token of a Miss, for ttl (0 =
// Config.DefaultTTL; else 1s..30 days, at ms precision), and ends the fill
// lease, so waiters get it. A value over Config.MaxValueBytes gives
// ErrTooLarge (before anything is sent); a token that is not the current
// one ErrStaleToken.
func (c *Cache) Set(ctx context.Context, key, token string, value []byte, ttl time.Duration) error {
	ks, ns, err := keys(key)
	if err != nil {
		return fmt.Errorf("cache: set: %w", err)
	}
	if err := checkToken(token); err != nil {
		return fmt.Errorf("cache: set: %w", err)
	}
	ms, err := c.ttlMillis(ttl)
	if err != nil {
		return fmt.Errorf("cache: set: %w", err)
	}
	if len(value) > c.cfg.MaxValueBytes {
		return fmt.Errorf("cache: set: %w: %d bytes, more than %d", ErrTooLarge, len(value), c.cfg.MaxValueBytes)
	}
	if value == nil {
		value = []byte{}
	}
	if err := setScript.Run(ctx, c.s, ks, token, value, ms, c.cfg.MaxValueBytes).Err(); err != nil {
		return fmt.Errorf("cache: set: %w", scriptError(err))
	}
	c.count(ctx, ns, "fill")
	return nil
}

// Append adds a chunk to the stream being written under key with the fill
// token of a Miss, renews the fill lease, and returns the number of chunks
// so far. The stream stays invisible until Commit. Chunks together over
// Config.MaxValueBytes give ErrTooLarge, more than Config.MaxChunks
// ErrTooManyChunks; the stream is then left as it was (Abort it).
func (c *Cache) Append(ctx context.Context, key, token string, chunk []byte) (int, error) {
	ks, _, err := keys(key)
	if err != nil {
		return 0, fmt.Errorf("cache: append: %w", err)
	}
	if err := checkToken(token); err != nil {
		return 0, fmt.Errorf("cache: append: %w", err)
	}
	if len(chunk) > c.cfg.MaxValueBytes {
		return 0, fmt.Errorf("cache: append: %w: chunk of %d bytes, more than %d", ErrTooLarge, len(chunk), c.cfg.MaxValueBytes)
	}
	if chunk == nil {
		chunk = []byte{}
	}
	n, err := appendScript.Run(ctx, c.s, ks, token, chunk, c.cfg.FillLease.Milliseconds(), c.cfg.MaxValueBytes, c.cfg.MaxChunks).Int64()
	if err != nil {
		return 0, fmt.Errorf("cache: append: %w", scriptError(err))
	}
	return int(n), nil
}

// Commit publishes the stream written under key with Append, atomically,
// for ttl (as for Set), ends the fill lease and returns the number of
// chunks. A commit with no chunk appended publishes an empty stream.
func (c *Cache) Commit(ctx context.Context, key, token string, ttl time.Duration) (int, error) {
	ks, ns, err := keys(key)
	if err != nil {
		return 0, fmt.Errorf("cache: commit: %w", err)
	}
	if err := checkToken(token); err != nil {
		return 0, fmt.Errorf("cache: commit: %w", err)
	}
	ms, err := c.ttlMillis(ttl)
	if err != nil {
		return 0, fmt.Errorf("cache: commit: %w", err)
	}
	n, err := commitScript.Run(ctx, c.s, ks, token, ms).Int64()
	if err != nil {
		return 0, fmt.Errorf("cache: commit: %w", scriptError(err))
	}
	c.count(ctx, ns, "fill")
	return int(n), nil
}

// Abort drops the stream being written under key and ends the fill lease
// at once, so that the next Get (a waiter's included) grants a new token.
// Use it too when the model call behind a Miss fails.
func (c *Cache) Abort(ctx context.Context, key, token string) error {
	ks, ns, err := keys(key)
	if err != nil {
		return fmt.Errorf("cache: abort: %w", err)
	}
	if err := checkToken(token); err != nil {
		return fmt.Errorf("cache: abort: %w", err)
	}
	if err := abortScript.Run(ctx, c.s, ks, token).Err(); err != nil {
		return fmt.Errorf("cache: abort: %w", scriptError(err))
	}
	c.count(ctx, ns, "abort")
	return nil
}

// Del removes the entry under key, and any fill in progress (its token
// becomes stale), and tells whether an entry was there.
func (c *Cache) Del(ctx context.Context, key string) (bool, error) {
	ks, _, err := keys(key)
	if err != nil {
		return false, fmt.Errorf("cache: del: %w", err)
	}
	n, err := delScript.Run(ctx, c.s, ks).Int64()
	if err != nil {
		return false, fmt.Errorf("cache: del: %w", scriptError(err))
	}
	return n == 1, nil
}

// Stats are a namespace's counters, since the namespace was first used.
type Stats struct {
	// Hit, Miss and Wait count Get outcomes (a GetWait that waited and
	// then hit counts one wait and one hit).
	Hit, Miss, Wait int64
	// Fill counts Set and Commit, Abort aborted fills.
	Fill, Abort int64
}

// Stats returns the counters of a namespace.
func (c *Cache) Stats(ctx context.Context, namespace string) (Stats, error) {
	if err := checkNamespace(namespace); err != nil {
		return Stats{}, fmt.Errorf("cache: stats: %w", err)
	}
	v, err := statsScript.Run(ctx, c.s, []string{statsKey(namespace)}, "hit", "miss", "wait", "fill", "abort").Result()
	if err != nil {
		return Stats{}, fmt.Errorf("cache: stats: %w", scriptError(err))
	}
	arr, ok := v.([]interface{})
	if !ok || len(arr) != 5 {
		return Stats{}, fmt.Errorf("cache: stats: unexpected reply %T", v)
	}
	var n [5]int64
	for i, e := range arr {
		switch x := e.(type) {
		case nil:
		case string:
			v, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return Stats{}, fmt.Errorf("cache: stats: bad counter %q", x)
			}
			n[i] = v
		default:
			return Stats{}, fmt.Errorf("cache: stats: unexpected counter %T", e)
		}
	}
	return Stats{Hit: n[0], Miss: n[1], Wait: n[2], Fill: n[3], Abort: n[4]}, nil
}
