-- tunegate: drop a lease only if it is still ours (the Spotify token refresh's lease).
-- KEYS[1] the lease   ARGV[1] our owner tag
-- Returns 1 when dropped, 0 when another owner holds it (or it expired).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
