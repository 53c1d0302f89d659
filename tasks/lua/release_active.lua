-- A Lua function for the store's scripts: free the active slot (tasks.quota) of the job at
-- `job_key`. The key is built from the record's tenant (not declared in KEYS: we run one
-- Redis, not a cluster), so its pattern is spelled here: keys.TENANT_ACTIVE with the tenant
-- in the middle, checked by tests/integration/test_scripts.py.
local function release_active(job_key)
  local job = redis.call('HMGET', job_key, 'tenant', 'id')
  if job[1] and job[2] then
    local key = 'ttsfleet:tenant:' .. cjson.decode(job[1]) .. ':active-jobs'
    redis.call('ZREM', key, cjson.decode(job[2]))
  end
end
