"""Submitting jobs, one or a batch: Idempotency-Key, rate limit, quota and admission, in
one Redis script awaited on the event loop (api.intake).

Validation happens before, in the endpoint, so nothing here can fail for a reason the
client must fix in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio

from api import errors
from api.idempotency import IdempotencyKeys, fingerprint, replayed_ids
from api.intake import Intake, Outcome
from tasks.jobs import Job
from tasks.settings import Settings
from tasks.store import JobStore, tenant_job
from tasks.tenants import Tenant


@dataclass(frozen=True)
class Submitted:
    jobs: list[Job]
    replayed: bool  # an Idempotency-Key replay: the jobs as they are now, 200 not 202


class Submission:
    def __init__(self, settings: Settings, store: JobStore, client: redis.asyncio.Redis) -> None:
        self._intake = Intake(
            client, settings.job_ttl_s, settings.rate_limit_per_s, settings.rate_limit_burst
        )
        self._keys = IdempotencyKeys(settings.idempotency_ttl_s)

    async def submit(
        self,
        tenant: Tenant,
        jobs: list[Job],
        route: str,
        body: Any,
        idempotency_key: str | None,
    ) -> Submitted:
        record = fp = None
        if idempotency_key is not None:
            fp = fingerprint(route, body)
            record = self._keys.record(tenant.id, idempotency_key, fp, [job.id for job in jobs])
        admission = await self._intake.admit(tenant.id, jobs, tenant.max_queued_jobs, record)
        match admission.outcome:
            case Outcome.ADMITTED:
                return Submitted(jobs, replayed=False)
            case Outcome.REPLAY:
                assert fp is not None  # only a request with a key replays
                job_ids = replayed_ids(admission.used, fp)
                return Submitted(_replay(tenant, job_ids, admission.records), replayed=True)
            case Outcome.RATE_LIMITED:
                raise errors.RateLimited(
                    f"tenant {tenant.id!r} is over its submit rate limit",
                    max(1, -(-admission.retry_after_ms // 1000)),
                )
            case Outcome.OVER_QUOTA:
                raise errors.QuotaExceeded(
                    f"tenant {tenant.id!r} has {admission.active} queued or running jobs; "
                    f"{len(jobs)} more would pass its limit of {tenant.max_queued_jobs}"
                )


def _replay(tenant: Tenant, job_ids: list[str], records: tuple[dict[str, str], ...]) -> list[Job]:
    jobs = []
    for job_id, raw in zip(job_ids, records, strict=True):
        job = tenant_job(raw, tenant.id)
        if job is None:
            raise errors.NotFound(f"the job {job_id!r} of this Idempotency-Key has expired")
        jobs.append(job)
    return jobs
