-- Deletes a lock record and its cover count.
-- KEYS: record, expiry, cover. ARGV: lockid, mode, value. mode "any" deletes; "expired" only
-- when expiresAt <= value; "holder" only when the holder is value. Returns the record's fields
-- or nil.
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return nil end
local record = {}
for i = 1, #fields, 2 do record[fields[i]] = fields[i + 1] end
if ARGV[2] == 'expired' and tonumber(record.expiresAt) > tonumber(ARGV[3]) then return nil end
if ARGV[2] == 'holder' and record.holder ~= ARGV[3] then return nil end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local cover = record.repository .. ' ' .. record.key
if redis.call('HINCRBY', KEYS[3], cover, -1) <= 0 then redis.call('HDEL', KEYS[3], cover) end
return fields
