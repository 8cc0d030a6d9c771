-- tunegate single-flight, step 1: lead, follow, or read an outcome already published.
-- KEYS[1] the lease   KEYS[2] the published outcome
-- ARGV[1] our token   ARGV[2] lease ms
-- Returns {1} lead, {0} follow, {2, payload} an outcome published within the last seconds.
local r = redis.call('GET', KEYS[2])
if r then return {2, r} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
return {0}
