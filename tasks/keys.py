"""Every Redis key and queue name the fleet uses, in one place, each with why it exists."""

from __future__ import annotations

PREFIX = "ttsfleet"

# Hash per job: the record clients read and workers transition (fields in tasks.store).
JOB = PREFIX + ":job:{job_id}"

# Sorted set per tenant, all scores 0, members job ids: ids start with their creation time,
# so lexical order is creation order and `GET /v1/jobs` pages with ZRANGE BYLEX REV.
TENANT_JOBS = PREFIX + ":tenant:{tenant}:jobs"

# Sorted set per tenant and status, like TENANT_JOBS but holding only the jobs in that status:
# `GET /v1/jobs?status=` reads one page of it instead of scanning every job. A job moves
# between them in the same Lua script that changes its status (tasks.store, api.intake).
TENANT_STATUS_JOBS = PREFIX + ":tenant:{tenant}:jobs:{status}"

# Token bucket per tenant (hash: tokens, ts) for the read rate limit (status polls and
# listings), taken in the same script as the read (api.reads).
TENANT_READ_RATE = PREFIX + ":tenant:{tenant}:read-rate"

# Hash per distinct request (text, voice, speed, format, rate, model version) and cache
# namespace (a tenant's own, `t.<tenant>`, or `shared` for the tenants that opt in, see
# worker.cache): where its audio already is; a hit copies that object to the job's own key.
# The digest is `<namespace>:<sha256>`.
CACHE = PREFIX + ":cache:{digest}"

# String per distinct request being synthesized right now (SET NX with a TTL), so that
# concurrent identical requests on different workers are synthesized once.
CACHE_LEASE = PREFIX + ":cache-lease:{digest}"

# String per distinct long request (a book, tasks.units): the id of the book that fanned out
# to make it, valid while that book is running or queued. An identical book that comes
# meanwhile follows it (worker.cache.ResultCache.lead) instead of fanning out again.
BOOK_LEADER = PREFIX + ":book-leader:{digest}"

# String per book that follows another (BOOK_LEADER): the leader's id. The reconciler
# leaves such a book alone while its leader runs, and sends it again once the leader ended:
# it then copies the leader's cached audio, or is made itself.
BOOK_FOLLOWS = PREFIX + ":book-follows:{job_id}"

# Sorted set, the callbacks outbox: members are event ids, the score is when the event is
# next due (epoch seconds). Written in the same Lua script as a job's terminal status, so no
# terminal event is lost or doubled; retries wait here, not as Celery ETA tasks (DESIGN §5).
# A claimed event's score is pushed to the end of its lease: a crashed worker's claim returns.
CALLBACK_OUTBOX = PREFIX + ":callbacks:outbox"

# Hash per callback event (job_id, type, attempts, first_ts, lease token): the delivery state
# the outbox member points at; it expires with the job record.
CALLBACK_EVENT = PREFIX + ":callback:{event_id}"

# Pub/sub channel: every job id whose record turns terminal, PUBLISHed by the store's
# transition scripts (tasks.store), so that an API process's callers waiting for jobs
# (api.waiters) share one subscriber instead of polling; tasks/lua/announce_end.lua spells it.
JOB_ENDED_CHANNEL = PREFIX + ":jobs:ended"

# Pub/sub channel: "there is new pending work", PUBLISHed by the scripts that fill the
# pending lists (api/lua/admit.lua, tasks/lua/fan_out.lua spell it), so an idle dispatcher
# (scheduler.dispatcher) moves a job at once instead of at its next poll.
DISPATCH_WAKE_CHANNEL = PREFIX + ":dispatch:wake"

# String per job's audio object (keyed by its storage key, so a cache hit copies it with the
# audio): the job's timestamps as JSON (tasks.timestamps), expiring with the record.
TIMESTAMPS = PREFIX + ":timestamps:{storage_key}"

# Stream per job of its audio as it is made (worker.stream XADDs, api.streams XREADs): one
# entry per piece, in the job's stream container, then an end entry; trimmed (MAXLEN) and
# expired, so Redis holds only what live listeners may still need.
AUDIO_STREAM = PREFIX + ":stream:{job_id}"

# Celery task name of one synthesis job, and the queue of each model's workers.
SYNTHESIZE_TASK = "ttsfleet.synthesize"
SYNTH_QUEUE = "synth.{model}"


def job_key(job_id: str) -> str:
    return JOB.format(job_id=job_id)


def timestamps_key(storage_key: str) -> str:
    return TIMESTAMPS.format(storage_key=storage_key)


def audio_stream_key(job_id: str) -> str:
    return AUDIO_STREAM.format(job_id=job_id)


def tenant_jobs_key(tenant: str) -> str:
    return TENANT_JOBS.format(tenant=tenant)


def tenant_status_jobs_key(tenant: str, status: str) -> str:
    return TENANT_STATUS_JOBS.format(tenant=tenant, status=status)


def tenant_read_rate_key(tenant: str) -> str:
    return TENANT_READ_RATE.format(tenant=tenant)


def synth_queue(model: str) -> str:
    return SYNTH_QUEUE.format(model=model)


# Sorted set per tenant of its queued or running jobs (member: job id, score: when the job's
# record expires): admission drops the entries whose score has passed, checks the rest against
# max_queued_jobs and adds the new jobs in the script that creates them; the store's terminal
# transitions and discard remove a job (tasks.quota says why a set and not a count). A new
# name: the counter it replaces lived at ":active", and a Redis kept across an upgrade (make
# up's AOF) must not meet a set operation on that string (WRONGTYPE). tasks/lua/release_active.lua
# spells this pattern too (it builds the key from a record's tenant); a test holds them equal.
TENANT_ACTIVE = PREFIX + ":tenant:{tenant}:active-jobs"

# Token bucket per tenant (hash: tokens, ts) for the submit rate limit.
TENANT_RATE = PREFIX + ":tenant:{tenant}:rate"

# Idempotency record per tenant and key (the key is hashed: clients choose up to 255 chars):
# JSON {"fp": body fingerprint, "jobs": [ids] or null while the first request is in flight}.
IDEMPOTENCY = PREFIX + ":idem:{tenant}:{digest}"

# FIFO list per model, priority and tenant of job ids waiting for the dispatcher (the API
# LPUSHes, the dispatcher RPOPs): a tenant's backlog waits here, not in the Celery queue.
PENDING = PREFIX + ":pending:{model}:{priority}:{tenant}"

# Ring per model and priority of the tenants that have pending jobs; the dispatcher rotates
# it to serve tenants round-robin.
PENDING_TENANTS = PREFIX + ":pending:{model}:{priority}"

# Hash per model of jobs the dispatcher took from a pending list but has not yet confirmed
# as sent to Celery (job id -> "tenant priority"); a restarted dispatcher sends them again.
DISPATCHING = PREFIX + ":dispatching:{model}"

# Lease held by the one running dispatcher (value: its token), so two never interleave.
DISPATCHER_LEASE = PREFIX + ":dispatcher:lease"


# String per job whose message a worker holds (value: the run's name `worker/pid`, or the
# worker's bare mark while the job is prefetched; short TTL renewed by the worker's main
# process, worker.lease): a job whose lease lapsed has no live delivery.
JOB_LEASE = PREFIX + ":job-lease:{job_id}"

# Sorted set per model of jobs the dispatcher sent to Celery (score: when), scanned by the
# reconciler (scheduler.reconciler) for jobs whose message died with a worker.
INFLIGHT = PREFIX + ":inflight:{model}"

# kombu's Redis transport: messages delivered but not acked, by delivery tag, and their index.
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"


def job_lease_key(job_id: str) -> str:
    return JOB_LEASE.format(job_id=job_id)


def inflight_key(model: str) -> str:
    return INFLIGHT.format(model=model)


def tenant_active_key(tenant: str) -> str:
    return TENANT_ACTIVE.format(tenant=tenant)


def tenant_rate_key(tenant: str) -> str:
    return TENANT_RATE.format(tenant=tenant)


def idempotency_key(tenant: str, digest: str) -> str:
    return IDEMPOTENCY.format(tenant=tenant, digest=digest)


def pending_key(model: str, priority: str, tenant: str) -> str:
    return PENDING.format(model=model, priority=priority, tenant=tenant)


def pending_tenants_key(model: str, priority: str) -> str:
    return PENDING_TENANTS.format(model=model, priority=priority)


def dispatching_key(model: str) -> str:
    return DISPATCHING.format(model=model)


def cache_key(digest: str) -> str:
    return CACHE.format(digest=digest)


def cache_lease_key(digest: str) -> str:
    return CACHE_LEASE.format(digest=digest)


def book_leader_key(digest: str) -> str:
    return BOOK_LEADER.format(digest=digest)


def book_follows_key(job_id: str) -> str:
    return BOOK_FOLLOWS.format(job_id=job_id)


def callback_event_key(event_id: str) -> str:
    return CALLBACK_EVENT.format(event_id=event_id)


def callback_event_id(job_id: str, status: str) -> str:
    """The `webhook-id` of a job's terminal event: deterministic, so it is the same on
    every retry and a second terminal write cannot make a second event."""
    return f"msg_{job_id}_{status}"


def progress_event_id(job_id: str, pieces_done: int) -> str:
    """The `webhook-id` of a `job.progress` event: one per job and count of pieces done, so
    a run that goes over the same pieces again sends no second event for them."""
    return f"msg_{job_id}_progress_{pieces_done}"


# Hash per worker node (node, model, device, queue, pid, started, beat, jobs_done, jobs_per_s,
# in_flight, recycles; draining once `ttsfleet fleet drain` ran), written every few seconds
# by the worker with a TTL of three beats, so `ttsfleet fleet` sees live workers without a
# broadcast and a dead one drops out.
WORKER = PREFIX + ":worker:{node}"

# Sorted set of worker nodes scored by their last beat (unix s): the index of WORKER hashes.
WORKERS = PREFIX + ":workers"


# Sorted set per process role without a Celery node (dispatcher, callbacks): members are
# `host/pid`, scored by the process's last beat (unix s). `ttsfleet health ROLE` reads it
# for its own host: the role's liveness without a broadcast (tasks.presence).
ALIVE = PREFIX + ":alive:{role}"


def alive_key(role: str) -> str:
    return ALIVE.format(role=role)


def worker_key(node: str) -> str:
    return WORKER.format(node=node)
