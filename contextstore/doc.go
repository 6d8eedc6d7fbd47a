// Package contextstore keeps LLM conversation context in Redis (a single
// node or a Redis Cluster): per session, an ordered list of messages with
// token counts, an optional pinned system prompt, caps that trim the oldest
// messages, and a read of the newest messages that fit a token budget.
//
// Every call is one Lua script on the keys of one slot: the keys of a
// session share a hash tag built from the tenant and the session id, so a
// session lives on one shard and every call is atomic. The store works on
// any go-redis redis.Scripter: a *redis.ClusterClient, a *redis.Client (to
// one node or to the clusterproxy proxy), or the proxy's own scripter.
//
// # Storage
//
// A session is four keys under one hash tag (prefix "gwx:ctx:" by default,
// then "{<len(tenant)>:<tenant>:<session>}"; the length makes the tag
// unambiguous when an id contains a colon):
//
//   - ":m" a list of encoded messages, oldest first;
//   - ":t" a list of their token counts, parallel to ":m", so that trimming
//     and Window walk small integers instead of decoding messages;
//   - ":h" a hash: total tokens of the messages, the last sequence number,
//     the session's TTL, and the pinned system prompt with its tokens;
//   - ":i" a sorted set of the most recent message ids (Options.MaxIDs),
//     scored by sequence number, for idempotent appends.
//
// Every write (Append, Pop, Pin) sets the TTL of all four keys again; a
// session left alone expires as a whole.
//
// # Semantics
//
//   - Append adds a message at the end. The message count cap and the
//     token cap (per call, up to the store's maximum) then trim the oldest
//     messages in the same script. The pinned prompt is never trimmed and
//     counts against neither cap. A message with an ID that the session has
//     seen among its recent ids is not stored again; the result says so.
//     Trimming does not forget ids (a retry of a trimmed message is still
//     recognised); Pop and Clear do.
//   - Window returns the pinned prompt (if any), then the newest messages
//     that fit the budget and the last-N limit, oldest first. The pinned
//     prompt counts against the budget; a message that does not fit ends
//     the window (older messages are never taken past a gap). When the
//     pinned prompt alone exceeds the budget, Window returns
//     ErrPinnedOverBudget rather than a context without its instructions.
//   - Pin sets or replaces the pinned system prompt; Pin with empty content
//     and zero tokens removes it. Pop removes the newest message; Clear
//     deletes the session.
//
// # Example
//
//	store, err := contextstore.New(clusterClient, contextstore.Options{})
//	if err != nil { ... }
//	sess, err := store.Session("acme", "chat-42")
//	if err != nil { ... }
//	_ = sess.Pin(ctx, "You are a helpful assistant.", 7, 0)
//	res, err := sess.Append(ctx, contextstore.Message{
//		ID: "req-1:user", Role: contextstore.User, Content: "Hello!", Tokens: 3,
//	}, contextstore.AppendOptions{MaxTokens: 8000})
//	// res.Len, res.Tokens, res.Trimmed, res.Duplicate
//	win, err := sess.Window(ctx, contextstore.WindowOptions{Budget: 4000})
//	for _, m := range win.Messages { // pinned prompt first, then oldest to newest
//		fmt.Println(m.Role, m.Content)
//	}
package contextstore
