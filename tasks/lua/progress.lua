-- A running job's progress (tasks.jobs.Progress), and with it, when asked, one job.progress
-- webhook event in the outbox (due now, written once per event id like a terminal event).
-- KEYS: job, outbox, event. ARGV: progress JSON, event id ('' for none), now epoch, event TTL.
-- Only a running job moves on: an expired or ended record is left as it is.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('HSET', KEYS[3], 'job_id', string.match(KEYS[1], '[^:]+$'),
             'type', 'job.progress', 'attempts', 0, 'created_ts', ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[2])
end
return 1
