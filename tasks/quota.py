"""Per-tenant limits kept in Redis: the count of active jobs behind `max_queued_jobs`, and
the token bucket behind the submit rate limit.

The active count is a counter, not a scan: admission (tasks.intake) checks and raises it in
the script that creates the jobs, and the store's transitions lower it in the script that
moves a job out of queued/running, so it never needs a lock and is right across API
processes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis

from tasks import keys

_ACTIVE_HEAD, _ACTIVE_TAIL = keys.TENANT_ACTIVE.split("{tenant}")

# A Lua function for the store's scripts: free the active slot of the job at `job_key`.
# The key is built from the record's tenant (not declared in KEYS: we run one Redis, not a
# cluster). Floored at 0, so a record made before counting began cannot drive it negative.
RELEASE_ACTIVE_LUA = f"""
local function release_active(job_key)
  local tenant = redis.call('HGET', job_key, 'tenant')
  if tenant then
    local key = '{_ACTIVE_HEAD}' .. cjson.decode(tenant) .. '{_ACTIVE_TAIL}'
    if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
  end
end
"""

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
    """The tenant's queued + running jobs, as admission counts them."""
    return int(client.get(keys.tenant_active_key(tenant)) or 0)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: int


class RateLimiter:
    """A token bucket per tenant, refilled continuously; one script call per request."""

    def __init__(self, client: redis.Redis, per_s: float, burst: int) -> None:
        self._redis = client
        self._per_s = per_s
        self._burst = burst
        self._take = client.register_script(_TAKE_TOKENS)

    @property
    def enabled(self) -> bool:
        return self._per_s > 0

    def take(self, tenant: str, cost: int = 1, now: float | None = None) -> RateDecision:
        if not self.enabled:
            return RateDecision(True, 0)
        now = time.time() if now is None else now
        allowed, wait_ms = self._take(
            keys=[keys.tenant_rate_key(tenant)],
            args=[self._per_s, self._burst, repr(now), cost],
        )
        return RateDecision(bool(allowed), max(1, math.ceil(int(wait_ms) / 1000)))
