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
-- shrink:  ARGV[4] tokens, ARGV[5] micro the reservation holds from now on (never more than before)
-- reserve returns per record what is left, ms until the oldest usage frees, and ms until the
--          bucket it booked into closes
-- status:  per record from ARGV[4] as for reserve; returns used+reserved, reset and reserved alone
-- count:   ARGV[3] "", ARGV[4] amount, then one record as for reserve: books amount as used now if
--          it fits the token limit (a provider's requests per minute): no reservation record, no
--          expiry entry, no sweep, so its cost does not grow with the traffic. Not idempotent: a
--          count resent after a reconnect counts twice (a request refused early, never one too many).
-- A request_id starting "lease:" is a gateway process's lease of many requests' budget: if it
-- expires still held (the process died), it is booked whole as used, not released, since the
-- usage of the requests it served was never reported and may have been billed.
-- Every operation on one request_id is idempotent: ioredis may resend a command after a reconnect.
-- Every argument is checked before the first write (bounds as in amounts.ts): Redis does not roll
-- back a script that fails half way, and a half-booked settle was later released again by the sweep.
-- A bad one gets the error "ERR quota: <argument> invalid" and nothing changes.

-- 1e13: cjson and Lua's number printing (%.14g) keep 14 significant digits, so every amount
-- up to it is stored and read back exactly.
local MAX_AMOUNT = 10000000000000
-- 2^53 - 1: limits are compared as doubles, never stored.
local MAX_LIMIT = 9007199254740991
local MAX_TTL_MS = 31 * 86400000
local MAX_NOW_MS = 8640000000000000
local MAX_NAME_BYTES = 200
local OPS = { reserve = true, settle = true, release = true, status = true, count = true, shrink = true }
local MODES = { fixed = true, sliding = true }
local PERIODS = { minute = true, day = true, month = true }

-- An integer in [lo, hi] written as plain digits (a minus sign only where lo < 0), else nil.
-- tonumber alone would take '1e3', '0x10', ' 7', 'inf', 'nan' and fractions.
local function int_arg(s, lo, hi)
  if type(s) ~= 'string' or #s == 0 or #s > 20 then return nil end
  if not string.find(s, lo < 0 and '^%-?%d+$' or '^%d+$') then return nil end
  local n = tonumber(s)
  if n == nil or n < lo or n > hi then return nil end
  return n
end

-- A request id or qid: non-empty, bounded, without C0, DEL or C1 (UTF-8 \194\128-\194\159) controls.
local function is_name(s)
  return type(s) == 'string' and #s > 0 and #s <= MAX_NAME_BYTES
    and not string.find(s, '[%z\1-\31\127]') and not string.find(s, '\194[\128-\159]')
end

-- The lines from ARGV[first] on, 5 values each; returns what is wrong with them, or nil.
local function bad_lines(first)
  if (#ARGV - first + 1) % 5 ~= 0 then return 'line count' end
  for i = first, #ARGV, 5 do
    local at = 'line ' .. string.format('%d', (i - first) / 5 + 1) .. ' '
    if not is_name(ARGV[i]) then return at .. 'qid' end
    if not MODES[ARGV[i + 1]] then return at .. 'mode' end
    if not PERIODS[ARGV[i + 2]] then return at .. 'period' end
    if not int_arg(ARGV[i + 3], -1, MAX_LIMIT) then return at .. 'token_limit' end
    if not int_arg(ARGV[i + 4], -1, MAX_LIMIT) then return at .. 'micro_limit' end
  end
  return nil
end

-- The first argument that is not valid for its op, or nil.
local function bad_argument()
  if #KEYS ~= 3 then return 'keys' end
  local op = ARGV[1]
  if not OPS[op] then return 'op' end
  if ARGV[2] ~= '' and not int_arg(ARGV[2], 0, MAX_NOW_MS) then return 'now' end
  if op == 'status' then
    if ARGV[3] ~= '' then return 'request_id' end
    return bad_lines(4)
  end
  if op == 'count' then
    if ARGV[3] ~= '' then return 'request_id' end
    if #ARGV ~= 9 then return 'argument count' end
    if not int_arg(ARGV[4], 1, MAX_AMOUNT) then return 'amount' end
    return bad_lines(5)
  end
  if not is_name(ARGV[3]) then return 'request_id' end
  if op == 'release' then
    if #ARGV ~= 3 then return 'argument count' end
    return nil
  end
  if op == 'settle' or op == 'shrink' then
    if #ARGV ~= 5 then return 'argument count' end
    if not int_arg(ARGV[4], 0, MAX_AMOUNT) then return 'tokens' end
    if not int_arg(ARGV[5], 0, MAX_AMOUNT) then return 'micro' end
    return nil
  end
  if not int_arg(ARGV[4], 1, MAX_TTL_MS) then return 'ttl_ms' end
  if not int_arg(ARGV[5], 0, MAX_AMOUNT) then return 'tokens' end
  if not int_arg(ARGV[6], 0, MAX_AMOUNT) then return 'micro' end
  return bad_lines(7)
end

local bad = bad_argument()
if bad then return redis.error_reply('ERR quota: ' .. bad .. ' invalid') end

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

-- The bucket `now` falls in, the oldest bucket id still inside the window, when the window's
-- oldest usage stops counting (for retry-after), and when the bucket `now` falls in closes (what
-- is booked into it later than that is counted as of an earlier time).
local function window(mode, period)
  if mode == 'fixed' then
    if period == 'month' then
      local s = month_start(now)
      local e = next_month_start(now)
      return s, s, e, e
    end
    local p = period_ms(period)
    local s = math.floor(now / p) * p
    return s, s, s + p, s + p
  end
  local p = period_ms(period)
  local w = p / SLIDING_BUCKETS
  local b = math.floor(now / w) * w
  -- Conservative: the bucket holding the window's start is partly inside it and counts whole, so
  -- usage is never under-counted (a window is a period plus up to one bucket).
  local oldest = math.floor((now - p) / w) * w
  return b, oldest, oldest + w + p, b + w
end

local function split(s)
  local out = {}
  if s then for id in string.gmatch(s, '[^,]+') do out[#out + 1] = tonumber(id) end end
  return out
end

local function field(qid, b, k)
  return qid .. ':' .. string.format('%d', b) .. ':' .. k
end

-- Every number sent to Redis goes through %d: tostring writes 1e+15 or -0, which HINCRBY refuses.
local function incr(key, f, n)
  redis.call('HINCRBY', key, f, string.format('%d', n))
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
      if n ~= 0 then incr(H, qid .. ':tot:' .. kinds[i], 0 - n) end
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

-- kept: the bucket ids usage() just read (saves reading the list again).
local function add_bucket(qid, bucket, kept)
  for _, b in ipairs(kept) do
    if b == bucket then return end
  end
  local ids = {}
  for i, b in ipairs(kept) do ids[i] = string.format('%d', b) end
  ids[#ids + 1] = string.format('%d', bucket)
  redis.call('HSET', H, qid .. ':list', table.concat(ids, ','))
end

-- Adds to one bucket and to the record's running total alike.
local function bump(qid, b, k, n)
  if n == 0 then return end
  incr(H, field(qid, b, k), n)
  incr(H, qid .. ':tot:' .. k, n)
end

-- A number a stored reservation may hold: a non-negative integer that %d writes exactly. Not
-- MAX_AMOUNT: a record from before the argument checks may hold more, and is still good.
local function is_stored_int(n)
  return type(n) == 'number' and n == math.floor(n) and n >= 0 and n <= MAX_LIMIT
end

-- Takes a reservation back out of the counters; with actual usage, books that as used. Every
-- change is worked out before the first write, so it applies whole or not at all.
-- book_whole: books the reservation's own amounts as used (an expired lease).
local function unreserve(id, actual_t, actual_m, book_whole)
  local raw = redis.call('HGET', R, id)
  if not raw then return 0 end
  local ok, res = pcall(cjson.decode, raw)
  local changes = {}
  local whole = ok and type(res) == 'table' and is_stored_int(res.e) and is_stored_int(res.m) and type(res.b) == 'table'
  if whole and book_whole then actual_t, actual_m = res.e, res.m end
  if whole then
    for qid, b in pairs(res.b) do
      if type(qid) ~= 'string' or not is_stored_int(b) then
        whole = false
      -- A bucket that already left its window is gone: its usage no longer counts anywhere.
      elseif has_bucket(qid, b) then
        changes[#changes + 1] = { qid, b, 'rt', 0 - res.e }
        changes[#changes + 1] = { qid, b, 'rm', 0 - res.m }
        if actual_t then
          changes[#changes + 1] = { qid, b, 'ut', actual_t }
          changes[#changes + 1] = { qid, b, 'um', actual_m }
        end
      end
    end
  end
  -- A record that does not decode is dropped with the counters untouched (its reservation counts
  -- until its window ends): failing instead would fail every sweep of this entity for good.
  if whole then
    for _, c in ipairs(changes) do bump(c[1], c[2], c[3], c[4]) end
  end
  redis.call('HDEL', R, id)
  redis.call('ZREM', Z, id)
  return whole and 1 or 0
end

-- Reservations of gateways that died before settling stop counting once they expire.
local function sweep()
  local expired = redis.call('ZRANGEBYSCORE', Z, '-inf', now)
  for _, id in ipairs(expired) do unreserve(id, nil, nil, string.sub(id, 1, 6) == 'lease:') end
end

-- Usage (used + reserved) of one record inside its window.
local function usage(qid, mode, period)
  local bucket, oldest, frees_at = window(mode, period)
  local kept = prune(qid, oldest)
  -- A sliding window frees when its oldest bucket holding usage leaves it, not merely its oldest.
  if mode == 'sliding' and #kept > 0 then
    local first = kept[1]
    for _, b in ipairs(kept) do if b < first then first = b end end
    frees_at = frees_at + (first - oldest)
  end
  local v = redis.call('HMGET', H, qid .. ':tot:ut', qid .. ':tot:um', qid .. ':tot:rt', qid .. ':tot:rm')
  local t, m, rt, rm = tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0'), tonumber(v[4] or '0')
  return bucket, t + rt, m + rm, frees_at, rt, rm, kept
end

if op == 'settle' then
  return unreserve(rid, int_arg(ARGV[4], 0, MAX_AMOUNT), int_arg(ARGV[5], 0, MAX_AMOUNT))
end
if op == 'release' then
  return unreserve(rid, nil, nil)
end

-- shrink: a held reservation (a lease that takes no more requests) counts only ARGV[4] tokens and
-- ARGV[5] micro from now on, what its requests still may use; never more than it did.
if op == 'shrink' then
  local raw = redis.call('HGET', R, rid)
  if not raw then return 0 end
  local ok, res = pcall(cjson.decode, raw)
  if not (ok and type(res) == 'table' and is_stored_int(res.e) and is_stored_int(res.m) and type(res.b) == 'table') then return 0 end
  local to_t, to_m = math.min(res.e, int_arg(ARGV[4], 0, MAX_AMOUNT)), math.min(res.m, int_arg(ARGV[5], 0, MAX_AMOUNT))
  for qid, b in pairs(res.b) do
    if type(qid) == 'string' and is_stored_int(b) and has_bucket(qid, b) then
      bump(qid, b, 'rt', to_t - res.e)
      bump(qid, b, 'rm', to_m - res.m)
    end
  end
  res.e, res.m = to_t, to_m
  redis.call('HSET', R, rid, cjson.encode(res))
  return 1
end

if op == 'count' then
  local amount, qid, limit_t = int_arg(ARGV[4], 1, MAX_AMOUNT), ARGV[5], int_arg(ARGV[8], -1, MAX_LIMIT)
  local bucket, t, _, frees_at, _, _, kept = usage(qid, ARGV[6], ARGV[7])
  if limit_t >= 0 and t + amount > limit_t then return { 0, limit_t, t, frees_at - now } end
  add_bucket(qid, bucket, kept)
  bump(qid, bucket, 'ut', amount)
  local _, _, _, closes = window(ARGV[6], ARGV[7])
  return { 1, closes - now }
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
local ttl, est_t, est_m = int_arg(ARGV[4], 1, MAX_TTL_MS), int_arg(ARGV[5], 0, MAX_AMOUNT), int_arg(ARGV[6], 0, MAX_AMOUNT)
local buckets = {}
local kept_of = {}
local remaining = {}
for i = 7, #ARGV, 5 do
  local qid, mode, period = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local limit_t, limit_m = int_arg(ARGV[i + 3], -1, MAX_LIMIT), int_arg(ARGV[i + 4], -1, MAX_LIMIT)
  local bucket, t, m, frees_at, _, _, kept = usage(qid, mode, period)
  kept_of[qid] = kept
  if limit_t >= 0 and t + est_t > limit_t then return { 0, qid, 'tokens', limit_t, t, frees_at - now } end
  if limit_m >= 0 and m + est_m > limit_m then return { 0, qid, 'cost', limit_m, m, frees_at - now } end
  buckets[qid] = bucket
  local _, _, _, closes = window(mode, period)
  remaining[#remaining + 1] = { qid, limit_t >= 0 and limit_t - t - est_t or -1, limit_m >= 0 and limit_m - m - est_m or -1, frees_at - now, closes - now }
end
for qid, b in pairs(buckets) do
  add_bucket(qid, b, kept_of[qid])
  bump(qid, b, 'rt', est_t)
  bump(qid, b, 'rm', est_m)
end
redis.call('HSET', R, rid, cjson.encode({ e = est_t, m = est_m, b = buckets }))
redis.call('ZADD', Z, string.format('%d', now + ttl), rid)
return { 1, 'reserved', remaining }
