-- A running job's progress (tasks.jobs.Progress). KEYS[1]: the job. ARGV[1]: progress JSON.
-- Only a running job moves on: an expired or ended record is left as it is.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
return 1
