"""Every Redis key and queue name the fleet uses, in one place, each with why it exists."""

from __future__ import annotations

PREFIX = "ttsfleet"

# Hash per job: the record clients read and workers transition (fields in tasks.store).
JOB = PREFIX + ":job:{job_id}"

# Sorted set per tenant, all scores 0, members job ids: ids start with their creation time,
# so lexical order is creation order and `GET /v1/jobs` pages with ZRANGE BYLEX REV.
TENANT_JOBS = PREFIX + ":tenant:{tenant}:jobs"

# Hash per distinct request (text, voice, speed, format, rate, model version): where its
# audio already is, shared across tenants; a hit copies that object to the job's own key.
CACHE = PREFIX + ":cache:{digest}"

# String per distinct request being synthesized right now (SET NX with a TTL), so that
# concurrent identical requests on different workers are synthesized once.
CACHE_LEASE = PREFIX + ":cache-lease:{digest}"

# Celery task name of one synthesis job, and the queue of each model's workers.
SYNTHESIZE_TASK = "ttsfleet.synthesize"
SYNTH_QUEUE = "synth.{model}"


def job_key(job_id: str) -> str:
    return JOB.format(job_id=job_id)


def tenant_jobs_key(tenant: str) -> str:
    return TENANT_JOBS.format(tenant=tenant)


def synth_queue(model: str) -> str:
    return SYNTH_QUEUE.format(model=model)


def cache_key(digest: str) -> str:
    return CACHE.format(digest=digest)


def cache_lease_key(digest: str) -> str:
    return CACHE_LEASE.format(digest=digest)
