-- A unit's audio is stored (JobStore.record_part): record its part once and add its pieces
-- and seconds to the job's progress. A unit run again after its part was recorded (its
-- worker died before the unit's own record said so) adds nothing.
-- KEYS: the job, its parts hash. ARGV: unit index, part JSON, pieces, seconds, record TTL.
-- Returns {parts recorded, units of the job, progress JSON}.
local new = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[5])
local raw = redis.call('HGET', KEYS[1], 'progress')
if new == 1 and raw and redis.call('HGET', KEYS[1], 'status') == 'running' then
  local progress = cjson.decode(raw)
  progress['pieces_done'] = progress['pieces_done'] + tonumber(ARGV[3])
  progress['audio_s'] = math.floor((progress['audio_s'] + tonumber(ARGV[4])) * 1000 + 0.5) / 1000
  raw = cjson.encode(progress)
  redis.call('HSET', KEYS[1], 'progress', raw)
end
return {redis.call('HLEN', KEYS[2]), tonumber(redis.call('HGET', KEYS[1], 'units') or '0'), raw or ''}
