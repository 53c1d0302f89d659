-- A run about to store its audio keeps its job (JobStore.keep_run): only if no later claim
-- counted an attempt (every run after a takeover, or a retry, is claimed anew) and the lease
-- names no other run (claim.lua's `busy`: a bare worker mark is no run). Then the lease names
-- this run again, taken back if it lapsed, so any claim from now on is `busy` while this run
-- stores and records. KEYS: job, its lease. ARGV: run name, its claim's attempts, lease ms.
-- Returns 1 if the run keeps the job, 0 if another run has it.
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') ~= tonumber(ARGV[2]) then return 0 end
local held = redis.call('GET', KEYS[2])
if held and string.find(held, '/', 1, true) and held ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3]) end
return 1
