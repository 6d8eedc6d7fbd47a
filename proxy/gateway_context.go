package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clusterproxy/clusterproxy/contextstore"
	"github.com/clusterproxy/clusterproxy/internal/command"
	"github.com/clusterproxy/clusterproxy/internal/resp"
	"github.com/redis/go-redis/v9"
)

// Conversation context commands (package contextstore):
//
//	CTX.APPEND <tenant> <session> <role> <content> <tokens> [ID <id>] [META <json>]
//	           [MAXMSGS <n>] [MAXTOKENS <n>] [TTL <s>]
//	    RESP2: array [length, tokens, trimmed, duplicate];
//	    RESP3: map {length, tokens, trimmed, duplicate}
//	CTX.WINDOW <tenant> <session> [BUDGET <tokens>] [LAST <n>]
//	    array of messages, the pinned prompt first (seq 0), then oldest to
//	    newest; each a map (RESP2: flat array) of seq, id, role, content,
//	    tokens, meta (id and meta null when absent)
//	CTX.LEN <tenant> <session>     integer: message count, pinned prompt not counted
//	CTX.POP <tenant> <session>     the newest message (a map as above), or null
//	CTX.CLEAR <tenant> <session>   integer: 1 if the session existed, else 0
//	CTX.PIN <tenant> <session> <content> <tokens> [TTL <s>]   +OK; empty
//	    content with 0 tokens removes the pinned prompt
//
// Options are case-insensitive and may come in any order, each once.
// Outcomes are counted as GatewayEvent("context", e) with e one of append,
// duplicate, trim, window, len, pop, clear, pin, error.

// ContextConfig configures the context gateway commands: the limits of
// the contextstore.Store behind them. Every zero field means the
// documented default of contextstore.Options (at most 1000 messages and
// 1,000,000 tokens per session, 256 KiB per message, 16 KiB of metadata,
// 1024 recent ids, TTL 24h by default and 30 days at most, keys under
// "gwx:ctx:").
type ContextConfig struct {
	contextstore.Options
}

// ctxFamily is the context event family.
const ctxFamily = "context"

// contextCommands builds the context gateway commands.
func (s *Server) contextCommands() ([]gatewayCommand, error) {
	st, err := contextstore.New(s.scripter, s.cfg.Context.Options)
	if err != nil {
		return nil, fmt.Errorf("proxy: context commands: %w", err)
	}
	c := &ctxCommands{st: st, obs: s.obs}
	return []gatewayCommand{
		{command.Spec{Name: "ctx.append", Arity: -6, Flags: command.Write}, c.append},
		{command.Spec{Name: "ctx.window", Arity: -3, Flags: command.ReadOnly}, c.window},
		{command.Spec{Name: "ctx.len", Arity: 3, Flags: command.ReadOnly}, c.len},
		{command.Spec{Name: "ctx.pop", Arity: 3, Flags: command.Write}, c.pop},
		{command.Spec{Name: "ctx.clear", Arity: 3, Flags: command.Write}, c.clear},
		{command.Spec{Name: "ctx.pin", Arity: -5, Flags: command.Write}, c.pin},
	}, nil
}

// ctxCommands answers the context commands from a contextstore.Store.
type ctxCommands struct {
	st  *contextstore.Store
	obs Observer
}

// session builds the session named by args[1] (tenant) and args[2].
func (c *ctxCommands) session(args [][]byte) (*contextstore.Session, []byte) {
	se, err := c.st.Session(string(args[1]), string(args[2]))
	if err != nil {
		return nil, c.fail(err)
	}
	return se, nil
}

// fail counts an error and turns it into an error reply: WRONGTYPE for a
// key of the wrong type, a node's own error as it came, and "ERR <why>"
// for the rest.
func (c *ctxCommands) fail(err error) []byte {
	c.obs.GatewayEvent(ctxFamily, "error")
	var ae *contextstore.ArgError
	var re redis.Error
	switch {
	case errors.As(err, &ae):
		return resp.AppendError(nil, "ERR "+ae.Msg)
	case errors.Is(err, contextstore.ErrWrongType):
		return resp.AppendError(nil, "WRONGTYPE Operation against a key holding the wrong kind of value")
	case errors.As(err, &re):
		return resp.AppendError(nil, re.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return resp.AppendError(nil, "ERR context: timed out")
	}
	return resp.AppendError(nil, "ERR "+strings.TrimPrefix(err.Error(), "contextstore: "))
}

// failf is an argument error reply.
func (c *ctxCommands) failf(format string, a ...any) []byte {
	c.obs.GatewayEvent(ctxFamily, "error")
	return resp.AppendError(nil, "ERR "+fmt.Sprintf(format, a...))
}

// ctxOpts are the options of a context command, parsed by ctxOptions.
type ctxOpts struct {
	id, meta                   string
	maxMsgs, maxTokens, ttlSec int64
	budget, last               int64
}

// ctxOptions parses the NAME value pairs in args; allowed lists the names
// the command takes (upper case). It returns an error reply or nil.
func (c *ctxCommands) ctxOptions(args [][]byte, allowed ...string) (ctxOpts, []byte) {
	var o ctxOpts
	seen := 0 // bit j: allowed[j] seen
	for i := 0; i < len(args); i += 2 {
		j := 0
		for j < len(allowed) && !strings.EqualFold(allowed[j], string(args[i])) {
			j++
		}
		if j == len(allowed) {
			return o, c.failf("unknown option '%s' (allowed: %s)", truncArg(args[i]), strings.Join(allowed, ", "))
		}
		name := allowed[j]
		if seen&(1<<j) != 0 {
			return o, c.failf("option %s given twice", name)
		}
		seen |= 1 << j
		if i+1 >= len(args) {
			return o, c.failf("option %s needs a value", name)
		}
		v := args[i+1]
		switch name {
		case "ID":
			o.id = string(v)
			if len(v) == 0 {
				return o, c.failf("ID is empty")
			}
		case "META":
			o.meta = string(v)
			if len(v) == 0 {
				return o, c.failf("META is empty")
			}
		default:
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n <= 0 {
				return o, c.failf("%s must be a positive integer, got '%s'", name, truncArg(v))
			}
			switch name {
			case "MAXMSGS":
				o.maxMsgs = n
			case "MAXTOKENS":
				o.maxTokens = n
			case "TTL":
				o.ttlSec = n
			case "BUDGET":
				o.budget = n
			case "LAST":
				o.last = n
			}
		}
	}
	return o, nil
}

// ttl converts TTL seconds, refusing what would overflow a Duration.
func (c *ctxCommands) ttl(sec int64) (time.Duration, []byte) {
	if max := int64(c.st.Options().MaxTTL / time.Second); sec > max {
		return 0, c.failf("TTL %d is out of range [1, %d] seconds", sec, max)
	}
	return time.Duration(sec) * time.Second, nil
}

// tokens parses a token count argument.
func (c *ctxCommands) tokens(v []byte) (int64, []byte) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, c.failf("tokens must be an integer, got '%s'", truncArg(v))
	}
	if n < 0 {
		return 0, c.failf("tokens must not be negative, got %d", n)
	}
	return n, nil
}

// truncArg quotes at most 64 bytes of a client's argument in an error.
func truncArg(v []byte) string {
	if len(v) > 64 {
		return string(v[:64]) + "..."
	}
	return string(v)
}

func (c *ctxCommands) append(ctx context.Context, args [][]byte, proto int) []byte {
	se, fail := c.session(args)
	if fail != nil {
		return fail
	}
	role, err := contextstore.ParseRole(string(bytes.ToLower(args[3])))
	if err != nil {
		return c.fail(err)
	}
	tok, fail := c.tokens(args[5])
	if fail != nil {
		return fail
	}
	o, fail := c.ctxOptions(args[6:], "ID", "META", "MAXMSGS", "MAXTOKENS", "TTL")
	if fail != nil {
		return fail
	}
	ttl, fail := c.ttl(o.ttlSec)
	if fail != nil {
		return fail
	}
	res, err := se.Append(ctx, contextstore.Message{
		ID: o.id, Role: role, Content: string(args[4]), Tokens: tok, Meta: o.meta,
	}, contextstore.AppendOptions{MaxMessages: o.maxMsgs, MaxTokens: o.maxTokens, TTL: ttl})
	if err != nil {
		return c.fail(err)
	}
	if res.Duplicate {
		c.obs.GatewayEvent(ctxFamily, "duplicate")
	} else {
		c.obs.GatewayEvent(ctxFamily, "append")
	}
	if res.Trimmed > 0 {
		c.obs.GatewayEvent(ctxFamily, "trim")
	}
	dup := int64(0)
	if res.Duplicate {
		dup = 1
	}
	var b []byte
	if proto >= resp.RESP3 {
		b = resp.AppendMapHeader(b, 4, proto)
		b = resp.AppendBulkString(b, "length")
		b = resp.AppendInt(b, res.Len)
		b = resp.AppendBulkString(b, "tokens")
		b = resp.AppendInt(b, res.Tokens)
		b = resp.AppendBulkString(b, "trimmed")
		b = resp.AppendInt(b, res.Trimmed)
		b = resp.AppendBulkString(b, "duplicate")
		return resp.AppendInt(b, dup)
	}
	b = resp.AppendArrayHeader(b, 4)
	b = resp.AppendInt(b, res.Len)
	b = resp.AppendInt(b, res.Tokens)
	b = resp.AppendInt(b, res.Trimmed)
	return resp.AppendInt(b, dup)
}

func (c *ctxCommands) window(ctx context.Context, args [][]byte, proto int) []byte {
	se, fail := c.session(args)
	if fail != nil {
		return fail
	}
	o, fail := c.ctxOptions(args[3:], "BUDGET", "LAST")
	if fail != nil {
		return fail
	}
	w, err := se.Window(ctx, contextstore.WindowOptions{Budget: o.budget, Last: o.last})
	if err != nil {
		return c.fail(err)
	}
	c.obs.GatewayEvent(ctxFamily, "window")
	n := 0
	for _, m := range w.Messages {
		n += len(m.Content) + len(m.ID) + len(m.Meta) + len(m.Role) + ctxMessageOverhead
	}
	b := resp.AppendArrayHeader(make([]byte, 0, n+16), len(w.Messages))
	for i := range w.Messages {
		b = appendCtxMessage(b, &w.Messages[i], proto)
	}
	return b
}

// ctxMessageOverhead bounds the bytes appendCtxMessage adds beyond the
// message's strings: the map header (5), the six keys (62), two integers
// (23 each) and four bulk headers (15 each), so that the window's reply is
// allocated once.
const ctxMessageOverhead = 5 + 62 + 2*23 + 4*15

// appendCtxMessage appends a message as a map (RESP2: flat array).
func appendCtxMessage(b []byte, m *contextstore.Message, proto int) []byte {
	b = resp.AppendMapHeader(b, 6, proto)
	b = resp.AppendBulkString(b, "seq")
	b = resp.AppendInt(b, m.Seq)
	b = resp.AppendBulkString(b, "id")
	if m.ID == "" {
		b = resp.AppendNull(b, proto)
	} else {
		b = resp.AppendBulkString(b, m.ID)
	}
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, string(m.Role))
	b = resp.AppendBulkString(b, "content")
	b = resp.AppendBulkString(b, m.Content)
	b = resp.AppendBulkString(b, "tokens")
	b = resp.AppendInt(b, m.Tokens)
	b = resp.AppendBulkString(b, "meta")
	if m.Meta == "" {
		return resp.AppendNull(b, proto)
	}
	return resp.AppendBulkString(b, m.Meta)
}

func (c *ctxCommands) len(ctx context.Context, args [][]byte, _ int) []byte {
	se, fail := c.session(args)
	if fail != nil {
		return fail
	}
	l, err := se.Len(ctx)
	if err != nil {
		return c.fail(err)
	}
	c.obs.GatewayEvent(ctxFamily, "len")
	return resp.AppendInt(nil, l.Messages)
}

func (c *ctxCommands) pop(ctx context.Context, args [][]byte, proto int) []byte {
	se, fail := c.session(args)
	if fail != nil {
		return fail
	}
	m, ok, err := se.Pop(ctx)
	if err != nil {
		return c.fail(err)
	}
	c.obs.GatewayEvent(ctxFamily, "pop")
	if !ok {
		return resp.AppendNull(nil, proto)
	}
	return appendCtxMessage(make([]byte, 0, len(m.Content)+len(m.ID)+len(m.Meta)+96), &m, proto)
}

func (c *ctxCommands) clear(ctx context.Context, args [][]byte, _ int) []byte {
	se, fail := c.session(args)
	if fail != nil {
		return fail
	}
	ok, err := se.Clear(ctx)
	if err != nil {
		return c.fail(err)
	}
	c.obs.GatewayEvent(ctxFamily, "clear")
	if ok {
		return resp.AppendInt(nil, 1)
	}
	return resp.AppendInt(nil, 0)
}

func (c *ctxCommands) pin(ctx context.Context, args [][]byte, _ int) []byte {
	se, fail := c.session(args)
	if fail != nil {
		return fail
	}
	tok, fail := c.tokens(args[4])
	if fail != nil {
		return fail
	}
	o, fail := c.ctxOptions(args[5:], "TTL")
	if fail != nil {
		return fail
	}
	ttl, fail := c.ttl(o.ttlSec)
	if fail != nil {
		return fail
	}
	if err := se.Pin(ctx, string(args[3]), tok, ttl); err != nil {
		return c.fail(err)
	}
	c.obs.GatewayEvent(ctxFamily, "pin")
	return resp.AppendOK(nil)
}
