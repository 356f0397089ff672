-- The lockids of the records a holder holds, changing nothing: what it must hold in the
-- repository (a record may name it while it holds no lock: written again by a gateway's
-- keeplocked after Redis lost data, or as it was on a new primary that was behind).
-- KEYS: expiry. ARGV: record key prefix, holder.
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('HGET', ARGV[1] .. id, 'holder') == ARGV[2] then
    table.insert(out, id)
  end
end
return out
