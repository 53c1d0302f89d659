"""Reads of a tenant's jobs: a listing by status reads that status's index (kept by the
scripts that create and move jobs), and reads are rate limited per tenant in the same
script (api.reads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import redis

from tasks import keys
from tasks.jobs import JobStatus
from tasks.settings import Settings
from tasks.store import JobStore
from tests.conftest import ApiServer
from tests.helpers.jobs import AUDIO, make_job


def statuses(redis_client: redis.Redis, tenant: str, job_id: str) -> list[str]:
    """The status indexes that hold the job."""
    return [
        s.value
        for s in JobStatus
        if redis_client.zscore(keys.tenant_status_jobs_key(tenant, s.value), job_id) is not None
    ]


def test_every_transition_moves_the_job_between_status_indexes(
    store: JobStore, redis_client: redis.Redis
) -> None:
    done, canceled, expired = make_job(), make_job(), make_job(deadline_s=1)
    for job in (done, canceled, expired):
        store.create(job)
        assert statuses(redis_client, "acme", job.id) == ["queued"]
    store.claim(done.id, 3)
    assert statuses(redis_client, "acme", done.id) == ["running"]
    store.requeue(done.id)
    assert statuses(redis_client, "acme", done.id) == ["queued"]
    store.claim(done.id, 3)
    store.succeed(done.id, AUDIO)
    assert statuses(redis_client, "acme", done.id) == ["succeeded"]
    store.cancel(canceled.id)
    assert statuses(redis_client, "acme", canceled.id) == ["canceled"]
    redis_client.hset(keys.job_key(expired.id), "created_ts", "0")  # long past its deadline
    store.claim(expired.id, 3)
    assert statuses(redis_client, "acme", expired.id) == ["failed"]
    store.discard(done)
    assert statuses(redis_client, "acme", done.id) == []


def test_a_listing_by_status_finds_old_jobs_behind_many_newer_ones(
    start_api: Callable[..., ApiServer], make_settings: Callable[..., Settings],
    store: JobStore, redis_client: redis.Redis,
) -> None:  # fmt: skip
    """The scan it replaces read at most 1,000 entries: a queued job behind 3,000 newer
    finished ones was not found. The index reads only queued jobs."""
    api = start_api(make_settings(), dispatch=False)
    with api.client() as http:
        old = http.post("/v1/jobs", json={"text": "Still waiting."}).json()["id"]
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(3000):
        job = make_job(status=JobStatus.SUCCEEDED, audio=AUDIO)
        fields = {"status": "succeeded", "tenant": '"acme"', "id": f'"{job.id}"'}
        pipe.zadd(keys.tenant_jobs_key("acme"), {job.id: 0})
        pipe.zadd(keys.tenant_status_jobs_key("acme", "succeeded"), {job.id: 0})
        pipe.hset(keys.job_key(job.id), mapping=fields)
    pipe.execute()
    with api.client() as http:
        queued = http.get("/v1/jobs", params={"status": "queued", "limit": 5}).json()
        assert [j["id"] for j in queued["jobs"]] == [old] and queued["next_cursor"] is None
        other = http.get("/v1/jobs", params={"status": "canceled"}).json()
        assert other == {"jobs": [], "next_cursor": None}
    with api.client("globex") as http:
        assert http.get("/v1/jobs", params={"status": "queued"}).json()["jobs"] == []


def test_a_listing_pages_with_its_cursor(
    start_api: Callable[..., ApiServer], settings: Settings, redis_client: redis.Redis
) -> None:
    api = start_api(settings, dispatch=False)
    with api.client() as http:
        ids = [http.post("/v1/jobs", json={"text": f"Job {i}."}).json()["id"] for i in range(5)]
        http.post(f"/v1/jobs/{ids[2]}/cancel")
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"status": "queued", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v1/jobs", params=params).json()
            seen += [j["id"] for j in page["jobs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == [ids[4], ids[3], ids[1], ids[0]]


def test_reads_past_the_tenants_rate_get_429_with_retry_after(
    start_api: Callable[..., ApiServer], make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    api = start_api(
        make_settings(read_rate_limit_per_s=0.5, read_rate_limit_burst=3), dispatch=False
    )
    with api.client() as http:
        job_id = http.post("/v1/jobs", json={"text": "Poll me."}).json()["id"]
        answers = [
            http.get(f"/v1/jobs/{job_id}"),
            http.get("/v1/jobs"),
            http.get(f"/v1/jobs/{job_id}/audio"),
            http.get(f"/v1/jobs/{job_id}"),
            http.get("/v1/jobs", params={"status": "queued"}),
        ]
    assert [r.status_code for r in answers] == [200, 200, 409, 429, 429]
    for refused in answers[3:]:
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
    with api.client("globex") as http:  # another tenant's bucket is its own
        assert http.get("/v1/jobs").status_code == 200
    assert httpx.get(api.url + "/healthz").status_code == 200
