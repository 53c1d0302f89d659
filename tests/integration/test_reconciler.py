"""Job leases and the reconciler on a real redis-server: a claim never runs a job another
live run has; an orphaned job is sent again only once it has stayed orphaned for a lease
period, and a queued or leased one never is."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import redis

from tasks import keys
from tasks.app import create_app
from tasks.dispatcher import broker_lists
from tasks.reconciler import Reconciler
from tasks.settings import Settings
from tasks.store import Claim, JobStore
from tests.integration.test_store import make_job
from worker.lease import LeaseKeeper

MODEL = "piper-joe"


def test_claim_refuses_a_job_leased_by_another_live_run(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    first = store.claim(job.id, 3, holder="w-a/11", lease_ms=300, worker="w-a")
    assert (first.verdict, first.attempts) == (Claim.RUN, 1)
    # Another worker, and another run of the same worker (a sibling child): busy.
    assert store.claim(job.id, 3, "w-b/12", 300, "w-b").verdict is Claim.BUSY
    assert store.claim(job.id, 3, "w-a/13", 300, "w-a").verdict is Claim.BUSY
    # The same worker, once it knows that run is over (its child died), takes it at once.
    again = store.claim(job.id, 3, "w-a/13", 300, "w-a", stale="w-a/11")
    assert (again.verdict, again.attempts) == (Claim.RUN, 2)
    assert store.lease_holder(job.id) == "w-a/13"
    time.sleep(0.4)  # worker w-a died: its lease lapsed
    late = store.claim(job.id, 3, "w-b/12", 300, "w-b")
    assert (late.verdict, late.attempts) == (Claim.RUN, 3)


def test_claim_takes_a_job_its_own_worker_marked(store: JobStore) -> None:
    """The keeper marks a prefetched job with the worker's bare name: its runs may claim it,
    other workers may not."""
    job = make_job()
    store.create(job)
    store.redis.set(keys.job_lease_key(job.id), "w-a", px=5000)
    assert store.claim(job.id, 3, "w-b/12", 300, "w-b").verdict is Claim.BUSY
    assert store.claim(job.id, 3, "w-a/11", 300, "w-a").verdict is Claim.RUN


def test_lease_keeper_renews_its_own_and_never_steals(redis_client: redis.Redis) -> None:
    redis_client.set(keys.job_lease_key("theirs"), "worker-b/7", px=5000)
    redis_client.set(keys.job_lease_key("running"), "worker-a/8", px=500)
    keeper = LeaseKeeper(redis_client, "worker-a", 2.0, held=lambda: ["mine", "running", "theirs"])
    assert keeper.renew_once() == 2
    assert redis_client.get(keys.job_lease_key("mine")) == "worker-a"
    # A run's lease keeps the run's name and the keeper's TTL.
    assert redis_client.get(keys.job_lease_key("running")) == "worker-a/8"
    assert redis_client.pttl(keys.job_lease_key("running")) > 1000
    assert redis_client.get(keys.job_lease_key("theirs")) == "worker-b/7"
    # On shutdown it frees its own, so the next worker may claim them at once.
    assert keeper.stop() == 2
    assert redis_client.get(keys.job_lease_key("mine")) is None
    assert redis_client.get(keys.job_lease_key("running")) is None
    assert redis_client.get(keys.job_lease_key("theirs")) == "worker-b/7"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


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
    store.claim(leased.id, 3, holder="alive/1", lease_ms=60_000, worker="alive")
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
