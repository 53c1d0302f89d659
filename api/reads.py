"""Reading a tenant's jobs back: a status poll and a listing, each one Redis script that
first takes a token from the tenant's read bucket, so the read rate limit costs no extra
round trip (429 `rate_limited` with Retry-After past it).

A listing by status reads the tenant's index of that status (keys.TENANT_STATUS_JOBS, kept
by the scripts that create and move jobs): one page of ids and their records, whatever the
number of jobs the tenant holds (bench/listing.py). Both are awaited on the event loop
(redis.asyncio), like a submit.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio

from api.errors import JobNotFound, RateLimited
from api.views import VIEW_FIELDS, public_view
from tasks import keys, scripts
from tasks.jobs import Job, JobStatus, job_id_floor
from tasks.store import FIELDS_BUT_TEXT, MAX_JOB_ID_CHARS, tenant_job

# api/lua/: the read rate limit (read_bucket.lua, on tasks/token_bucket.lua) and the read.
_LIST_JOBS = scripts.load("api", "list_jobs")
_READ_VIEW = scripts.load("api", "read_view")
# What a poll reads of a record: whose it is, whether it is a unit (tasks.units), its view.
_VIEW_FIELDS = ("tenant", "parent", *VIEW_FIELDS)
# What the API's other reads (audio, stream, timestamps) need: the record but its text.
_JOB_FIELDS = ("parent", *FIELDS_BUT_TEXT)

_JOB_PREFIX = keys.job_key("")


def _record(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class JobReads:
    """A tenant's reads, rate limited per tenant (`read_rate_limit_per_s`, burst)."""

    def __init__(self, client: redis.asyncio.Redis, per_s: float, burst: int, ttl_s: int) -> None:
        self._per_s = per_s
        self._burst = burst
        self._ttl_s = ttl_s
        self._list = client.register_script(_LIST_JOBS)
        self._read_view = client.register_script(_READ_VIEW)

    def _limit_args(self) -> list[Any]:
        return [self._per_s, self._burst, repr(time.time())]

    def _refuse(self, tenant: str, wait_ms: Any) -> RateLimited:
        return RateLimited(
            f"tenant {tenant!r} is over its read rate limit ({self._per_s:g}/s)",
            max(1, math.ceil(int(wait_ms) / 1000)),
        )

    async def _fields(self, tenant: str, job_id: str, names: tuple[str, ...]) -> dict[str, str]:
        """These fields of the job's record (those it has), after the read rate limit; none
        for an id longer than any job's (never looked up)."""
        if len(job_id) > MAX_JOB_ID_CHARS:
            return {}
        reply = await self._read_view(
            keys=[keys.tenant_read_rate_key(tenant), keys.job_key(job_id)],
            args=[*self._limit_args(), *names],
        )
        if not int(reply[0]):
            raise self._refuse(tenant, reply[1])
        return {
            name: value for name, value in zip(names, reply[1], strict=True) if value is not None
        }

    async def get(self, tenant: str, job_id: str) -> Job | None:
        """The tenant's job `job_id` without its text (''; a book's may be a million
        characters, and no reader of the API needs it), or None (another tenant's job does
        not exist)."""
        raw = await self._fields(tenant, job_id, _JOB_FIELDS)
        return tenant_job({**raw, "text": '""'}, tenant) if raw else None

    async def owned(self, tenant: str, job_id: str) -> Job:
        """`get`, or 404 `not_found`: what a route that reads one job answers."""
        job = await self.get(tenant, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def view(self, tenant: str, job_id: str) -> dict[str, Any] | None:
        """`get(...).public()` without building the Job (api.views): what a status poll
        answers, at the cost of one script call (the public fields only) and a JSON decode
        per field."""
        return public_view(await self._fields(tenant, job_id, _VIEW_FIELDS), tenant)

    async def list(
        self, tenant: str, status: JobStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        """The tenant's jobs (of `status`), newest first, `limit` at most, after `cursor`."""
        index = (
            keys.tenant_jobs_key(tenant)
            if status is None
            else keys.tenant_status_jobs_key(tenant, status.value)
        )
        floor = "(" + job_id_floor(int((time.time() - self._ttl_s) * 1000))
        reply = await self._list(
            keys=[keys.tenant_read_rate_key(tenant), index],
            args=[
                *self._limit_args(),
                "(" + cursor if cursor else "+",
                limit,
                floor,
                status.value if status else "",
                _JOB_PREFIX,
            ],
        )
        if not int(reply[0]):
            raise self._refuse(tenant, reply[1])
        jobs = [job for flat in reply[2:] if (job := tenant_job(_record(flat), tenant))]
        return jobs, reply[1] or None
