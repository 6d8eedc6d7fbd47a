package contextstore

import "github.com/redis/go-redis/v9"

// The scripts take the session's keys in KEYS, in the order of
// Session.keys: messages list (m), token counts list (t), hash (h), recent
// ids sorted set (i). m and t stay the same length: every script that
// pushes or pops one does the same to the other. Hash fields: tok (total
// message tokens), seq (last sequence number), ttl (the session's TTL in
// ms, when one was given), pin and ptok (the pinned prompt and its tokens).

// prelude: argument and key type checks, TTL refresh.
const prelude = `
local function wrongtype(key, want)
  local t = redis.call('TYPE', key)['ok']
  return t ~= 'none' and t ~= want
end
local function types(n)
  local want = {'list', 'list', 'hash', 'zset'}
  for i = 1, n do
    if wrongtype(KEYS[i], want[i]) then
      return redis.error_reply('WRONGTYPE contextstore: key ' .. KEYS[i] .. ' holds the wrong kind of value')
    end
  end
  return nil
end
local function int(v, min)
  local n = tonumber(v)
  if n == nil or n ~= math.floor(n) or n < min then return nil end
  return n
end
local function refresh(ttl, def)
  if ttl > 0 then
    redis.call('HSET', KEYS[3], 'ttl', ttl)
  else
    ttl = tonumber(redis.call('HGET', KEYS[3], 'ttl')) or def
  end
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
`

// appendScript: ARGV payload, tokens, id, max messages, max tokens, ttl
// ms (0 = the session's), default ttl ms, max ids. Returns {len, tokens,
// trimmed, duplicate}.
var appendScript = redis.NewScript(prelude + `
local err = types(4)
if err then return err end
local tok, maxm, maxt = int(ARGV[2], 0), int(ARGV[4], 1), int(ARGV[5], 1)
local ttl, def, maxids = int(ARGV[6], 0), int(ARGV[7], 1), int(ARGV[8], 1)
if not (tok and maxm and maxt and ttl and def and maxids) or ARGV[1] == '' then
  return redis.error_reply('ERR contextstore: bad arguments to the append script')
end
if tok > maxt then
  return redis.error_reply('ERR contextstore: the message needs more tokens than the token cap')
end
local id = ARGV[3]
if id ~= '' and redis.call('ZSCORE', KEYS[4], id) then
  return {redis.call('LLEN', KEYS[1]), tonumber(redis.call('HGET', KEYS[3], 'tok')) or 0, 0, 1}
end
local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
local n = redis.call('RPUSH', KEYS[1], seq .. ',' .. ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
local total = redis.call('HINCRBY', KEYS[3], 'tok', ARGV[2])
local k = 0
while n - k > maxm or total > maxt do
  local t = redis.call('LPOP', KEYS[2])
  if not t then break end
  total = total - tonumber(t)
  k = k + 1
end
if k > 0 then
  redis.call('LTRIM', KEYS[1], k, -1)
  redis.call('HSET', KEYS[3], 'tok', total)
end
if id ~= '' then
  redis.call('ZADD', KEYS[4], seq, id)
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -maxids - 1)
end
refresh(ttl, def)
return {n - k, total, k, 0}
`)

// windowScript (read-only; KEYS m, t, h): ARGV budget (0 = none), last
// (0 = none). Returns {pinned or false, tokens, {messages}, over}; over is
// 1 (and tokens the pinned prompt's) when the pinned prompt alone exceeds
// the budget. The token counts are read from the tail in chunks, so a long
// session costs only what the window holds.
var windowScript = redis.NewScript(prelude + `
local err = types(3)
if err then return err end
local budget, last = int(ARGV[1], 0), int(ARGV[2], 0)
if not (budget and last) then
  return redis.error_reply('ERR contextstore: bad arguments to the window script')
end
local ph = redis.call('HMGET', KEYS[3], 'pin', 'ptok')
local pin, used = ph[1], 0
if pin then used = tonumber(ph[2]) or 0 end
if budget > 0 and used > budget then return {false, used, {}, 1} end
local n = redis.call('LLEN', KEYS[2])
if redis.call('LLEN', KEYS[1]) ~= n then
  return redis.error_reply('ERR contextstore: the session lists are out of step')
end
local k = n
if last > 0 and last < k then k = last end
local take = 0
if budget > 0 then
  local room = budget - used
  local stop = false
  while take < k and not stop do
    local c = k - take
    if c > 64 then c = 64 end
    local ts = redis.call('LRANGE', KEYS[2], -(take + c), -(take + 1))
    for j = #ts, 1, -1 do
      local t = tonumber(ts[j]) or 0
      if t > room then stop = true break end
      room = room - t
      take = take + 1
    end
    if #ts < c then stop = true end
  end
  used = budget - room
else
  take = k
  if k == n then
    used = used + (tonumber(redis.call('HGET', KEYS[3], 'tok')) or 0)
  elseif k > 0 then
    for _, t in ipairs(redis.call('LRANGE', KEYS[2], -k, -1)) do used = used + (tonumber(t) or 0) end
  end
end
local msgs = {}
if take > 0 then msgs = redis.call('LRANGE', KEYS[1], -take, -1) end
return {pin or false, used, msgs, 0}
`)

// lenScript (read-only; KEYS m, t, h). Returns {len, tokens, pinned
// tokens or false}.
var lenScript = redis.NewScript(prelude + `
local err = types(3)
if err then return err end
local h = redis.call('HMGET', KEYS[3], 'tok', 'ptok')
return {redis.call('LLEN', KEYS[1]), tonumber(h[1]) or 0, tonumber(h[2]) or false}
`)

// popScript: ARGV default ttl ms. Returns the newest message or nil; its
// id leaves the recent ids.
var popScript = redis.NewScript(prelude + `
local err = types(4)
if err then return err end
local def = int(ARGV[1], 1)
if not def then return redis.error_reply('ERR contextstore: bad arguments to the pop script') end
local e = redis.call('RPOP', KEYS[1])
if not e then return false end
local t = tonumber(redis.call('RPOP', KEYS[2])) or 0
-- Not -0: Redis formats it as "-0", which HINCRBY refuses.
if t > 0 then redis.call('HINCRBY', KEYS[3], 'tok', -t) end
local seq = string.match(e, '^(%d+),')
if seq then redis.call('ZREMRANGEBYSCORE', KEYS[4], seq, seq) end
refresh(0, def)
return e
`)

// clearScript deletes the session's keys; returns how many existed.
var clearScript = redis.NewScript(`
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
`)

// pinScript: ARGV payload (empty to unpin), tokens, ttl ms (0 = the
// session's), default ttl ms.
var pinScript = redis.NewScript(prelude + `
local err = types(4)
if err then return err end
local tok, ttl, def = int(ARGV[2], 0), int(ARGV[3], 0), int(ARGV[4], 1)
if not (tok and ttl and def) then
  return redis.error_reply('ERR contextstore: bad arguments to the pin script')
end
if ARGV[1] == '' then
  redis.call('HDEL', KEYS[3], 'pin', 'ptok')
else
  redis.call('HSET', KEYS[3], 'pin', ARGV[1], 'ptok', ARGV[2])
end
refresh(ttl, def)
return 1
`)
