-- Lua functions for the scripts that create jobs (api/admit.lua, hold_active.lua), over a
-- tenant's active jobs (tasks.quota). Scores use Redis's TIME: an API host's clock may differ
-- from the one that expires the records.
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- The tenant's active jobs, once the entries of expired records are gone.
local function count_active(active_key, now)
  redis.call('ZREMRANGEBYSCORE', active_key, '-inf', now)
  return redis.call('ZCARD', active_key)
end
-- Take a slot for each of `job_ids`, whose records expire `ttl` seconds after `now`; the set
-- expires with its newest entry, so a tenant that stops submitting leaves nothing behind.
local function hold_active(active_key, job_ids, now, ttl)
  for _, job_id in ipairs(job_ids) do redis.call('ZADD', active_key, now + ttl, job_id) end
  redis.call('EXPIRE', active_key, ttl)
end
