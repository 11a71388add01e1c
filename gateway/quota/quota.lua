-- Quota counters of ONE entity (user, team or global), all keys under one hash tag so the script
-- runs in one Cluster slot. Layout (quota:v1:{entity}:...):
--   KEYS[1] counters HASH: "<qid>:list" = active bucket ids (comma separated),
--                          "<qid>:<bucket>:ut|um|rt|rm" = used/reserved tokens and micro-dollars,
--                          "<qid>:tot:ut|um|rt|rm" = the same summed over the active buckets
--                          (kept in step, so a check reads 4 fields, not 4 per bucket)
--   KEYS[2] reservations HASH: request_id -> JSON {e = est tokens, m = est micro, b = {qid = bucket}}
--   KEYS[3] expiries ZSET: request_id scored by the ms time its reservation stops counting
-- ARGV[1] op: reserve | settle | release | status
-- ARGV[2] now in ms, or "" to use Redis TIME (tests inject a clock; production never does)
-- ARGV[3] request_id
-- reserve: ARGV[4] ttl_ms, ARGV[5] est tokens, ARGV[6] est micro, then per record 5 values:
--          qid, mode (fixed|sliding), period (minute|day|month), token limit, micro limit (-1 = none)
-- settle:  ARGV[4] actual tokens, ARGV[5] actual micro
-- status:  per record from ARGV[4] as for reserve; returns used+reserved, reset and reserved alone
-- Every operation on one request_id is idempotent: ioredis may resend a command after a reconnect.
local H, R, Z = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rid = ARGV[3]

local MINUTE, DAY = 60000, 86400000
local SLIDING_BUCKETS = 60

-- First ms of the UTC calendar month holding ms (days-from-civil, Howard Hinnant).
local function month_start(ms)
  local days = math.floor(ms / DAY)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  -- back to days: first of month m, year y
  local yy = m <= 2 and y - 1 or y
  local era2 = math.floor(yy / 400)
  local yoe2 = yy - era2 * 400
  local mp2 = m > 2 and m - 3 or m + 9
  local doy2 = math.floor((153 * mp2 + 2) / 5)
  local doe2 = yoe2 * 365 + math.floor(yoe2 / 4) - math.floor(yoe2 / 100) + doy2
  return (era2 * 146097 + doe2 - 719468) * DAY
end

local function next_month_start(ms)
  return month_start(month_start(ms) + 32 * DAY)
end

local function period_ms(period)
  if period == 'minute' then return MINUTE end
  if period == 'day' then return DAY end
  return 30 * DAY
end

-- The bucket `now` falls in, the oldest bucket id still inside the window, and when the
-- window's oldest usage stops counting (for retry-after).
local function window(mode, period)
  if mode == 'fixed' then
    if period == 'month' then
      local s = month_start(now)
      return s, s, next_month_start(now)
    end
    local p = period_ms(period)
    local s = math.floor(now / p) * p
    return s, s, s + p
  end
  local p = period_ms(period)
  local w = p / SLIDING_BUCKETS
  local b = math.floor(now / w) * w
  -- Conservative: a bucket partly inside the window counts whole, so usage is never under-counted.
  local oldest = math.floor((now - p) / w) * w + w
  return b, oldest, oldest + p
end

local function split(s)
  local out = {}
  if s then for id in string.gmatch(s, '[^,]+') do out[#out + 1] = tonumber(id) end end
  return out
end

local function field(qid, b, k)
  return qid .. ':' .. string.format('%d', b) .. ':' .. k
end

-- Drops buckets that left the window; returns the kept ids.
local function prune(qid, oldest)
  local kept, dropped = {}, {}
  for _, b in ipairs(split(redis.call('HGET', H, qid .. ':list'))) do
    if b >= oldest then kept[#kept + 1] = b else dropped[#dropped + 1] = b end
  end
  for _, b in ipairs(dropped) do
    local f = { field(qid, b, 'ut'), field(qid, b, 'um'), field(qid, b, 'rt'), field(qid, b, 'rm') }
    local v = redis.call('HMGET', H, f[1], f[2], f[3], f[4])
    local kinds = { 'ut', 'um', 'rt', 'rm' }
    for i = 1, 4 do
      local n = tonumber(v[i] or '0')
      if n ~= 0 then redis.call('HINCRBY', H, qid .. ':tot:' .. kinds[i], 0 - n) end
    end
    redis.call('HDEL', H, f[1], f[2], f[3], f[4])
  end
  if #dropped > 0 then
    local ids = {}
    for i, b in ipairs(kept) do ids[i] = string.format('%d', b) end
    if #ids == 0 then redis.call('HDEL', H, qid .. ':list') else redis.call('HSET', H, qid .. ':list', table.concat(ids, ',')) end
  end
  return kept
end

local function has_bucket(qid, bucket)
  for _, b in ipairs(split(redis.call('HGET', H, qid .. ':list'))) do
    if b == bucket then return true end
  end
  return false
end

local function add_bucket(qid, bucket)
  if has_bucket(qid, bucket) then return end
  local list = redis.call('HGET', H, qid .. ':list')
  local id = string.format('%d', bucket)
  redis.call('HSET', H, qid .. ':list', list and (list .. ',' .. id) or id)
end

-- Adds to one bucket and to the record's running total alike.
local function bump(qid, b, k, n)
  if n == 0 then return end
  redis.call('HINCRBY', H, field(qid, b, k), n)
  redis.call('HINCRBY', H, qid .. ':tot:' .. k, n)
end

-- Takes a reservation back out of the counters; with actual usage, books that as used.
local function unreserve(id, actual_t, actual_m)
  local raw = redis.call('HGET', R, id)
  if not raw then return 0 end
  local res = cjson.decode(raw)
  for qid, b in pairs(res.b) do
    -- A bucket that already left its window is gone: its usage no longer counts anywhere.
    if has_bucket(qid, b) then
      -- "0 - x", not "-x": Lua turns -0 into "-0", which HINCRBY refuses as a non-integer.
      bump(qid, b, 'rt', 0 - res.e)
      bump(qid, b, 'rm', 0 - res.m)
      if actual_t then
        bump(qid, b, 'ut', actual_t)
        bump(qid, b, 'um', actual_m)
      end
    end
  end
  redis.call('HDEL', R, id)
  redis.call('ZREM', Z, id)
  return 1
end

-- Reservations of gateways that died before settling stop counting once they expire.
local function sweep()
  local expired = redis.call('ZRANGEBYSCORE', Z, '-inf', now)
  for _, id in ipairs(expired) do unreserve(id, nil, nil) end
end

-- Usage (used + reserved) of one record inside its window.
local function usage(qid, mode, period)
  local bucket, oldest, frees_at = window(mode, period)
  prune(qid, oldest)
  local v = redis.call('HMGET', H, qid .. ':tot:ut', qid .. ':tot:um', qid .. ':tot:rt', qid .. ':tot:rm')
  local t, m, rt, rm = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0'), tonumber(v[4] or '0')
  return bucket, t + rt, m + rm, frees_at, rt, rm
end

if op == 'settle' then
  return unreserve(rid, tonumber(ARGV[4]), tonumber(ARGV[5]))
end
if op == 'release' then
  return unreserve(rid, nil, nil)
end

sweep()

if op == 'status' then
  local out = {}
  for i = 4, #ARGV, 5 do
    local qid = ARGV[i]
    local _, t, m, frees_at, rt, rm = usage(qid, ARGV[i + 1], ARGV[i + 2])
    out[#out + 1] = { qid, t, m, frees_at - now, rt, rm }
  end
  return out
end

-- reserve
if redis.call('HEXISTS', R, rid) == 1 then return { 1, 'already-reserved' } end
local ttl, est_t, est_m = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local buckets = {}
local remaining = {}
for i = 7, #ARGV, 5 do
  local qid, mode, period = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local limit_t, limit_m = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local bucket, t, m, frees_at = usage(qid, mode, period)
  if limit_t >= 0 and t + est_t > limit_t then return { 0, qid, 'tokens', limit_t, t, frees_at - now } end
  if limit_m >= 0 and m + est_m > limit_m then return { 0, qid, 'cost', limit_m, m, frees_at - now } end
  buckets[qid] = bucket
  remaining[#remaining + 1] = { qid, limit_t >= 0 and limit_t - t - est_t or -1, limit_m >= 0 and limit_m - m - est_m or -1, frees_at - now }
end
for qid, b in pairs(buckets) do
  add_bucket(qid, b)
  bump(qid, b, 'rt', est_t)
  bump(qid, b, 'rm', est_m)
end
redis.call('HSET', R, rid, cjson.encode({ e = est_t, m = est_m, b = buckets }))
redis.call('ZADD', Z, now + ttl, rid)
return { 1, 'reserved', remaining }
