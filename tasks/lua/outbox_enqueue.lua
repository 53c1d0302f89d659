-- Shared by every script that can end a job (and by those that queue a `job.progress` event,
-- status 'progress'): if the job has a callback, record the event in the outbox, due now. The event hash doubles as a "written once" mark,
-- so a second terminal write (or a retried script) cannot add a second event.
local function enqueue_callback(job_key, outbox_key, event_key, event_id, status, now, ttl)
  local cb = redis.call('HGET', job_key, 'callback')
  if (not cb) or cb == 'null' then return end
  if redis.call('EXISTS', event_key) == 1 then return end
  redis.call('HSET', event_key, 'job_id', string.match(job_key, '[^:]+$'),
             'type', 'job.' .. status, 'attempts', 0, 'created_ts', now)
  -- A progress event tells the progress it was queued for, on every attempt: the event id
  -- counts its pieces, and the job's own progress moves on meanwhile.
  if status == 'progress' then
    redis.call('HSET', event_key, 'progress', redis.call('HGET', job_key, 'progress') or 'null')
  end
  redis.call('EXPIRE', event_key, ttl)
  redis.call('ZADD', outbox_key, 'NX', now, event_id)
end
