-- Moves records whose holder has no liveness key to the new holder.
-- KEYS: expiry. ARGV: record key prefix, holder key prefix, new holder, max, then the served
-- repositories (none: any). Returns the lockids adopted.
local served = nil
if #ARGV > 4 then
  served = {}
  for i = 5, #ARGV do served[ARGV[i]] = true end
end
local adopted = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local record = ARGV[1] .. id
  local found = redis.call('HMGET', record, 'holder', 'repository')
  local holder, repository = found[1], found[2]
  if holder and holder ~= '' and holder ~= ARGV[3]
    and (served == nil or served[repository])
    and redis.call('EXISTS', ARGV[2] .. holder) == 0 then
    redis.call('HSET', record, 'holder', ARGV[3])
    table.insert(adopted, id)
    if #adopted >= tonumber(ARGV[4]) then break end
  end
end
return adopted
