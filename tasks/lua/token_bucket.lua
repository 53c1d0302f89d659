-- A Lua function: take `cost` tokens from the bucket at `key` (hash: tokens, ts), refilled at
-- `rate` per second up to `burst`. Returns {allowed, milliseconds until `cost` tokens are
-- there}. The submit limit (take_tokens.lua) and the read limit (api/lua/read_*.lua) use it.
local function take_tokens(key, rate, burst, now, cost)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local allowed = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  if allowed == 1 then return {1, 0} end
  return {0, math.ceil((cost - tokens) / rate * 1000)}
end
