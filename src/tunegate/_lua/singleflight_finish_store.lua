-- Single-flight FINISH with the cache write of the answer in the same round trip.
-- KEYS[1] the lease, KEYS[2] the published outcome, KEYS[3] the cache entry.
-- ARGV[1] token, ARGV[2] outcome ('' for none), ARGV[3] outcome ms,
-- ARGV[4] entry ('' for none), ARGV[5] entry ms. Publish, write, then drop our lease.
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
