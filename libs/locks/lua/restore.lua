-- Records again a lock its holder still holds (after Redis lost data, or another primary took
-- over), whatever the bound: creates the record when it is gone; when the same holder's record
-- is there with an earlier expiry (the new primary missed the last extends), moves its expiry to
-- the one given. A record of another holder stays as it is.
-- KEYS: record, expiry, cover. ARGV: lockid, repository, key, holder, lockedAt, expiresAt,
-- session. Returns 1 when created, 2 when its expiry was moved, 0 when left as it was.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local found = redis.call('HMGET', KEYS[1], 'holder', 'expiresAt')
  if found[1] ~= ARGV[4] or tonumber(found[2]) >= tonumber(ARGV[6]) then return 0 end
  redis.call('HSET', KEYS[1], 'expiresAt', ARGV[6])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
  return 2
end
redis.call('HSET', KEYS[1], 'lockid', ARGV[1], 'repository', ARGV[2], 'key', ARGV[3],
  'holder', ARGV[4], 'lockedAt', ARGV[5], 'expiresAt', ARGV[6], 'session', ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[2] .. ' ' .. ARGV[3], 1)
return 1
