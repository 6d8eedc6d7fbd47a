package ratelimit

// The Lua scripts. Each call runs exactly one of them, on keys of one slot
// passed in KEYS. Time is the server's (TIME, in microseconds). Numbers stay
// below 2^53 (checked in Go before the call), so Lua's doubles hold them
// exactly; they are written with string.format('%.0f'), never tostring,
// which would round them.
//
// GCRA for a limit of L units, refilled at N units per period P (µs):
// the theoretical arrival time (TAT) is stored per key; an increment of q
// units costs floor(q*P/N) µs; the tolerance is floor(L*P/N) µs. A request
// is allowed when max(TAT, now) + cost - tolerance <= now.

// luaLib is prepended to every script.
const luaLib = `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%.0f', n) end
local function idiv(a, b) return (a - a % b) / b end
local function int_arg(i, lo, hi)
  local n = tonumber(ARGV[i])
  if not n or n ~= math.floor(n) or n < lo or n > hi then
    error('ratelimit: argument ' .. i .. ' out of range')
  end
  return n
end
-- check_type returns an error message when key holds another type.
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    return 'WRONGTYPE ratelimit: key ' .. key .. ' holds a ' .. t .. ', not a rate-limit ' .. want
  end
  return nil
end
-- read_tat returns the stored TAT (or false), or nil and an error message.
local function read_tat(key)
  local e = check_type(key, 'string')
  if e then return nil, e end
  local v = redis.call('GET', key)
  if not v then return false end
  local n = tonumber(v)
  if not n or n ~= math.floor(n) then
    return nil, 'WRONGTYPE ratelimit: key ' .. key .. ' does not hold a rate limit state'
  end
  return n
end
-- gcra decides a request of q units. It returns allowed, never, new TAT
-- (when allowed), ttl µs (the key's life after the call), retry µs (-1 when
-- allowed or never) and remaining units.
local function gcra(tat, now, q, P, N, L)
  local dvt = idiv(L * P, N)
  local base = now
  if tat and tat > now then base = tat end
  local allowed, never, newtat, ttl, retry = false, false, base, base - now, -1
  if q > L then
    never = true
  else
    local nt = base + idiv(q * P, N)
    local diff = now - (nt - dvt)
    if diff >= 0 then
      allowed, newtat, ttl = true, nt, nt - now
    else
      retry = -diff
    end
  end
  local remaining = 0
  local nxt = dvt - ttl
  if nxt > 0 then remaining = idiv(nxt * N, P) end
  return allowed, never, newtat, ttl, retry, remaining
end
local function store_tat(key, tat, now)
  if tat <= now then
    redis.call('DEL', key)
  else
    redis.call('SET', key, fmt(tat), 'PX', fmt(math.ceil((tat - now) / 1000)))
  end
end
`

// throttleScript is one CL.THROTTLE. KEYS: tat. ARGV: period µs, count,
// limit (max_burst+1), quantity. Reply: limited, limit, remaining, retry µs,
// reset µs.
const throttleScript = luaLib + `
local P = int_arg(1, 1, 4503599627370496)
local N = int_arg(2, 1, P)
local L = int_arg(3, 1, 4503599627370496)
local q = int_arg(4, 0, 9007199254740991)
local now = now_us()
local tat, err = read_tat(KEYS[1])
if err then return redis.error_reply(err) end
local allowed, never, newtat, ttl, retry, remaining = gcra(tat, now, q, P, N, L)
if allowed and q > 0 then store_tat(KEYS[1], newtat, now) end
local limited = 1
if allowed then limited = 0 end
return {limited, L, remaining, retry, ttl}
`

// acquireScript is one RL.ACQUIRE. KEYS: rpm TAT, tpm TAT, leases zset,
// generation, lease record. ARGV: rpm, tpm, concurrency (0 = no such
// limit), tokens, lease TTL ms, record TTL ms, lease id. Reply: allowed,
// then per limit given: name, limit, remaining, limited, never, retry µs,
// reset µs.
const acquireScript = luaLib + `
local P = 60000000
local rpm = int_arg(1, 0, P)
local tpm = int_arg(2, 0, P)
local conc = int_arg(3, 0, 1000000000)
local tokens = int_arg(4, 0, 9007199254740991)
local ttl_ms = int_arg(5, 1, 315360000000)
local rec_ms = int_arg(6, 1, 315360000000)
local id = ARGV[7]
local e = check_type(KEYS[3], 'zset') or check_type(KEYS[5], 'hash')
if e then return redis.error_reply(e) end
local rtat, err = read_tat(KEYS[1])
if err then return redis.error_reply(err) end
local ttat, err2 = read_tat(KEYS[2])
if err2 then return redis.error_reply(err2) end
local gen, err3 = read_tat(KEYS[4])
if err3 then return redis.error_reply(err3) end
if redis.call('EXISTS', KEYS[5]) == 1 then
  return redis.error_reply('ERR ratelimit: lease id already in use')
end
local now = now_us()
local now_ms = idiv(now, 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now_ms))
local out = {0}
local ok = true
local r = {}
if rpm > 0 then
  local a, nv, nt, ttl, retry, rem = gcra(rtat, now, 1, P, rpm, rpm)
  r.rpm = {a, nv, nt, ttl, retry, rem}
  ok = ok and a
end
if tpm > 0 then
  local a, nv, nt, ttl, retry, rem = gcra(ttat, now, tokens, P, tpm, tpm)
  r.tpm = {a, nv, nt, ttl, retry, rem}
  ok = ok and a
end
local count = 0
local conc_refused = false
if conc > 0 then
  count = redis.call('ZCARD', KEYS[3])
  conc_refused = count >= conc
  ok = ok and not conc_refused
end
local function emit(name, lim, x)
  local limited, never = 0, 0
  if not x[1] then limited = 1 end
  if x[2] then never = 1 end
  for _, v in ipairs({name, lim, x[6], limited, never, x[5], x[4]}) do
    table.insert(out, v)
  end
end
if ok then
  out[1] = 1
  if rpm > 0 then store_tat(KEYS[1], r.rpm[3], now) end
  if tpm > 0 and tokens > 0 then store_tat(KEYS[2], r.tpm[3], now) end
  local c = 0
  if conc > 0 then
    c = 1
    redis.call('ZADD', KEYS[3], fmt(now_ms + ttl_ms), id)
    count = count + 1
    local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', KEYS[3], fmt(tonumber(last[2]) - now_ms + 1000))
  end
  redis.call('HSET', KEYS[5], 'est', fmt(tokens), 'tpm', fmt(tpm), 'conc', c, 'gen', fmt(gen or 0))
  redis.call('PEXPIRE', KEYS[5], fmt(rec_ms))
else
  -- nothing is charged: report the limits that allowed at their current state
  if rpm > 0 and r.rpm[1] then
    local a, nv, nt, ttl, retry, rem = gcra(rtat, now, 0, P, rpm, rpm)
    r.rpm = {true, false, nt, ttl, -1, rem}
  end
  if tpm > 0 and r.tpm[1] then
    local a, nv, nt, ttl, retry, rem = gcra(ttat, now, 0, P, tpm, tpm)
    r.tpm = {true, false, nt, ttl, -1, rem}
  end
end
if rpm > 0 then emit('rpm', rpm, r.rpm) end
if tpm > 0 then emit('tpm', tpm, r.tpm) end
if conc > 0 then
  local limited, retry, reset = 0, -1, 0
  if conc_refused then
    limited = 1
  end
  if count > 0 then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
    if limited == 1 then retry = (tonumber(first[2]) - now_ms) * 1000 end
    reset = (tonumber(last[2]) - now_ms) * 1000
  end
  local rem = conc - count
  if rem < 0 then rem = 0 end
  table.insert(out, 'concurrency')
  table.insert(out, conc)
  table.insert(out, rem)
  table.insert(out, limited)
  table.insert(out, 0)
  table.insert(out, retry)
  table.insert(out, reset)
end
return out
`

// settleScript is one RL.SETTLE. KEYS: tpm TAT, leases zset, generation,
// lease record. ARGV: lease id, actual tokens. Reply: status (1 settled
// now, 0 settled before, -1 unknown lease), delta tokens, the actual tokens
// recorded.
const settleScript = luaLib + `
local P = 60000000
local id = ARGV[1]
local actual = int_arg(2, 0, 9007199254740991)
local e = check_type(KEYS[2], 'zset') or check_type(KEYS[4], 'hash')
if e then return redis.error_reply(e) end
local tat, err = read_tat(KEYS[1])
if err then return redis.error_reply(err) end
local gen, err2 = read_tat(KEYS[3])
if err2 then return redis.error_reply(err2) end
local f = redis.call('HMGET', KEYS[4], 'est', 'tpm', 'gen', 'settled')
if not f[1] then return {-1, 0, 0} end
if f[4] then return {0, 0, tonumber(f[4])} end
local est, tpm, lgen = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
local delta = actual - est
if tpm > 0 and delta ~= 0 and lgen == (gen or 0) then
  local now = now_us()
  local base = now
  if tat and tat > now then base = tat end
  store_tat(KEYS[1], base + idiv(actual * P, tpm) - idiv(est * P, tpm), now)
end
redis.call('HSET', KEYS[4], 'settled', fmt(actual), 'released', 1)
redis.call('ZREM', KEYS[2], id)
return {1, delta, actual}
`

// releaseScript is one RL.RELEASE. KEYS: leases zset, lease record. ARGV:
// lease id. Reply: 1 released now, 0 released before, -1 unknown lease.
const releaseScript = luaLib + `
local e = check_type(KEYS[1], 'zset') or check_type(KEYS[2], 'hash')
if e then return redis.error_reply(e) end
local f = redis.call('HMGET', KEYS[2], 'est', 'released')
if not f[1] then return -1 end
if f[2] then return 0 end
redis.call('HSET', KEYS[2], 'released', 1)
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`

// peekScript is one RL.PEEK: the state of each limit given, changing
// nothing. KEYS: rpm TAT, tpm TAT, leases zset. ARGV: rpm, tpm,
// concurrency. Reply: per limit, as acquireScript.
const peekScript = luaLib + `
local P = 60000000
local rpm = int_arg(1, 0, P)
local tpm = int_arg(2, 0, P)
local conc = int_arg(3, 0, 1000000000)
local e = check_type(KEYS[3], 'zset')
if e then return redis.error_reply(e) end
local rtat, err = read_tat(KEYS[1])
if err then return redis.error_reply(err) end
local ttat, err2 = read_tat(KEYS[2])
if err2 then return redis.error_reply(err2) end
local now = now_us()
local now_ms = idiv(now, 1000)
local out = {}
local function emit(name, lim, tat)
  local a, nv, nt, ttl, retry, rem = gcra(tat, now, 0, P, lim, lim)
  local limited = 0
  if not a then limited = 1 end
  for _, v in ipairs({name, lim, rem, limited, 0, retry, ttl}) do table.insert(out, v) end
end
if rpm > 0 then emit('rpm', rpm, rtat) end
if tpm > 0 then emit('tpm', tpm, ttat) end
if conc > 0 then
  local from = '(' .. fmt(now_ms)
  local count = redis.call('ZCOUNT', KEYS[3], from, '+inf')
  local limited, retry, reset = 0, -1, 0
  if count > 0 then
    local first = redis.call('ZRANGEBYSCORE', KEYS[3], from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
    if count >= conc then
      limited = 1
      retry = (tonumber(first[2]) - now_ms) * 1000
    end
    reset = (tonumber(last[2]) - now_ms) * 1000
  end
  local rem = conc - count
  if rem < 0 then rem = 0 end
  for _, v in ipairs({'concurrency', conc, rem, limited, 0, retry, reset}) do table.insert(out, v) end
end
return out
`

// resetScript is one RL.RESET. KEYS: rpm TAT, tpm TAT, leases zset,
// generation. Reply: the number of keys deleted.
const resetScript = luaLib + `
local _, err = read_tat(KEYS[4])
if err then return redis.error_reply(err) end
local n = redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('INCR', KEYS[4])
return n
`
