-- include: release_active.lua outbox_enqueue.lua status_index.lua announce_end.lua
-- A worker takes a delivery (JobStore.claim). KEYS: job, outbox, event of `failed`, the job's
-- lease. ARGV: now (RFC 3339 JSON), now epoch, max attempts, error JSON for worker_lost, error
-- JSON for deadline_exceeded, failed event id, event TTL, run ('' for no lease), lease
-- milliseconds, stale run ('' for none). A lease naming another run (`worker/pid`,
-- worker.lease) that is not known to be over is a live run elsewhere: `busy`. A worker's bare
-- mark (no '/') only says a message of the job is prefetched somewhere and blocks nothing.
-- Returns {verdict, status, attempts}.
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {'missing', '', 0} end
if cur == 'succeeded' or cur == 'failed' or cur == 'canceled' then
  return {'terminal', cur, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')}
end
-- A long job that fanned out (tasks.units) runs as its units now: a second delivery of its
-- own message (a dispatcher's re-send, a reconciler's) is acked, no attempt counted.
local fanned = redis.call('HGET', KEYS[1], 'units')
if fanned and fanned ~= 'null' then
  return {'fanned', cur, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')}
end
if ARGV[8] ~= '' then
  local held = redis.call('GET', KEYS[4])
  if held and string.find(held, '/', 1, true) and held ~= ARGV[8] and held ~= ARGV[10] then
    return {'busy', cur, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')}
  end
end
local deadline = cjson.decode(redis.call('HGET', KEYS[1], 'deadline_s') or 'null')
local created = tonumber(redis.call('HGET', KEYS[1], 'created_ts') or '0')
-- Only a job that never started: a transient retry waits in `queued` too.
local started = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0
if cur == 'queued' and not started and deadline ~= cjson.null
   and tonumber(ARGV[2]) > created + deadline then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[1], 'error', ARGV[5])
  index_status(KEYS[1], cur, 'failed', ARGV[7])
  release_active(KEYS[1])
  enqueue_callback(KEYS[1], KEYS[2], KEYS[3], ARGV[6], 'failed', ARGV[2], ARGV[7])
  announce_end(KEYS[1])
  return {'expired', 'failed', tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')}
end
-- `attempts` counts the runs that started; a delivery past the limit is not one.
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[1], 'error', ARGV[4])
  index_status(KEYS[1], cur, 'failed', ARGV[7])
  release_active(KEYS[1])
  enqueue_callback(KEYS[1], KEYS[2], KEYS[3], ARGV[6], 'failed', ARGV[2], ARGV[7])
  announce_end(KEYS[1])
  return {'exhausted', 'failed', attempts}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
index_status(KEYS[1], cur, 'running', ARGV[7])
if ARGV[8] ~= '' then redis.call('SET', KEYS[4], ARGV[8], 'PX', ARGV[9]) end
return {'run', 'running', attempts}
