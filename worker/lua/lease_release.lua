-- include: lease_ours.lua
-- KEYS: job leases. ARGV: worker. Delete the ones that are still ours.
local n = 0
for _, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and ours(held, ARGV[1]) then n = n + redis.call('DEL', key) end
end
return n
