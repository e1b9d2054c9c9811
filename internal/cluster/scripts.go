package cluster

import "github.com/redis/rueidis"

// The budget scripts share one prelude: Redis's clock, and the rolling
// windows of quota.Book kept in the account's hash xp:{id}:b. A window w
// (m: minute in 1 s buckets, h: hour in 1 min, d: day in 10 min, r:
// recipients per day in 10 min) has one field per bucket, "w:<index>"
// with index = unix seconds / bucket, and "w:t" (the sum of its live
// buckets), "w:lo" (the oldest bucket that may be stored) and "w:hd" (the
// newest bucket written, so that a clock that steps back after a failover
// never counts into an older bucket). Like quota's rings, a window holds
// one bucket more than its span: a count stays at least the full span.
//
// Reservations in flight are the sorted set xp:{id}:p (member: ticket,
// score: expiry, so that a proxy that died gives them back) and the hash
// xp:{id}:pr (ticket: recipients reserved). The cool-down is the string
// xp:{id}:cool (the provider's reply) with its expiry.
// epochLua is the check that Redis still holds what it held: the key
// xp:{nodes}:epoch, set once with a random value, is gone after Redis
// restarted empty (or was flushed). The first script that finds it gone
// sets a new one and, if its caller knew the old one, the grace key for
// graceMs: meanwhile slots are only taken back by their holders and
// budgets decided on local shares, while every proxy adds back what it
// holds (slots.go, budget.go). It returns the epoch and whether the
// caller must hold back (its epoch is old, or the grace runs).
const epochLua = `
local function epoch(ek, gk, known, cand, graceMs)
  local e = redis.call('GET', ek)
  if not e then
    redis.call('SET', ek, cand)
    e = cand
    if known ~= '' then redis.call('SET', gk, '1', 'PX', graceMs) end
  end
  if known ~= '' and known ~= e then return e, true end
  return e, redis.call('PTTL', gk) > 0
end
`

const budgetPrelude = epochLua + `
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local B = KEYS[1]
local spans = {m = {1, 61}, h = {60, 61}, d = {600, 145}, r = {600, 145}}
local function total(w)
  local b, n = spans[w][1], spans[w][2]
  local idx = math.floor(sec / b)
  local hd = tonumber(redis.call('HGET', B, w .. ':hd') or idx)
  if idx < hd then idx = hd end
  local lo = tonumber(redis.call('HGET', B, w .. ':lo') or idx)
  local tot = tonumber(redis.call('HGET', B, w .. ':t') or 0)
  local first = idx - n + 1
  if lo < first then
    for i = lo, math.min(first - 1, lo + n - 1) do
      local c = redis.call('HGET', B, w .. ':' .. i)
      if c then
        tot = tot - tonumber(c)
        redis.call('HDEL', B, w .. ':' .. i)
      end
    end
    redis.call('HSET', B, w .. ':lo', first, w .. ':t', tot)
  end
  return tot, idx
end
local function add(w, k)
  if k <= 0 then return end
  local tot, idx = total(w)
  redis.call('HINCRBY', B, w .. ':' .. idx, k)
  redis.call('HSET', B, w .. ':t', tot + k, w .. ':hd', idx)
  if not redis.call('HGET', B, w .. ':lo') then redis.call('HSET', B, w .. ':lo', idx) end
end
local function freeIn(w, limit, room)
  local b, n = spans[w][1], spans[w][2]
  local s, idx = total(w)
  for age = n - 1, 0, -1 do
    local i = idx - age
    s = s - tonumber(redis.call('HGET', B, w .. ':' .. i) or 0)
    if s + room <= limit then return (i + n) * b - sec end
  end
  return 0
end
local function pending(P, PR)
  local gone = redis.call('ZRANGEBYSCORE', P, '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', P, '-inf', now)
    redis.call('HDEL', PR, unpack(gone))
  end
  local pr = 0
  for _, v in ipairs(redis.call('HVALS', PR)) do pr = pr + tonumber(v) end
  return redis.call('ZCARD', P), pr
end
-- done applies finished tickets: ARGV[from..] in threes (ticket,
-- accepted 0/1, recipients).
local function done(P, PR, from)
  local msgs, rcpts = 0, 0
  for i = from, #ARGV, 3 do
    if ARGV[i] ~= '-' then
      redis.call('ZREM', P, ARGV[i])
      redis.call('HDEL', PR, ARGV[i])
    end
    if ARGV[i + 1] == '1' then
      msgs = msgs + 1
      rcpts = rcpts + tonumber(ARGV[i + 2])
    end
  end
  add('m', msgs); add('h', msgs); add('d', msgs); add('r', rcpts)
  redis.call('PEXPIRE', B, 90000000)
end
local function used()
  return {(total('m')), (total('h')), (total('d')), (total('r'))}
end
`

// admitScript: KEYS b, p, pr, cool[, epoch, grace]; ARGV ticket, ttl ms,
// the four limits (m, h, d, r; 0 none), the epoch this proxy knows and a
// new one ("" and "" in a Redis Cluster), then finished tickets. It
// applies the finished tickets, then answers {"ok", used m, h, d, r},
// {"deny", which window 1-4, seconds until it frees, used...}, {"cool", ms
// left, cause} or {"grace", epoch} (Redis was emptied: decide locally).
// An admitted ticket holds one recipient at once: the first RCPT costs no
// round trip (the Book checks the same recipient room at Admit).
var admitScript = rueidis.NewLuaScript(budgetPrelude + `
local P, PR, C = KEYS[2], KEYS[3], KEYS[4]
if ARGV[8] ~= '' then
  local e, grace = epoch(KEYS[5], KEYS[6], ARGV[7], ARGV[8], 15000)
  if grace then return {'grace', e} end
end
done(P, PR, 9)
local cool = redis.call('GET', C)
if cool then return {'cool', redis.call('PTTL', C), cool} end
local pm, pr = pending(P, PR)
local u = used()
local lim = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
local names = {'m', 'h', 'd', 'r'}
for i = 1, 4 do
  local room = pm + 1
  if i == 4 then room = pr + 1 end
  if lim[i] > 0 and u[i] + room > lim[i] then
    return {'deny', i, freeIn(names[i], lim[i], room), u[1], u[2], u[3], u[4]}
  end
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', P, now + ttl, ARGV[1])
redis.call('HSET', PR, ARGV[1], 1)
redis.call('PEXPIRE', P, ttl * 2)
redis.call('PEXPIRE', PR, ttl * 2)
return {'ok', u[1], u[2], u[3], u[4]}`)

// rcptScript: KEYS b, p, pr; ARGV ticket, ttl ms, recipients per day (0
// none). One more recipient for a ticket: {"ok"} or {"deny", seconds}.
var rcptScript = rueidis.NewLuaScript(budgetPrelude + `
local P, PR = KEYS[2], KEYS[3]
local _, pr = pending(P, PR)
local lim = tonumber(ARGV[3])
if lim > 0 then
  local tot = total('r')
  if tot + pr + 1 > lim then return {'deny', freeIn('r', lim, pr + 1)} end
end
redis.call('HINCRBY', PR, ARGV[1], 1)
redis.call('ZADD', P, 'NX', now + tonumber(ARGV[2]), ARGV[1])
return {'ok'}`)

// doneScript: KEYS b, p, pr[, epoch, grace]; ARGV the epoch known and a
// new one (as admitScript), then finished tickets (ticket "-" for counts
// with no reservation: those accepted while Redis was unreachable). It
// returns the windows' use, or {"grace", epoch} without counting when
// Redis was emptied (the counts are re-seeded from the mirrors).
var doneScript = rueidis.NewLuaScript(budgetPrelude + `
if ARGV[2] ~= '' then
  local e, grace = epoch(KEYS[4], KEYS[5], ARGV[1], ARGV[2], 15000)
  if grace then return {'grace', e} end
end
done(KEYS[2], KEYS[3], 3)
return used()`)

// seedScript: KEYS b; ARGV in threes (window, bucket index, count): this
// proxy's own counts, added back after Redis restarted empty. Buckets
// already out of their window are skipped.
var seedScript = rueidis.NewLuaScript(budgetPrelude + `
for i = 1, #ARGV, 3 do
  local w, at, k = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local tot, idx = total(w)
  if at > idx - spans[w][2] and at <= idx and k > 0 then
    redis.call('HINCRBY', B, w .. ':' .. at, k)
    local lo = tonumber(redis.call('HGET', B, w .. ':lo') or at)
    redis.call('HSET', B, w .. ':t', tot + k, w .. ':lo', math.min(lo, at), w .. ':hd', idx)
  end
end
redis.call('PEXPIRE', B, 90000000)
return used()`)

// statusScript: KEYS b, cool. {used m, h, d, r, cool ms left, cause}.
var statusScript = rueidis.NewLuaScript(budgetPrelude + `
local u = used()
local cool = redis.call('GET', KEYS[2]) or ''
return {u[1], u[2], u[3], u[4], redis.call('PTTL', KEYS[2]), cool}`)

// coolScript: KEYS cool; ARGV ms, cause: a cool-down that ends later than
// the current one replaces it.
var coolScript = rueidis.NewLuaScript(`
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[1]))
end
return 1`)
