-- KEYS: outbox, event, job. ARGV: event id, lease token, state, last HTTP status ('' if
-- none), next due (for pending). The job's `callback` shows the same state, in one step:
-- the state of its terminal event, so a job.progress event leaves it as it is.
if redis.call('HGET', KEYS[2], 'lease') ~= ARGV[2] then return -1 end
local attempts = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
redis.call('HDEL', KEYS[2], 'lease')
redis.call('HSET', KEYS[2], 'state', ARGV[3])
if ARGV[3] == 'pending' then
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
if redis.call('HGET', KEYS[2], 'type') == 'job.progress' then return attempts end
local raw = redis.call('HGET', KEYS[3], 'callback')
if raw and raw ~= 'null' then
  local cb = cjson.decode(raw)
  cb['state'] = ARGV[3]
  cb['attempts'] = attempts
  cb['last_status'] = cjson.null
  if ARGV[4] ~= '' then cb['last_status'] = tonumber(ARGV[4]) end
  redis.call('HSET', KEYS[3], 'callback', cjson.encode(cb))
end
return attempts
