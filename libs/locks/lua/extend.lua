-- Moves the expiry of an existing lock record.
-- KEYS: record, expiry. ARGV: lockid, expiresAt. Returns 1 when extended, 0 when it is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'expiresAt', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
