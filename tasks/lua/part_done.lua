-- include: outbox_enqueue.lua
-- A unit's audio is stored (JobStore.record_part): record its part once, add the unit's
-- pieces and seconds to the job's progress (with, when asked, one `job.progress` event, as
-- tasks/lua/progress.lua queues it), and once every unit has its part, name one unit the joiner:
-- only its run joins the job (worker.books). A unit run again after its part was recorded
-- records nothing and adds nothing.
-- KEYS: the job, its parts hash, the callback outbox. ARGV: unit index, part JSON ('' for
-- none: a rerun), pieces, seconds, record TTL, this unit's id, progress event id without
-- its count ('' for no event), event key prefix, now epoch.
-- Returns {parts recorded, units of the job, progress JSON or '', 1 if this call recorded
-- the part, the job's status or '', the joiner's unit id or ''}.
local new = 0
if ARGV[2] ~= '' then new = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[2], ARGV[5])
local status = redis.call('HGET', KEYS[1], 'status') or ''
local raw = redis.call('HGET', KEYS[1], 'progress')
if raw == 'null' then raw = false end
if new == 1 and raw and status == 'running' then
  local progress = cjson.decode(raw)
  progress['pieces_done'] = progress['pieces_done'] + tonumber(ARGV[3])
  progress['audio_s'] = math.floor((progress['audio_s'] + tonumber(ARGV[4])) * 1000 + 0.5) / 1000
  raw = cjson.encode(progress)
  redis.call('HSET', KEYS[1], 'progress', raw)
  if ARGV[7] ~= '' and progress['pieces_done'] < progress['pieces_total'] then
    local event_id = ARGV[7] .. progress['pieces_done']
    enqueue_callback(KEYS[1], KEYS[3], ARGV[8] .. event_id, event_id, 'progress', ARGV[9], ARGV[5])
  end
end
local units = tonumber(redis.call('HGET', KEYS[1], 'units') or '0') or 0
local recorded = redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], 'joiner')
local joiner = ''
if units > 0 and recorded >= units and status == 'running' then
  redis.call('HSETNX', KEYS[2], 'joiner', ARGV[6])
  joiner = redis.call('HGET', KEYS[2], 'joiner')
end
return {recorded, units, raw or '', new, status, joiner}
