-- tunegate token bucket in GCRA form: the Redis twin of tunegate/_policy/bucket.py.
-- Every operation is one atomic call; times are microseconds on the Redis server clock.
--
-- KEYS[1]  the provider's hash, e.g. tunegate:rl:{spotify}; fields:
--            tat     theoretical arrival time (when the bucket is full again)
--            paused  no token before this
--            rate, cap   a shared override set by adjust_rate (absent: the caller's values)
--            pre     the tat just before a pause raised it (what resume restores)
-- KEYS[2]  optional: the bucket's members, a sorted set of member id -> last seen (us), so
--          each process knows its share of the quota when Redis is lost (ratelimit.py)
-- ARGV[1]  operation: acquire | pause | resume | rate | release | peek
-- ARGV[2]  the caller's configured rate (tokens per second)
-- ARGV[3]  the caller's configured capacity
-- ARGV[4]  idle TTL in ms: the key lives this long after the bucket is full and unpaused
-- ARGV[5]  now in microseconds, or '' for the server clock (TIME); the parity tests pass it
-- ARGV[6], ARGV[7]  operation arguments:
--   acquire  ARGV[6] max wait (us) or '' for none
--            ARGV[7] tokens to charge first ('' or absent: none): what a process granted on
--                    its own while Redis was away, owed by the shared bucket from now on
--            ARGV[8] member id to mark as seen now ('' or absent: none; sent once in a while)
--            ARGV[9] member TTL in ms: members not seen for this long are not counted
--            ARGV[10] tokens to take together ('' or absent: 1), all or none: the slot
--                    arithmetic repeated (the policy's reserve_tokens); wait is the last's
--            ARGV[11] member id to rank without marking it ('' or absent: none), and
--            ARGV[12] the member count its rank was last heard with: the rank is worked
--                    out again only when the count differs (a member came or went)
--            -> {granted 0|1, wait us (rounded up), tat after, tat before, members, rate, cap,
--                ahead, rank}: refusal reserves nothing (a charge stays); members is 0 without
--                KEYS[2]; rate and cap are the ones in force (an override included); ahead
--                is the TAT minus now in us (how far the fleet has reserved); rank is, when
--                ARGV[8] marked a member (or ARGV[11] asked), how many live members' ids
--                sort before its id (the policy's member_rank: its turn in a phased
--                share), else -1
--   pause    ARGV[6] seconds to pause, in us     -> paused-until (us)
--   resume   end a pause now: the bucket restarts empty, keeping the backlog reserved
--            before the pause; slots reserved behind the pause stand -> 1 if paused, else 0
--   rate     ARGV[6] new rate, ARGV[7] new capacity; both '' drop the override -> 1
--   release  ARGV[6] tat after, ARGV[7] tat before, as acquire returned them
--            -> 1 if the slot was given back (nobody reserved after it), else 0
--   peek     -> {now, tat, paused, rate, capacity}
-- Timestamps travel as '%.17g' strings: they round-trip a double exactly, which `release`
-- relies on, whereas Lua numbers returned to Redis are truncated to integers.

local key = KEYS[1]
local op = ARGV[1]
local idle_ms = tonumber(ARGV[4])

local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local f = redis.call('HMGET', key, 'tat', 'paused', 'rate', 'cap', 'pre')
local tat = tonumber(f[1]) or now -- no key: a full bucket
local paused = tonumber(f[2]) or 0
local rate = tonumber(f[3]) or tonumber(ARGV[2])
local cap = tonumber(f[4]) or tonumber(ARGV[3])

local function fmt(x)
  return string.format('%.17g', x)
end

local function interval(r)
  return 1000000 / r
end

local function tolerance(r, c)
  return (c - 1) * 1000000 / r
end

local function save(new_tat, new_paused)
  redis.call('HSET', key, 'tat', fmt(new_tat), 'paused', fmt(new_paused))
  local busy_ms = math.ceil((math.max(new_tat, new_paused) - now) / 1000)
  redis.call('PEXPIRE', key, math.max(busy_ms, 0) + idle_ms)
end

-- How many of the live member ids sort before `member`.
local function rank_of(mkey, since, member)
  local rank = 0
  for _, other in ipairs(redis.call('ZRANGEBYSCORE', mkey, since, '+inf')) do
    if other < member then
      rank = rank + 1
    end
  end
  return rank
end

-- Mark ARGV[8] seen (pruning the long gone) and count the members seen within the TTL;
-- when marking (or asked by ARGV[11] after a change of count), also its rank, else -1.
local function members()
  local mkey = KEYS[2]
  if not mkey then
    return 0, -1
  end
  local ttl_ms = tonumber(ARGV[9]) or 0
  local since = fmt(now - ttl_ms * 1000)
  local member = ARGV[8]
  if member and member ~= '' then
    redis.call('ZADD', mkey, fmt(now), member)
    redis.call('ZREMRANGEBYSCORE', mkey, '-inf', '(' .. since)
    redis.call('PEXPIRE', mkey, ttl_ms)
    local seen = redis.call('ZCOUNT', mkey, since, '+inf')
    return seen, rank_of(mkey, since, member)
  end
  local seen = redis.call('ZCOUNT', mkey, since, '+inf')
  local ranked = ARGV[11]
  if ranked and ranked ~= '' and seen ~= tonumber(ARGV[12]) then
    return seen, rank_of(mkey, since, ranked)
  end
  return seen, -1
end

if op == 'acquire' then
  local seen, rank = members()
  local charge = tonumber(ARGV[7])
  if charge and charge > 0 then
    tat = math.max(tat, now) + charge * interval(rate)
  end
  -- acquire() refuses more tokens than the capacity; the ceiling keeps a stray direct call
  -- from spinning Redis
  local tokens = math.min(math.max(1, math.floor(tonumber(ARGV[10]) or 1)), 100000)
  local start, new_tat = now, tat
  for _ = 1, tokens do
    start = math.max(now, new_tat - tolerance(rate, cap), paused)
    new_tat = math.max(new_tat, start) + interval(rate)
  end
  local wait = start - now
  if wait < 1 then
    wait = 0 -- float noise from summing intervals (the Python policy's _NOISE)
  end
  local max_wait = tonumber(ARGV[6])
  if max_wait and wait > max_wait then
    if charge and charge > 0 then
      save(tat, paused)
    end
    return {0, math.ceil(wait), '', '', seen, fmt(rate), fmt(cap), fmt(tat - now), rank}
  end
  save(new_tat, paused)
  return {1, math.ceil(wait), fmt(new_tat), fmt(tat), seen, fmt(rate), fmt(cap),
          fmt(new_tat - now), rank}
elseif op == 'pause' then
  local resume_at = math.max(paused, now + math.max(0, tonumber(ARGV[6])))
  local new_tat = resume_at + tolerance(rate, cap)
  if new_tat > tat then
    redis.call('HSET', key, 'pre', fmt(tat))
  else
    new_tat = tat
  end
  save(new_tat, resume_at)
  return fmt(resume_at)
elseif op == 'resume' then
  -- the Python policy's resume(); 'pre' is its `before`
  if paused <= now then
    return 0
  end
  if tat - (paused + tolerance(rate, cap)) > 1 then
    save(tat, now) -- callers asleep until their slots behind the pause keep them
  else
    save(math.max(tonumber(f[5]) or now, now + tolerance(rate, cap)), now)
  end
  return 1
elseif op == 'rate' then
  local new_rate = tonumber(ARGV[6]) or tonumber(ARGV[2])
  local new_cap = tonumber(ARGV[7]) or tonumber(ARGV[3])
  if tat > now then
    -- keep the tokens already owed, counted at the new rate
    tat = now + (tat - now) * rate / new_rate
  end
  if ARGV[6] == '' then
    redis.call('HDEL', key, 'rate', 'cap')
  else
    redis.call('HSET', key, 'rate', ARGV[6], 'cap', ARGV[7])
  end
  save(tat, paused)
  return 1
elseif op == 'release' then
  if f[1] == ARGV[6] then
    redis.call('HSET', key, 'tat', ARGV[7])
    return 1
  end
  return 0
elseif op == 'peek' then
  return {fmt(now), fmt(tat), fmt(paused), fmt(rate), fmt(cap)}
end
return redis.error_reply('token_bucket.lua: unknown operation ' .. tostring(op))
