-- include: tasks/token_bucket.lua
-- A Lua function for the read scripts (api.reads): take one token from the tenant's read
-- bucket (KEYS[1]) unless the limit is off. ARGV[1..3]: rate per second (0: off), burst, now.
local function take_read()
  local rate = tonumber(ARGV[1])
  if rate <= 0 then return {1, 0} end
  return take_tokens(KEYS[1], rate, tonumber(ARGV[2]), tonumber(ARGV[3]), 1)
end
