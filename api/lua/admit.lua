-- include: tasks/active.lua
-- Admission (api.intake): quota check, records, index, active jobs, pending lists and the
-- Idempotency-Key's outcome in one step.
-- KEYS[1]: the tenant's active jobs; KEYS[2]: its job index; KEYS[3]: idempotency record
-- (or the active jobs again when there is none); KEYS[4]: its index of queued jobs
-- (keys.TENANT_STATUS_JOBS). ARGV: limit (-1: none), n, record TTL, index
-- prune bound, idempotency value ('' for none), idempotency TTL, tenant, then per job:
-- job key, pending list, pending-tenants ring, job id, field count, field/value pairs.
-- Key names come in ARGV because they depend on each job; we run one Redis, not a cluster.
local limit, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis_now()
local active = count_active(KEYS[1], now)
if limit >= 0 and active + n > limit then return {0, active} end
local ttl, tenant = tonumber(ARGV[3]), ARGV[7]
local held = {}
local i = 8
for _ = 1, n do
  local job_key, pending, ring, job_id = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local last = i + 4 + 2 * tonumber(ARGV[i + 4])
  redis.call('HSET', job_key, unpack(ARGV, i + 5, last))
  redis.call('EXPIRE', job_key, ttl)
  redis.call('ZADD', KEYS[2], 0, job_id)
  redis.call('ZADD', KEYS[4], 0, job_id)
  -- The ring holds a tenant exactly while its pending list is not empty.
  if redis.call('LPUSH', pending, job_id) == 1 then redis.call('RPUSH', ring, tenant) end
  held[#held + 1] = job_id
  i = last + 1
end
redis.call('ZREMRANGEBYLEX', KEYS[2], '-', ARGV[4])
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYLEX', KEYS[4], '-', ARGV[4])
redis.call('EXPIRE', KEYS[4], ttl)
hold_active(KEYS[1], held, now, ttl)
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6]) end
return {1, active + n}
