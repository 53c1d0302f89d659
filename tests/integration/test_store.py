"""The job store on a real redis-server: atomic transitions, claims, listing, TTL."""

from __future__ import annotations

import time

import redis

from tasks import keys
from tasks.jobs import (
    ErrorInfo,
    JobStatus,
)
from tasks.store import Claim, JobStore
from tests.helpers.jobs import AUDIO, make_job


def test_record_round_trips_exactly(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    assert store.get(job.id) == job


def test_record_and_index_expire_with_ttl(store: JobStore, redis_client: redis.Redis) -> None:
    job = make_job()
    store.create(job)
    assert 0 < redis_client.ttl(keys.job_key(job.id)) <= store._ttl_s
    assert 0 < redis_client.ttl(keys.tenant_jobs_key("acme")) <= store._ttl_s


def test_late_success_does_not_overwrite_cancel(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    assert store.claim(job.id, 3).verdict is Claim.RUN
    assert store.cancel(job.id).applied
    result = store.succeed(job.id, AUDIO)
    assert not result.applied and result.previous is JobStatus.CANCELED
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELED and final.audio is None


def test_redelivered_succeeded_job_is_not_run_again(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    store.claim(job.id, 3)
    assert store.succeed(job.id, AUDIO).applied
    claim = store.claim(job.id, 3)
    assert claim.verdict is Claim.TERMINAL and claim.attempts == 1
    assert store.get(job.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]


def test_claims_count_attempts_and_stop_at_the_limit(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    assert [store.claim(job.id, 2).verdict for _ in range(2)] == [Claim.RUN, Claim.RUN]
    claim = store.claim(job.id, 2)
    # The delivery that finds the limit reached is not a run: attempts stays at the limit.
    assert claim.verdict is Claim.EXHAUSTED and claim.attempts == 2
    final = store.get(job.id)
    assert final is not None and final.status is JobStatus.FAILED and final.attempts == 2
    assert final.error is not None and final.error.code == "worker_lost"


def test_job_past_its_deadline_fails_without_running(store: JobStore) -> None:
    job = make_job(deadline_s=1)
    store.create(job, now=time.time() - 5)
    assert store.claim(job.id, 3).verdict is Claim.EXPIRED
    final = store.get(job.id)
    assert final is not None and final.error is not None
    assert (final.status, final.error.code, final.attempts) == (
        JobStatus.FAILED,
        "deadline_exceeded",
        0,
    )


def test_missing_job_claims_missing(store: JobStore) -> None:
    assert store.claim("01NOPE", 3).verdict is Claim.MISSING


def test_failed_job_cannot_be_canceled(store: JobStore) -> None:
    job = make_job()
    store.create(job)
    store.fail(job.id, ErrorInfo(code="engine_error", message="boom"))
    assert not store.cancel(job.id).applied


def test_list_pages_newest_first_with_status_filter(store: JobStore) -> None:
    jobs = []
    for _ in range(7):
        job = make_job()
        store.create(job)
        jobs.append(job)
        time.sleep(0.002)
    store.create(make_job(tenant="globex"))
    store.cancel(jobs[1].id)
    store.cancel(jobs[4].id)

    page, cursor = store.list("acme", None, 3, None)
    assert [j.id for j in page] == [j.id for j in reversed(jobs)][:3]
    seen = [j.id for j in page]
    while cursor:
        page, cursor = store.list("acme", None, 3, cursor)
        seen += [j.id for j in page]
    assert seen == [j.id for j in reversed(jobs)]

    canceled, _ = store.list("acme", JobStatus.CANCELED, 10, None)
    assert [j.id for j in canceled] == [jobs[4].id, jobs[1].id]


def test_deadline_does_not_fail_a_job_that_already_started(store: JobStore) -> None:
    """A transient retry waits in `queued` again; `deadline_s` is about the first start."""
    job = make_job(deadline_s=1)
    store.create(job)
    assert store.claim(job.id, 3).verdict is Claim.RUN
    assert store.requeue(job.id).applied
    store.redis.hset(keys.job_key(job.id), "created_ts", repr(time.time() - 60))
    claim = store.claim(job.id, 3)
    assert (claim.verdict, claim.attempts) == (Claim.RUN, 2)
