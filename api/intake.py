"""Admission: where accepted jobs enter Redis, all in one script.

One Lua call (api/lua/admit.lua) looks up the request's Idempotency-Key, takes a token from
the tenant's rate bucket (tasks.quota), checks its `max_queued_jobs`, writes every record of
the request (one job or a batch of up to 1000), indexes them, adds them to the tenant's
active jobs (tasks.quota, which first drops the entries of expired records), puts the ids
in the tenant's pending lists for the dispatcher (scheduler.dispatcher) and records the
Idempotency-Key's outcome. So a 202 means all of it happened and a refusal means none of it
did: there is no half-made job to clean up, no window in which the quota could be overshot
by two API processes at once, and no moment at which a key is claimed but its jobs not yet
made (two requests with one key: the first admits, the second replays).

It is awaited on the API's event loop (redis.asyncio): a submit is one round trip to Redis
(bench.api measured a worker thread per request, and a round trip each for the key, the
rate limit and the admission, at a third of what one process could accept).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson
import redis.asyncio

from tasks import keys, scripts
from tasks.jobs import Job, job_id_floor
from tasks.store import encode_record

# api/lua/admit.lua, with tasks/lua/active.lua (the active jobs of tasks.quota) and
# tasks/lua/token_bucket.lua (the rate limit's token bucket).
_ADMIT = scripts.load("api", "admit")
_JOB_PREFIX = keys.job_key("")


@dataclass(frozen=True)
class IdempotencyRecord:
    """The request's Idempotency-Key: where its record lives, what to store once the jobs
    exist (a JSON object whose `jobs` the script reads back on a replay), for how long."""

    key: str
    value: str
    ttl_s: int


class Outcome(IntEnum):
    """What admit.lua did (its reply's first element)."""

    OVER_QUOTA = 0
    ADMITTED = 1
    REPLAY = 2  # the Idempotency-Key was used before: nothing was done
    RATE_LIMITED = 3


@dataclass(frozen=True)
class Admission:
    outcome: Outcome
    active: int = 0  # the tenant's active jobs after (or, over the quota, at) the attempt
    retry_after_ms: int = 0  # rate limited: until the next token
    used: str = ""  # a replay: the key's record as stored
    records: tuple[dict[str, str], ...] = ()  # a replay: its jobs' records (empty: expired)

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ADMITTED


class Intake:
    """Admits jobs for one tenant at a time; see the module docstring for why one script."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        ttl_s: int,
        rate_per_s: float = 0.0,
        rate_burst: int = 0,
    ) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._rate = [rate_per_s, rate_burst] if rate_per_s > 0 else [0, 0]
        self._admit = client.register_script(_ADMIT)

    async def admit(
        self,
        tenant: str,
        jobs: Sequence[Job],
        limit: int | None,
        idempotency: IdempotencyRecord | None = None,
        now: float | None = None,
    ) -> Admission:
        """Create `jobs` (all of `tenant`) unless the key was used before, the tenant is over
        its rate limit, or they would take it past `limit` active."""
        now = time.time() if now is None else now
        active_key = keys.tenant_active_key(tenant)
        args: list[str | int | float | bytes] = [
            -1 if limit is None else limit,
            len(jobs),
            self._ttl_s,
            "(" + job_id_floor(int((now - self._ttl_s) * 1000)),
            idempotency.value if idempotency else "",
            idempotency.ttl_s if idempotency else 0,
            tenant,
            *self._rate,
            _JOB_PREFIX,
        ]
        for job in jobs:
            args += [
                keys.job_key(job.id),
                keys.pending_key(job.model, job.priority.value, tenant),
                keys.pending_tenants_key(job.model, job.priority.value),
                job.id,
                orjson.dumps(encode_record(job, now)),
            ]
        reply: list[Any] = await self._admit(
            keys=[
                active_key,
                keys.tenant_jobs_key(tenant),
                idempotency.key if idempotency else active_key,
                keys.tenant_status_jobs_key(tenant, "queued"),
                keys.tenant_rate_key(tenant),
            ],
            args=args,
        )
        outcome = Outcome(int(reply[0]))
        if outcome is Outcome.REPLAY:
            records = tuple(dict(zip(r[::2], r[1::2], strict=True)) for r in reply[2:])
            return Admission(outcome, used=reply[1], records=records)
        if outcome is Outcome.RATE_LIMITED:
            return Admission(outcome, retry_after_ms=int(reply[1]))
        return Admission(outcome, active=int(reply[1]))
