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

from tasks import keys, scripts

# Its scripts: tasks/lua/active.lua (admission's functions), hold_active.lua,
# release_active.lua (the store's), take_tokens.lua (the rate limit).
_TAKE_TOKENS = scripts.load("tasks", "take_tokens")


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
