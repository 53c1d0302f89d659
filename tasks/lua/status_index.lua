-- A Lua function for every script that changes a job's status: move the job from its
-- tenant's index of `from` ('' for none) to that of `to` (keys.TENANT_STATUS_JOBS), so a
-- listing by status reads one page of an index instead of scanning (api.reads). The key is
-- built from the record's tenant, like release_active.lua, so its pattern is spelled here:
-- keys.TENANT_STATUS_JOBS, checked by tests/integration/test_scripts.py. A unit of a long
-- job (tasks.units: its record has a `parent`) is in no index: the tenant sees the job.
local function index_status(job_key, from, to, ttl)
  local job = redis.call('HMGET', job_key, 'tenant', 'id', 'parent')
  if not (job[1] and job[2]) or job[3] then return end
  local head = 'ttsfleet:tenant:' .. cjson.decode(job[1]) .. ':jobs:'
  local id = cjson.decode(job[2])
  if from ~= '' and from ~= to then redis.call('ZREM', head .. from, id) end
  redis.call('ZADD', head .. to, 0, id)
  redis.call('EXPIRE', head .. to, ttl)
end
