-- tunegate single-flight, step 1 folded with the cache lookup (the cache in the same Redis):
-- one round trip answers a hit, or claims the lease on a miss (tunegate/_coalesce.py).
-- KEYS[1] the cache entry   KEYS[2] the lease   KEYS[3] the published outcome
-- ARGV[1] now (the cache's wall clock; '' skips the lookup)   ARGV[2] our token
-- ARGV[3] lease ms
-- Returns {3, entry} fresh (nothing claimed); {2, outcome, entry} published; {1, entry} lead
-- (the lease is ours, also when we already held it); {0, entry} follow. entry: the stored
-- string or false. Fresh means now < fresh_until, the first stamp of the entry's header.
local v = false
if ARGV[1] ~= '' then
  v = redis.call('GET', KEYS[1])
  if v then
    local fresh = tonumber(string.match(v, '^TG1 (%S+) '))
    if fresh and tonumber(ARGV[1]) < fresh then return {3, v} end
  end
end
local r = redis.call('GET', KEYS[3])
if r then return {2, r, v} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {1, v} end
if redis.call('GET', KEYS[2]) == ARGV[2] then return {1, v} end
return {0, v}
