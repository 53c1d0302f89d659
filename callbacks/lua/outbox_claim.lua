-- KEYS[1]: outbox. ARGV: now, lease end, how many, lease token, event key prefix.
-- Event keys are built here from the member (a standalone Redis, not a cluster).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local ek = ARGV[5] .. id
  if redis.call('EXISTS', ek) == 0 then
    redis.call('ZREM', KEYS[1], id)  -- its job expired: nothing left to tell
  else
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', ek, 'lease', ARGV[4])
    redis.call('HSETNX', ek, 'first_ts', ARGV[1])
    local f = redis.call('HMGET', ek, 'job_id', 'type', 'first_ts', 'attempts', 'progress')
    table.insert(out, {id, f[1] or '', f[2] or '', f[3] or ARGV[1], f[4] or '0', f[5] or ''})
  end
end
return out
