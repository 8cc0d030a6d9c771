-- tunegate circuit breaker: the Redis twin of tunegate/_policy/breaker.py.
-- Read that file's theory of operation and transition table first: this script runs the
-- same table, atomically, on state every process shares. tests/test_breaker_redis.py
-- drives both with the same inputs and compares them field by field.
--
-- KEYS[1]  hash  tunegate:cb:{name}          st (state), ep (epoch), f (failures),
--                                            s (successes), oa (opened_at)
-- KEYS[2]  zset  tunegate:cb:{name}:probes   half-open leases: member token, score expiry
-- ARGV[1]  operation: allow | success | failure | ignored | reset | peek
-- ARGV[2]  the permit's epoch (outcomes only)
-- ARGV[3]  probe token: the lease to take (allow) or to give back (outcomes); "" for none
-- ARGV[4]  failure_threshold     ARGV[5]  success_threshold
-- ARGV[6]  timeout (s)           ARGV[7]  half_open_max_calls
-- ARGV[8]  probe_lease (s)       ARGV[9]  key ttl (ms), refreshed on every write
-- ARGV[10] now, UNIX seconds; "" means the server's TIME (only the parity test passes it)
--
-- Returns {old_state, state, epoch, failures, successes, opened_at, admitted, retry_at,
--          in_flight, now}; numbers travel as strings ("" for none) because Redis turns a
-- Lua number into an integer reply.

local CLOSED, OPEN, HALF_OPEN = 'closed', 'open', 'half_open'

local op, token = ARGV[1], ARGV[3]
local failure_threshold = tonumber(ARGV[4])
local success_threshold = tonumber(ARGV[5])
local timeout = tonumber(ARGV[6])
local max_probes = tonumber(ARGV[7])
local probe_lease = tonumber(ARGV[8])
local key_ttl = ARGV[9]

local now = tonumber(ARGV[10])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Lua's own number formatting keeps 14 digits: too few for a UNIX time in microseconds.
local function num(x)
  if x == nil then return '' end
  return string.format('%.17g', x)
end

local h = redis.call('HMGET', KEYS[1], 'st', 'ep', 'f', 's', 'oa')
local state = h[1] or CLOSED
local epoch = tonumber(h[2]) or 0
local failures = tonumber(h[3]) or 0
local successes = tonumber(h[4]) or 0
local opened_at = tonumber(h[5])
local old_state = state
local dirty = false

local function enter(next_state)
  if next_state == OPEN then
    opened_at = now
  elseif next_state == CLOSED then
    opened_at = nil
  end
  state, epoch, failures, successes, dirty = next_state, epoch + 1, 0, 0, true
  redis.call('DEL', KEYS[2])
end

-- advance(): what time alone does.
if state == OPEN and now >= opened_at + timeout then
  enter(HALF_OPEN)
end
if state == HALF_OPEN then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', num(now))
end

local admitted = 0

if op == 'allow' then
  if state == CLOSED then
    admitted = 1
  elseif state == HALF_OPEN and redis.call('ZCARD', KEYS[2]) < max_probes then
    redis.call('ZADD', KEYS[2], num(now + probe_lease), token)
    redis.call('PEXPIRE', KEYS[2], key_ttl)
    admitted = 1
  end
elseif op == 'reset' then
  enter(CLOSED)
elseif op == 'success' or op == 'failure' or op == 'ignored' then
  -- A permit from an earlier epoch is stale and changes nothing; OPEN admits nobody.
  if tonumber(ARGV[2]) == epoch and state ~= OPEN then
    if state == CLOSED then
      if op == 'success' and failures > 0 then
        failures, dirty = 0, true
      elseif op == 'failure' then
        failures, dirty = failures + 1, true
        if failures >= failure_threshold then enter(OPEN) end
      end
    else -- HALF_OPEN: give the slot back first, whatever the outcome
      redis.call('ZREM', KEYS[2], token)
      if op == 'success' then
        successes, dirty = successes + 1, true
        if successes >= success_threshold then enter(CLOSED) end
      elseif op == 'failure' then
        enter(OPEN)
      end
    end
  end
elseif op ~= 'peek' then
  return redis.error_reply('tunegate breaker: unknown operation ' .. tostring(op))
end

if dirty then
  redis.call('HSET', KEYS[1], 'st', state, 'ep', epoch, 'f', failures, 's', successes)
  if opened_at == nil then
    redis.call('HDEL', KEYS[1], 'oa')
  else
    redis.call('HSET', KEYS[1], 'oa', num(opened_at))
  end
  redis.call('PEXPIRE', KEYS[1], key_ttl)
end

-- retry_at(): when a refused caller may expect a probe to be let through.
local in_flight, retry_at = 0, nil
if state == OPEN then
  retry_at = opened_at + timeout
elseif state == HALF_OPEN then
  in_flight = redis.call('ZCARD', KEYS[2])
  if in_flight >= max_probes then
    retry_at = tonumber(redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2])
  end
end

return {old_state, state, tostring(epoch), tostring(failures), tostring(successes),
        num(opened_at), admitted, num(retry_at), in_flight, num(now)}
