"""Tenant limits on a real Redis: max_queued_jobs (429 quota_exceeded) and the submit rate
limit (429 rate_limited), both with Retry-After, and the active count the store keeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import redis

from tasks import keys
from tasks.jobs import ErrorInfo
from tasks.quota import RateLimiter, active_jobs
from tasks.settings import Settings
from tasks.store import JobStore
from tests.conftest import ApiServer, async_twin, wait_until
from tests.helpers.jobs import AUDIO, make_job


def tenants_file(tmp_path: Path, max_queued_jobs: int) -> Path:
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [
        {"id": "acme", "api_keys": ["key-acme"], "max_queued_jobs": max_queued_jobs},
        {"id": "globex", "api_keys": ["key-globex"]},
    ]}))  # fmt: skip
    return path


def test_quota_counts_queued_and_running_jobs(
    start_api: Callable[..., ApiServer],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    settings = make_settings(api_keys=None, tenants_file=tenants_file(tmp_path, 3))
    api = start_api(settings, dispatch=False)
    store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    with api.client("acme") as acme, api.client("globex") as globex:
        ids = [acme.post("/v1/jobs", json={"text": f"{i}."}).json()["id"] for i in range(2)]
        over = acme.post("/v1/jobs/batch", json={"jobs": [{"text": "a"}, {"text": "b"}]})
        assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
        assert int(over.headers["retry-after"]) >= 1
        third = acme.post("/v1/jobs", json={"text": "Fits."})
        fourth = acme.post("/v1/jobs", json={"text": "Does not."})
        assert third.status_code == 202 and fourth.status_code == 429
        # Another tenant is not affected.
        assert globex.post("/v1/jobs", json={"text": "Mine."}).status_code == 202
        # Jobs leaving queued/running free their slots: cancel, succeed, fail.
        assert acme.post(f"/v1/jobs/{ids[0]}/cancel").status_code == 200
        assert active_jobs(redis_client, "acme") == 2
        store.claim(ids[1], 3)
        assert active_jobs(redis_client, "acme") == 2  # running still counts
        store.succeed(ids[1], AUDIO)
        store.fail(third.json()["id"], ErrorInfo(code="engine_error", message="x"))
        assert active_jobs(redis_client, "acme") == 0
        refill = acme.post("/v1/jobs/batch", json={"jobs": [{"text": "a"}] * 3})
        assert refill.status_code == 202
        assert acme.post("/v1/jobs", json={"text": "Full again."}).status_code == 429
    assert active_jobs(redis_client, "acme") == 3


def test_redelivery_and_late_transitions_do_not_count_twice(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job = make_job()
    store.create(job)
    assert active_jobs(redis_client, "acme") == 1
    store.claim(job.id, 3)
    store.requeue(job.id)  # running → queued: still active
    store.claim(job.id, 3)
    assert active_jobs(redis_client, "acme") == 1
    store.cancel(job.id)
    store.cancel(job.id)  # no-op on a terminal job
    store.succeed(job.id, AUDIO)  # late success after cancel: not applied
    assert active_jobs(redis_client, "acme") == 0
    assert not redis_client.exists(keys.tenant_active_key("acme"))  # no entry left behind


def test_a_job_whose_record_expired_no_longer_counts_against_its_tenants_limit(
    start_api: Callable[..., ApiServer],
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    settings = make_settings(api_keys=None, tenants_file=tenants_file(tmp_path, 1), job_ttl_s=1)
    api = start_api(settings, dispatch=False)  # nothing runs it: the job stays queued
    with api.client("acme") as acme:
        job = acme.post("/v1/jobs", json={"text": "Never runs."}).json()
        assert acme.post("/v1/jobs", json={"text": "Over."}).status_code == 429
        wait_until(lambda: not redis_client.exists(keys.job_key(job["id"])), timeout=10)
        assert acme.post("/v1/jobs", json={"text": "Fits again."}).status_code == 202
    assert active_jobs(redis_client, "acme") == 1


def test_a_record_created_by_the_store_frees_its_slot_when_it_expires(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, ttl_s=1)
    job = make_job()
    store.create(job)
    assert active_jobs(redis_client, "acme") == 1
    wait_until(lambda: store.get(job.id) is None, timeout=10)
    assert active_jobs(redis_client, "acme") == 0


def test_a_discarded_job_gives_its_slot_back(store: JobStore, redis_client: redis.Redis) -> None:
    kept, discarded = make_job(), make_job()
    store.create(kept)
    store.create(discarded)
    store.discard(discarded)
    assert active_jobs(redis_client, "acme") == 1
    store.discard(discarded)  # twice: the other job's slot stays taken
    assert active_jobs(redis_client, "acme") == 1


def test_rate_limit_is_429_with_retry_after_per_tenant(
    start_api: Callable[..., ApiServer], make_settings: Callable[..., Settings]
) -> None:
    api = start_api(make_settings(rate_limit_per_s=0.2, rate_limit_burst=2), dispatch=False)
    with api.client("acme") as acme, api.client("globex") as globex:
        statuses = [acme.post("/v1/jobs", json={"text": "a"}).status_code for _ in range(3)]
        limited = acme.post("/v1/jobs/batch", json={"jobs": [{"text": "a"}]})
        other = globex.post("/v1/jobs", json={"text": "a"})
    assert statuses == [202, 202, 429]
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 5
    assert other.status_code == 202


def test_token_bucket_refills_at_its_rate(redis_client: redis.Redis) -> None:
    async def check() -> None:
        async with async_twin(redis_client) as client:
            bucket = RateLimiter(client, per_s=10, burst=5)
            now = 1000.0

            async def takes(n: int, at: float) -> list[bool]:
                return [(await bucket.take("t", now=at)).allowed for _ in range(n)]

            assert await takes(5, now) == [True] * 5
            refused = await bucket.take("t", now=now)
            assert not refused.allowed and refused.retry_after_s == 1
            assert await takes(2, now + 0.1) == [True, False]  # one token back after 100 ms
            assert sum(await takes(10, now + 100)) == 5  # the burst caps it

    asyncio.run(check())
