-- include: active.lua
-- KEYS[1]: the tenant's active jobs. ARGV: job id, record TTL (s). For JobStore.create.
hold_active(KEYS[1], {ARGV[1]}, redis_now(), tonumber(ARGV[2]))
return 0
