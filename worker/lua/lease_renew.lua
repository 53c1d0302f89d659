-- include: lease_ours.lua
-- KEYS: job leases. ARGV: worker, milliseconds, then per key the name it should have (the
-- running process's run name, or the bare worker mark). Take free ones, name our bare marks
-- whose job now runs, renew ours (a run keeps its name), never touch another's.
local n = 0
for i, key in ipairs(KEYS) do
  local held, name = redis.call('GET', key), ARGV[i + 2]
  if (not held) or (held == ARGV[1] and name ~= ARGV[1]) then
    redis.call('SET', key, name, 'PX', ARGV[2])
    n = n + 1
  elseif ours(held, ARGV[1]) then
    redis.call('PEXPIRE', key, ARGV[2])
    n = n + 1
  end
end
return n
