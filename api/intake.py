"""Admission: where accepted jobs enter Redis, all in one script.

One Lua call checks the tenant's `max_queued_jobs`, writes every record of the request
(one job or a batch of up to 1000), indexes them, adds them to the tenant's active jobs
(tasks.quota, which first drops the entries of expired records), puts
the ids in the tenant's pending lists for the dispatcher (scheduler.dispatcher) and records
the Idempotency-Key's outcome. So a 202 means all of it happened and a refusal means none
of it did: there is no half-made job to clean up, and no window in which the quota could
be overshot by two API processes at once.

It is awaited on the API's event loop (redis.asyncio): a submit is one round trip to Redis,
and a worker thread per request cost a quarter of the API's throughput (bench.api).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio

from tasks import keys, scripts
from tasks.jobs import Job, job_id_floor
from tasks.store import encode_record

# api/lua/admit.lua, with tasks/lua/active.lua (the active jobs of tasks.quota).
_ADMIT = scripts.load("api", "admit")


@dataclass(frozen=True)
class IdempotencyRecord:
    """What to store under an Idempotency-Key once the jobs exist."""

    key: str
    value: str
    ttl_s: int


@dataclass(frozen=True)
class Admission:
    accepted: bool
    active: int  # the tenant's active jobs after (or, refused, at) the attempt


class Intake:
    """Admits jobs for one tenant at a time; see the module docstring for why one script."""

    def __init__(self, client: redis.asyncio.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._admit = client.register_script(_ADMIT)

    async def admit(
        self,
        tenant: str,
        jobs: Sequence[Job],
        limit: int | None,
        idempotency: IdempotencyRecord | None = None,
        now: float | None = None,
    ) -> Admission:
        """Create `jobs` (all of `tenant`) unless they would take it past `limit` active."""
        now = time.time() if now is None else now
        active_key = keys.tenant_active_key(tenant)
        args: list[str | int] = [
            -1 if limit is None else limit,
            len(jobs),
            self._ttl_s,
            "(" + job_id_floor(int((now - self._ttl_s) * 1000)),
            idempotency.value if idempotency else "",
            idempotency.ttl_s if idempotency else 0,
            tenant,
        ]
        for job in jobs:
            fields = encode_record(job, now)
            priority = job.priority.value
            args += [
                keys.job_key(job.id),
                keys.pending_key(job.model, priority, tenant),
                keys.pending_tenants_key(job.model, priority),
                job.id,
                len(fields),
            ]
            for name, value in fields.items():
                args += [name, value]
        accepted, active = await self._admit(
            keys=[
                active_key,
                keys.tenant_jobs_key(tenant),
                idempotency.key if idempotency else active_key,
                keys.tenant_status_jobs_key(tenant, "queued"),
            ],
            args=args,
        )
        return Admission(bool(accepted), int(active))
