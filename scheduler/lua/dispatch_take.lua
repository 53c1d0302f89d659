-- KEYS[1]: the model's dispatching hash; KEYS[2..]: the model's Celery lists (one per priority
-- step). ARGV: queue depth bound, job key prefix, then per priority, highest first: the ring of
-- tenants, the prefix of their pending lists, the priority's name, and last the skip budget.
-- Returns {job id, tenant, priority, ...} of the jobs it moved to the dispatching hash.
local depth = 0
for k = 2, #KEYS do depth = depth + redis.call('LLEN', KEYS[k]) end
local room = tonumber(ARGV[1]) - depth
local taken, skips = {}, 0
local a = 3
while a + 2 < #ARGV and room > 0 and skips < tonumber(ARGV[#ARGV]) do
  local ring, prefix, priority = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  while room > 0 and skips < tonumber(ARGV[#ARGV]) do
    -- Rotate: the tenant served now goes to the back of the ring.
    local tenant = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
    if not tenant then break end
    local pending = prefix .. tenant
    local job_id = redis.call('RPOP', pending)
    if redis.call('LLEN', pending) == 0 then redis.call('LREM', ring, 0, tenant) end
    if job_id then
      -- A job canceled (or expired) while pending is dropped here, never sent; so is a
      -- unit of a long job (tasks.units: `<job id>.<n>`) whose job no longer runs, except
      -- the first such unit of each job: a worker that takes it removes the job's parts.
      local send = redis.call('HGET', ARGV[2] .. job_id, 'status') == 'queued'
      local parent = string.match(job_id, '^([^.]+)%.%d+$')
      if send and parent then
        local book = redis.call('HGET', ARGV[2] .. parent, 'status')
        if book ~= 'running' then
          send = book and redis.call('HSETNX', ARGV[2] .. parent, 'cleanup', '1') == 1
        end
      end
      if send then
        redis.call('HSET', KEYS[1], job_id, tenant .. ' ' .. priority)
        taken[#taken + 1] = job_id
        taken[#taken + 1] = tenant
        taken[#taken + 1] = priority
        room = room - 1
      else
        skips = skips + 1
      end
    end
  end
  a = a + 3
end
return taken
