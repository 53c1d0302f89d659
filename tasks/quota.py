"""Per-tenant limits kept in Redis: the active jobs behind `max_queued_jobs`, and the token
bucket behind the submit rate limit.

The active jobs are a sorted set per tenant, not a counter: member the job id, score the
time its record expires (creation + `job_ttl_s`, on the Redis server's clock, the one that
expires the record). Admission (api.intake) first drops the entries whose score has
passed, then compares ZCARD with the limit and adds the new ids, in the script that creates
the jobs; a job leaving queued/running is ZREM'd in the store's script that moves it. So it
needs no lock and is right across API processes, as the counter was, but it heals itself: a
counter that missed its decrement (a record that expired or was deleted while queued or
running) locked its tenant out for good, while an entry whose record vanished drops out when
the record would have expired at the latest (`JobStore.discard` removes it at once). Removing
an id is idempotent, so a release that runs twice cannot free another job's slot. Each step
is O(log n) in the tenant's active jobs, plus the expired entries it drops.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis
import redis.asyncio

from tasks import keys

_ACTIVE_HEAD, _ACTIVE_TAIL = keys.TENANT_ACTIVE.split("{tenant}")

# Lua functions for the scripts that create jobs (api.intake, JobStore.create). Scores use
# Redis's TIME: an API host's clock may differ from the one that expires the records.
ADMIT_ACTIVE_LUA = """
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- The tenant's active jobs, once the entries of expired records are gone.
local function count_active(active_key, now)
  redis.call('ZREMRANGEBYSCORE', active_key, '-inf', now)
  return redis.call('ZCARD', active_key)
end
-- Take a slot for each of `job_ids`, whose records expire `ttl` seconds after `now`; the set
-- expires with its newest entry, so a tenant that stops submitting leaves nothing behind.
local function hold_active(active_key, job_ids, now, ttl)
  for _, job_id in ipairs(job_ids) do redis.call('ZADD', active_key, now + ttl, job_id) end
  redis.call('EXPIRE', active_key, ttl)
end
"""

# A Lua function for the store's scripts: free the active slot of the job at `job_key`.
# The key is built from the record's tenant (not declared in KEYS: we run one Redis, not a
# cluster).
RELEASE_ACTIVE_LUA = f"""
local function release_active(job_key)
  local job = redis.call('HMGET', job_key, 'tenant', 'id')
  if job[1] and job[2] then
    local key = '{_ACTIVE_HEAD}' .. cjson.decode(job[1]) .. '{_ACTIVE_TAIL}'
    redis.call('ZREM', key, cjson.decode(job[2]))
  end
end
"""

# KEYS[1]: the tenant's active jobs. ARGV: job id, record TTL (s). For JobStore.create.
HOLD_ACTIVE = (
    ADMIT_ACTIVE_LUA
    + """
hold_active(KEYS[1], {ARGV[1]}, redis_now(), tonumber(ARGV[2]))
return 0
"""
)

# KEYS[1]: bucket. ARGV: rate per second, burst, now (seconds), cost.
# Returns {allowed, milliseconds until `cost` tokens are there}.
_TAKE_TOKENS = """
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if allowed == 1 then return {1, 0} end
return {0, math.ceil((cost - tokens) / rate * 1000)}
"""


def active_jobs(client: redis.Redis, tenant: str) -> int:
    """The tenant's queued + running jobs whose records have not expired, as admission
    counts them (read-only: the entries of expired records are left for admission to drop)."""
    seconds, micros = client.time()
    now = seconds + micros / 1_000_000
    return int(client.zcount(keys.tenant_active_key(tenant), f"({now!r}", "+inf"))


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: int


class RateLimiter:
    """A token bucket per tenant, refilled continuously; one script call per request, awaited
    on the API's event loop (see api.intake)."""

    def __init__(self, client: redis.asyncio.Redis, per_s: float, burst: int) -> None:
        self._redis = client
        self._per_s = per_s
        self._burst = burst
        self._take = client.register_script(_TAKE_TOKENS)

    @property
    def enabled(self) -> bool:
        return self._per_s > 0

    async def take(self, tenant: str, cost: int = 1, now: float | None = None) -> RateDecision:
        if not self.enabled:
            return RateDecision(True, 0)
        now = time.time() if now is None else now
        allowed, wait_ms = await self._take(
            keys=[keys.tenant_rate_key(tenant)],
            args=[self._per_s, self._burst, repr(now), cost],
        )
        return RateDecision(bool(allowed), max(1, math.ceil(int(wait_ms) / 1000)))
