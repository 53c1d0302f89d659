-- KEYS[1]: a job's lease. ARGV[1]: holder. Delete it only if it is still ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
