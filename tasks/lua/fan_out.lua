-- A long job becomes its units (tasks.units, JobStore.fan_out), all in one step: the job
-- records how many units it has and its first progress, each unit gets a record of its own
-- (status queued, not in the tenant's indexes or active jobs: the book counts once), the
-- units join the tenant's pending list in order (the dispatcher hands them out one tenant
-- at a time, like jobs), and the job leaves the reconciler's in-flight set and drops its
-- lease: from now on its units are what is in flight.
-- A `units` entry on the job's audio stream (tasks.streams) tells a listener waiting there
-- to read the units' streams instead, at once.
-- KEYS: job, its lease, the model's in-flight set, the pending list, the pending ring, the
-- job's audio stream. ARGV: record TTL, tenant, progress JSON, unit count, stream TTL, then
-- per unit: its record key, its id, its record's fields as one JSON object of strings.
-- Returns 1 fanned out, 2 already fanned out (a redelivery), 0 the job is not running.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local fanned = redis.call('HGET', KEYS[1], 'units')
if fanned and fanned ~= 'null' then return 2 end
local ttl, n = tonumber(ARGV[1]), tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'units', n, 'progress', ARGV[3])
local i = 6
for _ = 1, n do
  local fields = {}
  for name, value in pairs(cjson.decode(ARGV[i + 2])) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  redis.call('HSET', ARGV[i], unpack(fields))
  redis.call('EXPIRE', ARGV[i], ttl)
  -- The ring holds a tenant exactly while its pending list is not empty.
  if redis.call('LPUSH', KEYS[4], ARGV[i + 1]) == 1 then redis.call('RPUSH', KEYS[5], ARGV[2]) end
  i = i + 3
end
redis.call('ZREM', KEYS[3], cjson.decode(redis.call('HGET', KEYS[1], 'id')))
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[6], '*', 'units', n)
redis.call('EXPIRE', KEYS[6], ARGV[5])
-- tasks.keys.DISPATCH_WAKE_CHANNEL: an idle dispatcher hands out the first units now.
redis.call('PUBLISH', 'ttsfleet:dispatch:wake', '1')
return 1
