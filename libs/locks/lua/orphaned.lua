-- The repositories of records whose holder is dead (each once), changing nothing: what
-- adopt.lua would move, so that a holder names only those it serves when it adopts.
-- KEYS: expiry. ARGV: record key prefix, holder key prefix, the asking holder.
local out = {}
local seen = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local found = redis.call('HMGET', ARGV[1] .. id, 'holder', 'repository')
  local holder, repository = found[1], found[2]
  if holder and holder ~= '' and holder ~= ARGV[3] and repository and not seen[repository]
    and redis.call('EXISTS', ARGV[2] .. holder) == 0 then
    seen[repository] = true
    table.insert(out, repository)
  end
end
return out
