-- include: tasks/active.lua tasks/token_bucket.lua
-- A submit (api.intake), all of it in one step: the Idempotency-Key, the rate limit, the
-- quota, then the records, indexes, active jobs, pending lists and the key's outcome.
-- KEYS[1]: the tenant's active jobs; KEYS[2]: its job index; KEYS[3]: the Idempotency-Key's
-- record (or KEYS[1] again when there is none); KEYS[4]: its index of queued jobs
-- (keys.TENANT_STATUS_JOBS); KEYS[5]: its submit rate bucket.
-- ARGV: limit (-1: none), n, record TTL, index prune bound, idempotency value ('' for none),
-- idempotency TTL, tenant, rate per second (0: no limit), burst, job key prefix, then per
-- job: job key, pending list, pending-tenants ring, job id, its record's fields as one JSON
-- object of strings (one argument, not two per field: packing arguments was a submit's
-- largest cost in the API's Redis client, bench.api).
-- Returns {1, active after} admitted; {0, active} over the quota; {3, wait ms} over the rate
-- limit; {2, the key's record, HGETALL of each of its jobs} when the key was used before
-- (nothing else is done: a replay takes no token).
-- Key names come in ARGV because they depend on each job; we run one Redis, not a cluster.
if ARGV[5] ~= '' then
  local used = redis.call('GET', KEYS[3])
  if used then
    local reply = {2, used}
    local jobs = cjson.decode(used)['jobs']
    if type(jobs) == 'table' then
      for _, job_id in ipairs(jobs) do reply[#reply + 1] = redis.call('HGETALL', ARGV[10] .. job_id) end
    end
    return reply
  end
end
local now = redis_now()
local rate = tonumber(ARGV[8])
if rate > 0 then
  local taken = take_tokens(KEYS[5], rate, tonumber(ARGV[9]), now, 1)
  if taken[1] == 0 then return {3, taken[2]} end
end
local limit, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local active = count_active(KEYS[1], now)
if limit >= 0 and active + n > limit then return {0, active} end
local ttl, tenant = tonumber(ARGV[3]), ARGV[7]
local held = {}
local i = 11
for _ = 1, n do
  local job_key, pending, ring, job_id = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local fields = {}
  for name, value in pairs(cjson.decode(ARGV[i + 4])) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  redis.call('HSET', job_key, unpack(fields))
  redis.call('EXPIRE', job_key, ttl)
  redis.call('ZADD', KEYS[2], 0, job_id)
  redis.call('ZADD', KEYS[4], 0, job_id)
  -- The ring holds a tenant exactly while its pending list is not empty.
  if redis.call('LPUSH', pending, job_id) == 1 then redis.call('RPUSH', ring, tenant) end
  held[#held + 1] = job_id
  i = i + 5
end
redis.call('ZREMRANGEBYLEX', KEYS[2], '-', ARGV[4])
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYLEX', KEYS[4], '-', ARGV[4])
redis.call('EXPIRE', KEYS[4], ttl)
hold_active(KEYS[1], held, now, ttl)
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6]) end
-- tasks.keys.DISPATCH_WAKE_CHANNEL: an idle dispatcher moves these jobs now.
redis.call('PUBLISH', 'ttsfleet:dispatch:wake', '1')
return {1, active + n}
