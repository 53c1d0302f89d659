"""Job leases and the reconciler on a real redis-server: a claim never runs a job another
live run has; an orphaned job is sent again only once it has stayed orphaned for a lease
period, and a queued or leased one never is."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import redis

from scheduler.reconciler import Reconciler
from tasks import keys
from tasks.app import broker_lists, create_app
from tasks.settings import Settings
from tasks.store import Claim, JobStore
from tests.conftest import wait_until
from tests.helpers.clock import Clock
from tests.helpers.jobs import make_job
from worker.lease import LeaseKeeper

MODEL = "piper-joe"


def test_claim_refuses_a_job_leased_by_another_live_run(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    first = store.claim(job.id, 3, holder="w-a/11", lease_ms=300)
    assert (first.verdict, first.attempts) == (Claim.RUN, 1)
    # Another worker, and another run of the same worker (a sibling child): busy.
    assert store.claim(job.id, 3, "w-b/12", 300).verdict is Claim.BUSY
    assert store.claim(job.id, 3, "w-a/13", 300).verdict is Claim.BUSY
    # The same worker, once it knows that run is over (its child died), takes it at once.
    again = store.claim(job.id, 3, "w-a/13", 300, stale="w-a/11")
    assert (again.verdict, again.attempts) == (Claim.RUN, 2)
    assert store.lease_holder(job.id) == "w-a/13"
    # Worker w-a died: its lease lapses (Redis's own expiry, not a sleep of ours).
    wait_until(lambda: store.lease_holder(job.id) is None, timeout=5, interval=0.02)
    late = store.claim(job.id, 3, "w-b/12", 300)
    assert (late.verdict, late.attempts) == (Claim.RUN, 3)


def test_a_bare_worker_mark_blocks_no_claim(store: JobStore) -> None:
    """A worker's bare mark says it holds a prefetched message of the job, not that the job
    runs: a handed-back job (retry countdown, warm shutdown) may run anywhere at once."""
    job = make_job()
    store.create(job)
    store.redis.set(keys.job_lease_key(job.id), "w-a", px=5000)
    assert store.claim(job.id, 3, "w-b/12", 300).verdict is Claim.RUN
    assert store.lease_holder(job.id) == "w-b/12"


def test_lease_keeper_names_runs_renews_its_own_and_never_steals(
    redis_client: redis.Redis,
) -> None:
    lease = keys.job_lease_key
    redis_client.set(lease("theirs"), "worker-b/7", px=5000)
    redis_client.set(lease("running"), "worker-a/8", px=500)
    redis_client.set(lease("started"), "worker-a", px=500)
    held = {"prefetched": None, "lapsed": 9, "running": 8, "started": 10, "theirs": 11}
    keeper = LeaseKeeper(redis_client, "worker-a", 2.0, held=lambda: held)
    assert keeper.renew_once() == 4
    assert redis_client.get(lease("prefetched")) == "worker-a"
    # A running request whose lease lapsed (Redis was unreachable) gets its run's name back,
    # never the bare mark that would let a sibling claim it; so does a bare mark that now runs.
    assert redis_client.get(lease("lapsed")) == "worker-a/9"
    assert redis_client.get(lease("started")) == "worker-a/10"
    # A run's lease keeps the run's name and gets the keeper's TTL.
    assert redis_client.get(lease("running")) == "worker-a/8"
    assert redis_client.pttl(lease("running")) > 1000
    assert redis_client.get(lease("theirs")) == "worker-b/7"
    # On shutdown it frees its own, so the next worker may claim them at once.
    assert keeper.stop() == 4
    assert [redis_client.get(lease(k)) for k in held] == [None, None, None, None, "worker-b/7"]


def queued_ids(client: redis.Redis) -> list[str]:
    return [
        json.loads(raw)["headers"]["id"]
        for name in broker_lists(MODEL)
        for raw in client.lrange(name, 0, -1)
    ]


def test_reconciler_resends_only_jobs_orphaned_for_a_lease_period(
    settings: Settings, store: JobStore, redis_client: redis.Redis
) -> None:
    celery = create_app(settings)
    clock = Clock()
    reconciler = Reconciler(redis_client, celery, [MODEL], lease_s=2.0, clock=clock)
    orphan, leased, done = make_job(), make_job(), make_job()
    for job in (orphan, leased, done):
        store.create(job)
        redis_client.zadd(keys.inflight_key(MODEL), {job.id: 1.0})
    store.claim(orphan.id, 3)  # running on a worker that then died
    store.claim(leased.id, 3, holder="alive/1", lease_ms=60_000)
    store.cancel(done.id)
    # The dead worker's delivery, as kombu keeps it.
    message = {"headers": {"id": orphan.id}, "body": ""}
    redis_client.hset(keys.KOMBU_UNACKED, "tag-1", json.dumps([message, "", "synth"]))
    redis_client.zadd(keys.KOMBU_UNACKED_INDEX, {"tag-1": 1.0})

    assert reconciler.pass_once() == 0  # suspect, not yet orphaned long enough
    assert redis_client.zrange(keys.inflight_key(MODEL), 0, -1) == sorted([orphan.id, leased.id])
    clock.now = 2.5
    assert reconciler.pass_once() == 1
    assert queued_ids(redis_client) == [orphan.id]
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
    assert redis_client.zcard(keys.KOMBU_UNACKED_INDEX) == 0
    # Now its message waits in the queue: not sent a third time.
    clock.now = 10.0
    assert reconciler.pass_once() == 0 and reconciler.pass_once() == 0
    assert queued_ids(redis_client) == [orphan.id]
    celery.close()


def test_reconciler_leaves_a_job_waiting_out_its_retry_countdown(
    settings: Settings, store: JobStore, redis_client: redis.Redis
) -> None:
    """A transient failure's retry waits on a worker's timer, unleased, for its countdown:
    sending it again would skip the backoff. Once the countdown is over it is fair game."""
    celery = create_app(settings)
    clock = Clock()
    reconciler = Reconciler(redis_client, celery, [MODEL], lease_s=2.0, clock=clock)
    job = make_job()
    store.create(job)
    redis_client.zadd(keys.inflight_key(MODEL), {job.id: 1.0})
    eta = datetime.now(UTC) + timedelta(seconds=30)
    message = {"headers": {"id": job.id, "eta": eta.isoformat()}, "body": ""}
    redis_client.hset(keys.KOMBU_UNACKED, "tag-1", json.dumps([message, "", "synth"]))
    for now in (0.0, 2.5, 10.0):
        clock.now = now
        assert reconciler.pass_once() == 0
    assert queued_ids(redis_client) == []
    # Its worker died and the countdown is long over: sent again, the stale entry dropped.
    message["headers"]["eta"] = (eta - timedelta(seconds=60)).isoformat()
    redis_client.hset(keys.KOMBU_UNACKED, "tag-1", json.dumps([message, "", "synth"]))
    assert reconciler.pass_once() == 0
    clock.now = 13.0
    assert reconciler.pass_once() == 1
    assert queued_ids(redis_client) == [job.id]
    assert redis_client.hlen(keys.KOMBU_UNACKED) == 0
    celery.close()
