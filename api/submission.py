"""Submitting jobs, one or a batch: Idempotency-Key, rate limit, quota, then admission.

Awaited on the event loop with redis.asyncio (a worker thread per request cost a quarter of
the API's throughput, bench.api); only an Idempotency-Key replay reads the job store, in a
worker thread. Validation happens before, in the endpoint, so nothing here can fail for a
reason the client must fix in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio
from starlette.concurrency import run_in_threadpool

from api import errors
from api.idempotency import Claimed, IdempotencyKeys, fingerprint
from api.intake import Intake
from tasks.jobs import Job
from tasks.quota import RateLimiter
from tasks.settings import Settings
from tasks.store import JobStore
from tasks.tenants import Tenant


@dataclass(frozen=True)
class Submitted:
    jobs: list[Job]
    replayed: bool  # an Idempotency-Key replay: the jobs as they are now, 200 not 202


class Submission:
    def __init__(self, settings: Settings, store: JobStore, client: redis.asyncio.Redis) -> None:
        self._store = store
        self._intake = Intake(client, settings.job_ttl_s)
        self._limiter = RateLimiter(client, settings.rate_limit_per_s, settings.rate_limit_burst)
        self._keys = IdempotencyKeys(
            client, settings.idempotency_ttl_s, settings.idempotency_in_flight_s
        )

    async def submit(
        self,
        tenant: Tenant,
        jobs: list[Job],
        route: str,
        body: Any,
        idempotency_key: str | None,
    ) -> Submitted:
        claimed: Claimed | None = None
        if idempotency_key is not None:
            found = await self._keys.claim(tenant.id, idempotency_key, fingerprint(route, body))
            if not isinstance(found, Claimed):
                jobs = await run_in_threadpool(self._replay, tenant, found)
                return Submitted(jobs, replayed=True)
            claimed = found
        try:
            decision = await self._limiter.take(tenant.id)
            if not decision.allowed:
                raise errors.RateLimited(
                    f"tenant {tenant.id!r} is over its submit rate limit", decision.retry_after_s
                )
            admission = await self._intake.admit(
                tenant.id,
                jobs,
                tenant.max_queued_jobs,
                claimed.record([job.id for job in jobs]) if claimed else None,
            )
            if not admission.accepted:
                raise errors.QuotaExceeded(
                    f"tenant {tenant.id!r} has {admission.active} queued or running jobs; "
                    f"{len(jobs)} more would pass its limit of {tenant.max_queued_jobs}"
                )
        except BaseException:
            if claimed is not None:
                await self._keys.abandon(claimed)
            raise
        return Submitted(jobs, replayed=False)

    def _replay(self, tenant: Tenant, job_ids: list[str]) -> list[Job]:
        jobs = []
        for job_id in job_ids:
            job = self._store.get_for_tenant(tenant.id, job_id)
            if job is None:
                raise errors.NotFound(f"the job {job_id!r} of this Idempotency-Key has expired")
            jobs.append(job)
        return jobs
