"""Job records for store-level tests, and waiting for a job to end over the API."""

from __future__ import annotations

import httpx

from tasks.jobs import (
    AudioFormat,
    AudioInfo,
    Job,
    JobStatus,
    Priority,
    new_job_id,
    utc_now,
)
from tests.conftest import wait_until


def make_job(tenant: str = "acme", **overrides: object) -> Job:
    job_id = new_job_id()
    values: dict[str, object] = dict(
        id=job_id, tenant=tenant, status=JobStatus.QUEUED, created_at=utc_now(),
        voice="en_US-joe-medium", model="piper-joe", text="Hello.", speed=1.0,
        format=AudioFormat.WAV, sample_rate=22050, priority=Priority.NORMAL,
        storage_key=f"{tenant}/{job_id}.wav", metadata={"nested": {"list": [], "empty": {}}},
    )  # fmt: skip
    values.update(overrides)
    return Job.model_validate(values)


AUDIO = AudioInfo(
    url="/x", format=AudioFormat.WAV, sample_rate=22050, duration_s=1.0, bytes=10, sha256="0" * 64
)


AUDIO = AudioInfo(
    url="/x", format=AudioFormat.WAV, sample_rate=22050, duration_s=1.0, bytes=10, sha256="0" * 64
)


def wait_terminal(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, object]:
    def terminal() -> dict[str, object] | None:
        job = http.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    result: dict[str, object] = wait_until(terminal, timeout=timeout, interval=0.05)
    return result
