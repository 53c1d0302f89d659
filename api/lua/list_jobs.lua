-- include: read_bucket.lua
-- A listing (api.reads.JobReads.list): the read rate limit, then one page of an index.
-- KEYS[1]: read bucket; KEYS[2]: the index to read (all the tenant's jobs, or one status's:
-- keys.TENANT_JOBS, keys.TENANT_STATUS_JOBS). ARGV[4..]: start ('+' or '(' .. cursor), limit,
-- prune bound ('(' .. the oldest live id), status ('' for any), job key prefix.
-- Returns {0, wait ms} or {1, next cursor ('' for none), HGETALL, ...}. Entries whose record
-- is gone are dropped as they are met; at most MAX_PAGES pages are read, so a listing's cost
-- is bounded whatever the index holds.
local MAX_PAGES = 4
local taken = take_read()
if taken[1] == 0 then return taken end
local start, limit, status, prefix = ARGV[4], tonumber(ARGV[5]), ARGV[7], ARGV[8]
redis.call('ZREMRANGEBYLEX', KEYS[2], '-', ARGV[6])
local reply = {1, ''}
local found = 0
for _ = 1, MAX_PAGES do
  local ids = redis.call('ZRANGE', KEYS[2], start, '-', 'BYLEX', 'REV', 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local raw = redis.call('HGETALL', prefix .. id)
    if #raw == 0 then
      redis.call('ZREM', KEYS[2], id)
    else
      local current = ''
      for i = 1, #raw, 2 do if raw[i] == 'status' then current = raw[i + 1] end end
      if status == '' or current == status then
        reply[#reply + 1] = raw
        found = found + 1
        if found == limit then
          reply[2] = id
          return reply
        end
      end
    end
  end
  if #ids < limit then
    reply[2] = ''
    return reply
  end
  start = '(' .. ids[#ids]
  reply[2] = ids[#ids]
end
return reply
