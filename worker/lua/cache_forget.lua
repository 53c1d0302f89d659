-- KEYS[1]: a cache entry. ARGV[1]: the object key it must still point at to be dropped.
if redis.call('HGET', KEYS[1], 'storage_key') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
