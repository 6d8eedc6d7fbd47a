package contextstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hard limits on the ids that name a session and a message.
const (
	// MaxTenantLen is the longest tenant id, in bytes.
	MaxTenantLen = 128
	// MaxSessionLen is the longest session id, in bytes.
	MaxSessionLen = 256
	// MaxIDLen is the longest message id, in bytes.
	MaxIDLen = 128
	// MaxPrefixLen is the longest key prefix (Options.Prefix), in bytes.
	MaxPrefixLen = 64
)

// Defaults and ceilings of Options. A zero field of Options means its
// default; a value above its ceiling is refused by New.
const (
	DefaultPrefix          = "gwx:ctx:"
	DefaultMaxMessages     = 1000
	CeilingMaxMessages     = 1_000_000
	DefaultMaxTokens       = 1_000_000
	CeilingMaxTokens       = 1 << 40
	DefaultMaxContentBytes = 256 << 10
	CeilingMaxContentBytes = 64 << 20
	DefaultMaxMetaBytes    = 16 << 10
	CeilingMaxMetaBytes    = 1 << 20
	DefaultMaxIDs          = 1024
	CeilingMaxIDs          = 100_000
	DefaultTTL             = 24 * time.Hour
	DefaultMaxTTL          = 30 * 24 * time.Hour
	CeilingMaxTTL          = 366 * 24 * time.Hour
	// MinTTL is the shortest TTL a session can be given.
	MinTTL = time.Second
)

// Options configures a Store. Every zero field means its documented
// default.
type Options struct {
	// Prefix starts every key (default "gwx:ctx:"); at most MaxPrefixLen
	// bytes, without braces.
	Prefix string
	// MaxMessages is the default and the largest message count cap of a
	// session (default 1000, at most 1,000,000). Append trims the oldest
	// messages beyond it; AppendOptions.MaxMessages may lower it per call.
	MaxMessages int64
	// MaxTokens is the default and the largest token cap of a session's
	// messages (default 1,000,000, at most 2^40); the pinned prompt and
	// one message may not exceed it either. AppendOptions.MaxTokens may
	// lower it per call.
	MaxTokens int64
	// MaxContentBytes bounds a message's (or the pinned prompt's) content
	// (default 256 KiB, at most 64 MiB).
	MaxContentBytes int
	// MaxMetaBytes bounds a message's metadata JSON (default 16 KiB, at
	// most 1 MiB).
	MaxMetaBytes int
	// MaxIDs is how many of the most recent message ids a session keeps for
	// idempotent appends (default 1024, at most 100,000).
	MaxIDs int64
	// DefaultTTL is the TTL of a session that was never given one (default
	// 24h, or MaxTTL if shorter); at least MinTTL, at most MaxTTL.
	DefaultTTL time.Duration
	// MaxTTL is the longest TTL a call may give (default 30 days, at most
	// 366 days).
	MaxTTL time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if len(o.Prefix) > MaxPrefixLen || strings.ContainsAny(o.Prefix, "{}") {
		return o, argErr(fmt.Sprintf("prefix %q is longer than %d bytes or contains a brace", o.Prefix, MaxPrefixLen))
	}
	var err error
	def := func(v *int64, d, ceil int64, name string) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0 || *v > ceil:
			if err == nil {
				err = argErr(fmt.Sprintf("%s %d is out of range [1, %d]", name, *v, ceil))
			}
		}
	}
	def(&o.MaxMessages, DefaultMaxMessages, CeilingMaxMessages, "MaxMessages")
	def(&o.MaxTokens, DefaultMaxTokens, CeilingMaxTokens, "MaxTokens")
	def(&o.MaxIDs, DefaultMaxIDs, CeilingMaxIDs, "MaxIDs")
	content, meta := int64(o.MaxContentBytes), int64(o.MaxMetaBytes)
	def(&content, DefaultMaxContentBytes, CeilingMaxContentBytes, "MaxContentBytes")
	def(&meta, DefaultMaxMetaBytes, CeilingMaxMetaBytes, "MaxMetaBytes")
	o.MaxContentBytes, o.MaxMetaBytes = int(content), int(meta)
	maxTTL, defTTL := int64(o.MaxTTL), int64(o.DefaultTTL)
	def(&maxTTL, int64(DefaultMaxTTL), int64(CeilingMaxTTL), "MaxTTL")
	def(&defTTL, min(int64(DefaultTTL), maxTTL), int64(CeilingMaxTTL), "DefaultTTL")
	o.MaxTTL, o.DefaultTTL = time.Duration(maxTTL), time.Duration(defTTL)
	if err != nil {
		return o, err
	}
	if o.MaxTTL < MinTTL || o.DefaultTTL < MinTTL || o.DefaultTTL > o.MaxTTL {
		return o, argErr(fmt.Sprintf("TTLs out of range: DefaultTTL %v and MaxTTL %v must be at least %v, DefaultTTL at most MaxTTL", o.DefaultTTL, o.MaxTTL, MinTTL))
	}
	return o, nil
}

// Store keeps conversation contexts in Redis. It is safe for concurrent
// use; it holds no state besides its configuration.
type Store struct {
	rdb redis.Scripter
	opt Options
}

// New returns a Store running its scripts on rdb. It fails when an option
// is out of range.
func New(rdb redis.Scripter, opt Options) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("contextstore: nil redis.Scripter")
	}
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Store{rdb: rdb, opt: o}, nil
}

// Options returns the store's options, defaults filled in.
func (s *Store) Options() Options { return s.opt }

// Session is one conversation: a tenant and a session id. Build it with
// Store.Session; it is cheap and safe for concurrent use.
type Session struct {
	s    *Store
	keys []string // m, t, h, i
}

// Session returns the session of tenant with id session. Both must be
// non-empty, without braces, and at most MaxTenantLen and MaxSessionLen
// bytes long.
func (s *Store) Session(tenant, session string) (*Session, error) {
	if err := checkName("tenant", tenant, MaxTenantLen); err != nil {
		return nil, err
	}
	if err := checkName("session", session, MaxSessionLen); err != nil {
		return nil, err
	}
	base := s.opt.Prefix + "{" + strconv.Itoa(len(tenant)) + ":" + tenant + ":" + session + "}:"
	return &Session{s: s, keys: []string{base + "m", base + "t", base + "h", base + "i"}}, nil
}

func checkName(what, v string, max int) error {
	switch {
	case v == "":
		return argErr(what + " id is empty")
	case len(v) > max:
		return argErr(fmt.Sprintf("%s id is %d bytes, longer than %d", what, len(v), max))
	case strings.ContainsAny(v, "{}"):
		return argErr(fmt.Sprintf("%s id %q contains a brace", what, v))
	}
	return nil
}

// Keys returns the session's Redis keys (messages, token counts, hash,
// recent ids), all in one hash slot.
func (se *Session) Keys() []string { return append([]string(nil), se.keys...) }

// Role is the author of a message.
type Role string

// The roles of a message.
const (
	System    Role = "system"
	User      Role = "user"
	Assistant Role = "assistant"
	Tool      Role = "tool"
)

func roleCode(r Role) (byte, bool) {
	switch r {
	case System:
		return 's', true
	case User:
		return 'u', true
	case Assistant:
		return 'a', true
	case Tool:
		return 't', true
	}
	return 0, false
}

func roleOf(c byte) (Role, bool) {
	switch c {
	case 's':
		return System, true
	case 'u':
		return User, true
	case 'a':
		return Assistant, true
	case 't':
		return Tool, true
	}
	return "", false
}

// ParseRole returns the Role named s (system, user, assistant or tool).
func ParseRole(s string) (Role, error) {
	if _, ok := roleCode(Role(s)); !ok {
		return "", argErr(fmt.Sprintf("role %q is not one of system, user, assistant, tool", s))
	}
	return Role(s), nil
}

// Message is one message of a conversation.
type Message struct {
	// Seq is the message's sequence number in its session, assigned by
	// Append (1, 2, ...; never reused until Clear); 0 for the pinned
	// prompt. Ignored by Append.
	Seq int64
	// ID optionally names the message for idempotent retries (at most
	// MaxIDLen bytes); "" for none.
	ID string
	// Role is who wrote it.
	Role Role
	// Content is the text (may be empty, e.g. an assistant tool call
	// carried in Meta).
	Content string
	// Tokens is the message's size in the model's tokens, as counted by
	// the caller; at least 0.
	Tokens int64
	// Meta is optional metadata, a JSON text; "" for none.
	Meta string
	// Pinned is set on the pinned system prompt in a Window.
	Pinned bool
}

// AppendOptions are the per-call settings of Append. Zero fields mean the
// store's (or the session's) setting.
type AppendOptions struct {
	// MaxMessages caps the session's message count for this call (at most
	// Options.MaxMessages, the default).
	MaxMessages int64
	// MaxTokens caps the session's total message tokens for this call (at
	// most Options.MaxTokens, the default).
	MaxTokens int64
	// TTL sets the session's TTL (from MinTTL to Options.MaxTTL), kept for
	// later writes that give none; zero keeps the session's TTL
	// (Options.DefaultTTL for a session never given one).
	TTL time.Duration
}

// AppendResult is the outcome of Append.
type AppendResult struct {
	// Len is the session's message count after the call (the pinned
	// prompt not counted).
	Len int64
	// Tokens is the session's total message tokens after the call.
	Tokens int64
	// Trimmed is how many of the oldest messages the caps removed.
	Trimmed int64
	// Duplicate is set when the message's ID was already among the
	// session's recent ids: nothing was stored.
	Duplicate bool
}

func (s *Store) checkTTL(ttl time.Duration) (int64, error) {
	if ttl == 0 {
		return 0, nil
	}
	if ttl < MinTTL || ttl > s.opt.MaxTTL {
		return 0, argErr(fmt.Sprintf("TTL %v is out of range [%v, %v]", ttl, MinTTL, s.opt.MaxTTL))
	}
	return ttl.Milliseconds(), nil
}

func (s *Store) checkTokens(what string, n, max int64) error {
	if n < 0 {
		return argErr(fmt.Sprintf("%s tokens %d is negative", what, n))
	}
	if n > max {
		return argErr(fmt.Sprintf("%s needs %d tokens, more than the token cap %d", what, n, max))
	}
	return nil
}

func (s *Store) checkContent(what, content string) error {
	if len(content) > s.opt.MaxContentBytes {
		return argErr(fmt.Sprintf("%s content is %d bytes, more than the limit %d", what, len(content), s.opt.MaxContentBytes))
	}
	return nil
}

// Append adds m at the end of the session and trims the oldest messages
// beyond the caps, in one atomic script; it sets the session's TTL again.
// With m.ID among the session's recent ids, nothing is stored and the
// result has Duplicate set.
func (se *Session) Append(ctx context.Context, m Message, o AppendOptions) (AppendResult, error) {
	s := se.s
	rc, ok := roleCode(m.Role)
	if !ok {
		return AppendResult{}, argErr(fmt.Sprintf("role %q is not one of system, user, assistant, tool", m.Role))
	}
	maxMsgs, maxTok := s.opt.MaxMessages, s.opt.MaxTokens
	if o.MaxMessages != 0 {
		if o.MaxMessages < 0 || o.MaxMessages > maxMsgs {
			return AppendResult{}, argErr(fmt.Sprintf("message cap %d is out of range [1, %d]", o.MaxMessages, maxMsgs))
		}
		maxMsgs = o.MaxMessages
	}
	if o.MaxTokens != 0 {
		if o.MaxTokens < 0 || o.MaxTokens > maxTok {
			return AppendResult{}, argErr(fmt.Sprintf("token cap %d is out of range [1, %d]", o.MaxTokens, maxTok))
		}
		maxTok = o.MaxTokens
	}
	if err := s.checkTokens("message", m.Tokens, maxTok); err != nil {
		return AppendResult{}, err
	}
	if err := s.checkContent("message", m.Content); err != nil {
		return AppendResult{}, err
	}
	if len(m.ID) > MaxIDLen {
		return AppendResult{}, argErr(fmt.Sprintf("message id is %d bytes, longer than %d", len(m.ID), MaxIDLen))
	}
	if m.Meta != "" {
		if len(m.Meta) > s.opt.MaxMetaBytes {
			return AppendResult{}, argErr(fmt.Sprintf("metadata is %d bytes, more than the limit %d", len(m.Meta), s.opt.MaxMetaBytes))
		}
		if !json.Valid([]byte(m.Meta)) {
			return AppendResult{}, argErr("metadata is not valid JSON")
		}
	}
	ttl, err := s.checkTTL(o.TTL)
	if err != nil {
		return AppendResult{}, err
	}
	payload := encodePayload(m.Tokens, rc, m.ID, m.Meta, m.Content)
	v, err := appendScript.Run(ctx, s.rdb, se.keys, payload, m.Tokens, m.ID, maxMsgs, maxTok,
		ttl, s.opt.DefaultTTL.Milliseconds(), s.opt.MaxIDs).Result()
	if err != nil {
		return AppendResult{}, scriptErr("append", err)
	}
	n, err := ints(v, 4)
	if err != nil {
		return AppendResult{}, fmt.Errorf("contextstore: append: %w", err)
	}
	return AppendResult{Len: n[0], Tokens: n[1], Trimmed: n[2], Duplicate: n[3] == 1}, nil
}

// WindowOptions selects a Window. Zero fields mean no limit.
type WindowOptions struct {
	// Budget is the most tokens the window may hold, the pinned prompt
	// included.
	Budget int64
	// Last is the most messages the window may hold, the pinned prompt not
	// counted.
	Last int64
}

// Window is a read of a session: the pinned prompt (if any), then the
// newest messages that fit, oldest first.
type Window struct {
	// Messages are the pinned prompt (Pinned set, Seq 0) if the session
	// has one, then the messages in chronological order.
	Messages []Message
	// Tokens is the sum of the messages' tokens; never more than the
	// budget.
	Tokens int64
}

// Window reads the pinned prompt and the newest messages that fit
// o.Budget (the pinned prompt counting against it) and o.Last, in
// chronological order. The first message that does not fit ends the
// window. When the pinned prompt alone exceeds the budget, it returns an
// error wrapping ErrPinnedOverBudget. A missing session gives an empty
// window. It is a read-only script (EVALSHA_RO): a client that routes
// read-only commands to replicas (go-redis ReadOnly, RouteByLatency) may
// miss a message appended just before; the proxy and a default
// ClusterClient read from the master.
func (se *Session) Window(ctx context.Context, o WindowOptions) (Window, error) {
	if o.Budget < 0 {
		return Window{}, argErr(fmt.Sprintf("budget %d is negative", o.Budget))
	}
	if o.Last < 0 {
		return Window{}, argErr(fmt.Sprintf("last %d is negative", o.Last))
	}
	v, err := windowScript.RunRO(ctx, se.s.rdb, se.keys[:3], o.Budget, o.Last).Result()
	if err != nil {
		return Window{}, scriptErr("window", err)
	}
	vals, ok := v.([]interface{})
	if !ok || len(vals) != 4 {
		return Window{}, fmt.Errorf("contextstore: window: unexpected reply %T", v)
	}
	used, ok1 := vals[1].(int64)
	over, ok2 := vals[3].(int64)
	msgs, ok3 := vals[2].([]interface{})
	if !ok1 || !ok2 || !ok3 {
		return Window{}, fmt.Errorf("contextstore: window: unexpected reply %v", vals)
	}
	if over == 1 {
		return Window{}, fmt.Errorf("%w: it needs %d tokens, the budget is %d", ErrPinnedOverBudget, used, o.Budget)
	}
	w := Window{Tokens: used, Messages: make([]Message, 0, len(msgs)+1)}
	if pin, ok := vals[0].(string); ok {
		m, err := decodeEntry(pin)
		if err != nil {
			return Window{}, fmt.Errorf("contextstore: window: pinned prompt: %w", err)
		}
		m.Pinned = true
		w.Messages = append(w.Messages, m)
	}
	for _, e := range msgs {
		es, ok := e.(string)
		if !ok {
			return Window{}, fmt.Errorf("contextstore: window: unexpected message %T", e)
		}
		m, err := decodeEntry(es)
		if err != nil {
			return Window{}, fmt.Errorf("contextstore: window: %w", err)
		}
		w.Messages = append(w.Messages, m)
	}
	return w, nil
}

// Length is the size of a session.
type Length struct {
	// Messages is the message count, the pinned prompt not counted.
	Messages int64
	// Tokens is the messages' total tokens.
	Tokens int64
	// Pinned reports a pinned prompt, of PinnedTokens tokens.
	Pinned       bool
	PinnedTokens int64
}

// Len returns the session's message count and tokens and its pinned
// prompt's tokens; a missing session is empty.
func (se *Session) Len(ctx context.Context) (Length, error) {
	v, err := lenScript.RunRO(ctx, se.s.rdb, se.keys[:3]).Result()
	if err != nil {
		return Length{}, scriptErr("len", err)
	}
	vals, ok := v.([]interface{})
	if !ok || len(vals) != 3 {
		return Length{}, fmt.Errorf("contextstore: len: unexpected reply %v", v)
	}
	l := Length{}
	l.Messages, _ = vals[0].(int64)
	l.Tokens, _ = vals[1].(int64)
	l.PinnedTokens, l.Pinned = vals[2].(int64)
	return l, nil
}

// Pop removes the newest message and returns it; ok is false when the
// session has none. Its id is forgotten, so an append with the same id
// stores it again. It sets the session's TTL again.
func (se *Session) Pop(ctx context.Context) (m Message, ok bool, err error) {
	v, err := popScript.Run(ctx, se.s.rdb, se.keys, se.s.opt.DefaultTTL.Milliseconds()).Result()
	if err == redis.Nil {
		return Message{}, false, nil
	}
	if err != nil {
		return Message{}, false, scriptErr("pop", err)
	}
	e, isStr := v.(string)
	if !isStr {
		return Message{}, false, fmt.Errorf("contextstore: pop: unexpected reply %T", v)
	}
	m, err = decodeEntry(e)
	if err != nil {
		return Message{}, false, fmt.Errorf("contextstore: pop: %w", err)
	}
	return m, true, nil
}

// Clear deletes the session: messages, pinned prompt, recent ids and
// sequence numbers. It reports whether there was anything to delete.
func (se *Session) Clear(ctx context.Context) (bool, error) {
	n, err := clearScript.Run(ctx, se.s.rdb, se.keys).Int64()
	if err != nil {
		return false, scriptErr("clear", err)
	}
	return n > 0, nil
}

// Pin sets or replaces the session's pinned system prompt, of tokens
// tokens; empty content with zero tokens removes it. ttl is as in
// AppendOptions.TTL. The pinned prompt is never trimmed, is not counted
// by the caps, and comes first in every Window.
func (se *Session) Pin(ctx context.Context, content string, tokens int64, ttl time.Duration) error {
	s := se.s
	if err := s.checkTokens("pinned prompt", tokens, s.opt.MaxTokens); err != nil {
		return err
	}
	if err := s.checkContent("pinned prompt", content); err != nil {
		return err
	}
	if content == "" && tokens != 0 {
		return argErr("empty pinned prompt (which removes the pin) with non-zero tokens")
	}
	ms, err := s.checkTTL(ttl)
	if err != nil {
		return err
	}
	payload := ""
	if content != "" {
		payload = "0," + encodePayload(tokens, 's', "", "", content)
	}
	if err := pinScript.Run(ctx, s.rdb, se.keys, payload, tokens, ms, s.opt.DefaultTTL.Milliseconds()).Err(); err != nil {
		return scriptErr("pin", err)
	}
	return nil
}

// scriptErr wraps an error of a script run; a WRONGTYPE reply becomes
// ErrWrongType.
func scriptErr(op string, err error) error {
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return fmt.Errorf("%w (%s)", ErrWrongType, op)
	}
	return fmt.Errorf("contextstore: %s: %w", op, err)
}

// ints reads an array of n integers.
func ints(v interface{}, n int) ([]int64, error) {
	vals, ok := v.([]interface{})
	if !ok || len(vals) != n {
		return nil, fmt.Errorf("unexpected reply %v", v)
	}
	out := make([]int64, n)
	for i, e := range vals {
		if out[i], ok = e.(int64); !ok {
			return nil, fmt.Errorf("unexpected reply %v", v)
		}
	}
	return out, nil
}
