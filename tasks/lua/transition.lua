-- include: release_active.lua outbox_enqueue.lua status_index.lua announce_end.lua
-- JobStore's status transition. A job leaving queued/running frees its tenant's active slot
-- (tasks.quota) in the same step.
-- KEYS: job, outbox, event. ARGV[1]: comma-separated statuses allowed to move; ARGV[2]: new
-- status; ARGV[3]: now epoch; ARGV[4]: event id; ARGV[5]: event TTL; ARGV[6..]: field, value.
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == cur then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 6))
    index_status(KEYS[1], cur, ARGV[2], ARGV[5])
    if ARGV[2] == 'succeeded' or ARGV[2] == 'failed' or ARGV[2] == 'canceled' then
      enqueue_callback(KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[2], ARGV[3], ARGV[5])
      release_active(KEYS[1])
      announce_end(KEYS[1])
    end
    return {1, cur}
  end
end
return {0, cur}
