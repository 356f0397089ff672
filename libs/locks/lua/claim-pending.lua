-- A reserved record (holder '') becomes held by a lock-service.
-- KEYS: record, expiry. ARGV: lockid, holder, lockedAt, expiresAt, session. Returns 1 when
-- claimed, 0 when the record is gone or held already.
if redis.call('HGET', KEYS[1], 'holder') ~= '' then return 0 end
redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'lockedAt', ARGV[3], 'expiresAt', ARGV[4],
  'session', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
