"""Canceling a job from the event loop: the store's transition script (tasks.store), awaited
with redis.asyncio like a submit, not run by the blocking client in a worker thread."""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio

from api import errors
from api.views import public_view
from tasks import keys
from tasks.jobs import JobStatus, utc_now
from tasks.store import MAX_JOB_ID_CHARS, TRANSITION_LUA, transition_call


class Canceler:
    def __init__(self, client: redis.asyncio.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._transition = client.register_script(TRANSITION_LUA)

    async def _view(self, tenant: str, job_id: str) -> dict[str, Any]:
        view = None
        if len(job_id) <= MAX_JOB_ID_CHARS:
            raw = cast(dict[str, str], await self._redis.hgetall(keys.job_key(job_id)))
            view = public_view(raw, tenant)
        if view is None:
            raise errors.JobNotFound(job_id)
        return view

    async def cancel(self, tenant: str, job_id: str) -> dict[str, Any]:
        """queued or running → canceled: the job as it is after; 404 for another tenant's
        job, 409 `job_already_terminal` for one that has ended."""
        await self._view(tenant, job_id)
        script_keys, args = transition_call(
            job_id, ("queued", "running"), JobStatus.CANCELED, self._ttl_s,
            finished_at=utc_now(),
        )  # fmt: skip
        applied, _ = await self._transition(keys=script_keys, args=args)
        view = await self._view(tenant, job_id)
        if not applied:
            raise errors.JobAlreadyTerminal(f"the job is already {view['status']}")
        return view
