"""Submitting jobs, one or a batch: Idempotency-Key, rate limit, quota, then admission.

Runs in a worker thread (it blocks on Redis). Validation happens before, in the endpoint,
so nothing here can fail for a reason the client must fix in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api import errors
from api.idempotency import Claimed, IdempotencyKeys, fingerprint
from tasks.intake import Intake
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
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self._store = store
        self._intake = Intake(store.redis, settings.job_ttl_s)
        self._limiter = RateLimiter(
            store.redis, settings.rate_limit_per_s, settings.rate_limit_burst
        )
        self._keys = IdempotencyKeys(
            store.redis, settings.idempotency_ttl_s, settings.idempotency_in_flight_s
        )

    def submit(
        self,
        tenant: Tenant,
        jobs: list[Job],
        route: str,
        body: Any,
        idempotency_key: str | None,
    ) -> Submitted:
        claimed: Claimed | None = None
        if idempotency_key is not None:
            found = self._keys.claim(tenant.id, idempotency_key, fingerprint(route, body))
            if not isinstance(found, Claimed):
                return Submitted(self._replay(tenant, found), replayed=True)
            claimed = found
        try:
            decision = self._limiter.take(tenant.id)
            if not decision.allowed:
                raise errors.RateLimited(
                    f"tenant {tenant.id!r} is over its submit rate limit", decision.retry_after_s
                )
            admission = self._intake.admit(
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
                self._keys.abandon(claimed)
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
