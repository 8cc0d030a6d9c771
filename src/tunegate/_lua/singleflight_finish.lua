-- tunegate single-flight, last step: publish the outcome, then drop our lease.
-- KEYS[1] the lease   KEYS[2] the published outcome
-- ARGV[1] our token   ARGV[2] payload ('' to publish nothing)   ARGV[3] outcome ms
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
