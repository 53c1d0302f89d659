-- include: token_bucket.lua
-- The submit rate limit's token bucket (tasks.quota.RateLimiter).
-- KEYS[1]: bucket. ARGV: rate per second, burst, now (seconds), cost.
-- Returns {allowed, milliseconds until `cost` tokens are there}.
return take_tokens(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]))
