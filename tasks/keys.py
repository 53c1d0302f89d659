"""Every Redis key and queue name the fleet uses, in one place, each with why it exists."""

from __future__ import annotations

PREFIX = "ttsfleet"

# Hash per job: the record clients read and workers transition (fields in tasks.store).
JOB = PREFIX + ":job:{job_id}"

# Sorted set per tenant, all scores 0, members job ids: ids start with their creation time,
# so lexical order is creation order and `GET /v1/jobs` pages with ZRANGE BYLEX REV.
TENANT_JOBS = PREFIX + ":tenant:{tenant}:jobs"

# Celery task name of one synthesis job, and the queue of each model's workers.
SYNTHESIZE_TASK = "ttsfleet.synthesize"
SYNTH_QUEUE = "synth.{model}"


def job_key(job_id: str) -> str:
    return JOB.format(job_id=job_id)


def tenant_jobs_key(tenant: str) -> str:
    return TENANT_JOBS.format(tenant=tenant)


def synth_queue(model: str) -> str:
    return SYNTH_QUEUE.format(model=model)
