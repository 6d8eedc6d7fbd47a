package cache

import "github.com/redis/go-redis/v9"

// Redis layout of one entry, all under the hash tag of its key K:
//
//	K       list: a kind marker ("v" one value, "s" a stream), then the value
//	        or the chunks in order; PEXPIRE = the entry's TTL.
//	K:lock  hash: tok (the fill token), bytes and chunks (of the stream
//	        written so far); PEXPIRE = the fill lease.
//	K:part  list: "s", then the chunks appended so far; PEXPIRE = twice
//	        the lease, so that it outlives the lock that guards it.
//
// Every script gets KEYS = {K, K:lock, K:part} and checks the kind of each
// key before use, so a foreign value gives WRONGTYPE, not a Lua error.
// Error replies start with a code the Go side maps to the sentinel errors.

// prelude is shared by the scripts that check a fill token.
const prelude = `
local function kind(k, want)
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'none' and t ~= want then
    return nil, redis.error_reply('WRONGTYPE cache: ' .. k .. ' holds a ' .. t)
  end
  return t
end
local function owner(tok)
  local t, e = kind(KEYS[2], 'hash')
  if not t then return e end
  if t == 'none' or redis.call('HGET', KEYS[2], 'tok') ~= tok then
    return redis.error_reply('STALETOKEN cache: stale fill token')
  end
  local _, e1 = kind(KEYS[1], 'list')
  if e1 then return e1 end
  local _, e3 = kind(KEYS[3], 'list')
  if e3 then return e3 end
  return nil
end
local function posint(s)
  local n = tonumber(s)
  if not n or n < 1 or n ~= math.floor(n) then return nil end
  return n
end
`

// getScript: ARGV token, lease ms. Returns {"HIT", {kind, items...}},
// {"MISS", token} or {"WAIT", lease ms left}.
var getScript = redis.NewScript(prelude + `
local lease = posint(ARGV[2])
if not lease then return redis.error_reply('ERR cache: bad lease') end
local t, e = kind(KEYS[1], 'list')
if not t then return e end
if t == 'list' then
  return {'HIT', redis.call('LRANGE', KEYS[1], 0, -1)}
end
local l, e2 = kind(KEYS[2], 'hash')
if not l then return e2 end
if l == 'hash' then
  return {'WAIT', redis.call('PTTL', KEYS[2])}
end
local _, e3 = kind(KEYS[3], 'list')
if e3 then return e3 end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'tok', ARGV[1], 'bytes', 0, 'chunks', 0)
redis.call('PEXPIRE', KEYS[2], lease)
return {'MISS', ARGV[1]}
`)

// setScript: ARGV token, value, ttl ms, max bytes.
var setScript = redis.NewScript(prelude + `
local ttl, max = posint(ARGV[3]), posint(ARGV[4])
if not ttl or not max then return redis.error_reply('ERR cache: bad ttl or size cap') end
local e = owner(ARGV[1])
if e then return e end
if #ARGV[2] > max then return redis.error_reply('TOOLARGE cache: value too large') end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('RPUSH', KEYS[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('DEL', KEYS[2])
return 'OK'
`)

// appendScript: ARGV token, chunk, lease ms, max bytes, max chunks.
// Returns the number of chunks so far.
var appendScript = redis.NewScript(prelude + `
local lease, max, maxn = posint(ARGV[3]), posint(ARGV[4]), posint(ARGV[5])
if not lease or not max or not maxn then return redis.error_reply('ERR cache: bad lease or cap') end
local e = owner(ARGV[1])
if e then return e end
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0') + #ARGV[2]
local n = tonumber(redis.call('HGET', KEYS[2], 'chunks') or '0') + 1
if bytes > max then return redis.error_reply('TOOLARGE cache: stream too large') end
if n > maxn then return redis.error_reply('TOOMANY cache: too many chunks') end
if redis.call('EXISTS', KEYS[3]) == 0 then
  if n ~= 1 then return redis.error_reply('LOST cache: stream lost') end
  redis.call('RPUSH', KEYS[3], 's')
end
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[2], 'bytes', bytes, 'chunks', n)
redis.call('PEXPIRE', KEYS[2], lease)
redis.call('PEXPIRE', KEYS[3], lease * 2)
return n
`)

// commitScript: ARGV token, ttl ms. Returns the number of chunks.
var commitScript = redis.NewScript(prelude + `
local ttl = posint(ARGV[2])
if not ttl then return redis.error_reply('ERR cache: bad ttl') end
local e = owner(ARGV[1])
if e then return e end
local n = tonumber(redis.call('HGET', KEYS[2], 'chunks') or '0')
if n == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('RPUSH', KEYS[1], 's')
else
  if redis.call('LLEN', KEYS[3]) ~= n + 1 then return redis.error_reply('LOST cache: stream lost') end
  redis.call('RENAME', KEYS[3], KEYS[1])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('DEL', KEYS[2])
return n
`)

// abortScript: ARGV token.
var abortScript = redis.NewScript(prelude + `
local e = owner(ARGV[1])
if e then return e end
redis.call('DEL', KEYS[2], KEYS[3])
return 'OK'
`)

// delScript: removes the entry, its lease and any stream being written.
// Returns 1 when an entry was removed.
var delScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3])
return n
`)

// statsIncrScript: KEYS stats key; ARGV field.
var statsIncrScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE cache: ' .. KEYS[1] .. ' holds a ' .. t)
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
`)

// statsScript: KEYS stats key; ARGV the fields. Returns their values.
var statsScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE cache: ' .. KEYS[1] .. ' holds a ' .. t)
end
return redis.call('HMGET', KEYS[1], unpack(ARGV))
`)
