"""Every Redis key and queue name the fleet uses, in one place, each with why it exists."""

from __future__ import annotations

PREFIX = "ttsfleet"

# Hash per job: the record clients read and workers transition (fields in tasks.store).
JOB = PREFIX + ":job:{job_id}"

# Sorted set per tenant, all scores 0, members job ids: ids start with their creation time,
# so lexical order is creation order and `GET /v1/jobs` pages with ZRANGE BYLEX REV.
TENANT_JOBS = PREFIX + ":tenant:{tenant}:jobs"

# Sorted set, the callbacks outbox: members are event ids, the score is when the event is
# next due (epoch seconds). Written in the same Lua script as a job's terminal status, so no
# terminal event is lost or doubled; retries wait here, not as Celery ETA tasks (DESIGN §5).
# A claimed event's score is pushed to the end of its lease: a crashed worker's claim returns.
CALLBACK_OUTBOX = PREFIX + ":callbacks:outbox"

# Hash per callback event (job_id, type, attempts, first_ts, lease token): the delivery state
# the outbox member points at; it expires with the job record.
CALLBACK_EVENT = PREFIX + ":callback:{event_id}"

# Celery task name of one synthesis job, and the queue of each model's workers.
SYNTHESIZE_TASK = "ttsfleet.synthesize"
SYNTH_QUEUE = "synth.{model}"


def job_key(job_id: str) -> str:
    return JOB.format(job_id=job_id)


def tenant_jobs_key(tenant: str) -> str:
    return TENANT_JOBS.format(tenant=tenant)


def synth_queue(model: str) -> str:
    return SYNTH_QUEUE.format(model=model)


def callback_event_key(event_id: str) -> str:
    return CALLBACK_EVENT.format(event_id=event_id)


def callback_event_id(job_id: str, status: str) -> str:
    """The `webhook-id` of a job's terminal event: deterministic, so it is the same on
    every retry and a second terminal write cannot make a second event."""
    return f"msg_{job_id}_{status}"
