-- include: read_bucket.lua
-- A read of a job (api.reads.JobReads: a status poll, the audio, its stream): the read rate
-- limit and the fields asked for in one call. HMGET of those, not HGETALL: the record's
-- text (up to a book's million characters) never crosses to the API on a read.
-- KEYS[1]: read bucket; KEYS[2]: the job. ARGV[1..3]: see read_bucket.lua; ARGV[4..]: the
-- fields. Returns {0, wait ms} or {1, {value or nil, ...}} in ARGV's order.
local taken = take_read()
if taken[1] == 0 then return taken end
return {1, redis.call('HMGET', KEYS[2], unpack(ARGV, 4))}
