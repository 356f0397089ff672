-- Creates a lock record unless it exists or the --lockedfiles bound is reached.
-- KEYS: record, expiry, cover. ARGV: limit, then lockid, repository, key, holder, lockedAt,
-- expiresAt, session. Returns 1 when created, 0 when not.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'lockid', ARGV[2], 'repository', ARGV[3], 'key', ARGV[4],
  'holder', ARGV[5], 'lockedAt', ARGV[6], 'expiresAt', ARGV[7], 'session', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[3] .. ' ' .. ARGV[4], 1)
return 1
