-- KEYS[1]: record. ARGV: in-flight value, its TTL (s). Claim if free, else return what is there.
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
