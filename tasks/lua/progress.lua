-- include: outbox_enqueue.lua
-- A running job's progress (tasks.jobs.Progress), and with it, when asked, one job.progress
-- webhook event in the outbox (due now, written once per event id like a terminal event).
-- KEYS: job, outbox, event. ARGV: progress JSON, event id ('' for none), now epoch, event TTL.
-- Only a running job moves on: an expired or ended record is left as it is.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
if ARGV[2] ~= '' then
  enqueue_callback(KEYS[1], KEYS[2], KEYS[3], ARGV[2], 'progress', ARGV[3], ARGV[4])
end
return 1
