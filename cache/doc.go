// Package cache is a response cache for LLM gateways whose state lives in a
// Redis Cluster, so any number of gateway or proxy instances share one cache.
//
// Every call is one Lua script on one slot, run through a go-redis
// redis.Scripter (a *redis.ClusterClient, a *redis.Client to clusterproxy,
// or the proxy's own scripter). Time (leases, TTLs) is the server's.
//
// # Keys
//
// Key builds the canonical key of a request: namespace, endpoint, model,
// tenant scope and the JSON body canonicalised (see Key), hashed with
// SHA-256 under a key schema version. The key looks like
//
//	gwc:v1:{<namespace>:<64 hex digits>}
//
// and everything about one entry (the entry itself, its fill lease
// "...:lock", a stream being written "...:part") shares its hash tag, hence
// its slot. Per-namespace counters live in "gwc:v1:stats:{<namespace>}", a
// slot of their own.
//
// # Single flight
//
// Get answers Hit (the value), Miss (with a fill token: this caller, and
// only this one, must produce the answer and Set it) or Wait (another
// caller holds the fill lease). GetWait blocks, polling with backoff, until
// the entry is filled (Hit) or the lease ends without a fill (Miss, a fresh
// token granted to exactly one of the waiters). A fill lease lasts
// Config.FillLease (default 30s); each Append renews it.
//
// Set publishes a value with the current fill token; a stale or unknown
// token (the lease ended, someone else filled or deleted the entry) is
// refused with ErrStaleToken. Streamed answers are written with Append under
// a temporary key and published atomically by Commit (or dropped by Abort);
// Get never sees a partial stream, and a hit on a streamed entry returns the
// chunks in order.
//
// # Example
//
//	c, err := cache.New(clusterClient, cache.Config{})
//	if err != nil { ... }
//	key, err := cache.Key("chat", "/v1/chat/completions", "gpt-4o", "tenant-42", body)
//	if err != nil { ... } // invalid JSON, bad namespace
//	res, err := c.GetWait(ctx, key, 5*time.Second)
//	switch {
//	case err != nil:
//		// the cluster failed: call the model without the cache
//	case res.Status == cache.Hit:
//		return res.Value // or res.Chunks when res.Streamed
//	case res.Status == cache.Miss:
//		answer, err := callModel(ctx, body)
//		if err != nil {
//			_ = c.Abort(ctx, key, res.Token) // let a waiter try
//			return err
//		}
//		_ = c.Set(ctx, key, res.Token, answer, time.Hour)
//		return answer
//	default: // cache.Wait: still being filled after 5s
//		return callModel(ctx, body)
//	}
//
// A streamed answer: c.Append(ctx, key, token, chunk) for each chunk, then
// c.Commit(ctx, key, token, ttl), or c.Abort(ctx, key, token) if the
// stream breaks.
//
// # Counters
//
// With stats on (the default), Get, Set, Commit and Abort count their
// outcomes (hit, miss, wait, fill, abort) per namespace in the cluster,
// read back with Stats. As the counters live in another slot than the entry,
// counting is a second, small script after the main one; it is best effort
// (a failure is logged, never returned), so a counter may fall short of the
// truth when the cluster is failing, never the cached data.
package cache
