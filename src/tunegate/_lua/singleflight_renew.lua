-- tunegate single-flight: extend our lease; 0 when another process holds it now.
-- KEYS[1] the lease   ARGV[1] our token   ARGV[2] lease ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
