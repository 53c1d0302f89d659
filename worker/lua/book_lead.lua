-- A book leads the making of its request, or follows an identical book that does
-- (worker.cache.ResultCache.lead). KEYS: the request's leader key, the book's record, its
-- lease, its follows key. ARGV: the book's id, the keys' TTL (ms), job records' key prefix.
-- Returns the leader's id if the book now follows it, or nil: the book leads (it is made).
-- A follower gives back the attempt its claim counted (it ran nothing) and its lease (the
-- reconciler sends it again once the leader ended, tasks.keys.BOOK_FOLLOWS).
local leader = redis.call('GET', KEYS[1])
if leader and leader ~= ARGV[1] then
  local status = redis.call('HGET', ARGV[3] .. leader, 'status')
  -- Being made (the reconciler, scheduler/reconciler.py, waits on the same two).
  if status == 'running' or status == 'queued' then
    redis.call('SET', KEYS[4], leader, 'PX', ARGV[2])
    redis.call('HINCRBY', KEYS[2], 'attempts', -1)
    redis.call('DEL', KEYS[3])
    return leader
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[4])
return nil
