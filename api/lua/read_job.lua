-- include: read_bucket.lua
-- A status poll (api.reads.JobReads.get): the read rate limit and the record in one call.
-- KEYS[1]: read bucket; KEYS[2]: the job. Returns {0, wait ms} or {1, HGETALL}.
local taken = take_read()
if taken[1] == 0 then return taken end
return {1, redis.call('HGETALL', KEYS[2])}
