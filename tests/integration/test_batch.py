"""POST /v1/jobs/batch over real HTTP and Redis: all or none, limits, one admission."""

from __future__ import annotations

import json
import time

import httpx
import redis

from tasks import keys
from tasks.quota import active_jobs
from tests.conftest import ApiServer


def test_batch_creates_every_job_in_order(api: ApiServer, redis_client: redis.Redis) -> None:
    body = {"jobs": [{"text": "One."}, {"text": "Two.", "priority": "high"}, {"text": "Three."}]}
    with api.client() as http:
        response = http.post("/v1/jobs/batch", json=body)
        jobs = response.json()["jobs"]
        fetched = [http.get(f"/v1/jobs/{job['id']}").json() for job in jobs]
    assert response.status_code == 202
    assert [j["priority"] for j in jobs] == ["normal", "high", "normal"]
    assert [j["status"] for j in fetched] == ["queued"] * 3
    assert redis_client.zcard(keys.tenant_jobs_key("acme")) == 3
    assert active_jobs(redis_client, "acme") == 3


def test_a_bad_item_rejects_the_whole_batch_and_names_it(
    api: ApiServer, redis_client: redis.Redis
) -> None:
    items = [{"text": "Fine."}, {"text": "Fine."}, {"text": "   "}, {"text": "Fine."}]
    with api.client() as http:
        bad = http.post("/v1/jobs/batch", json={"jobs": items})
        voice = http.post("/v1/jobs/batch", json={"jobs": [{"text": "a"}, {"voice": "nope", "text": "b"}]})  # fmt: skip
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "validation_error" and error["index"] == 2
    assert error["message"].startswith("jobs[2].text")
    assert voice.status_code == 422 and voice.json()["error"]["index"] == 1
    assert voice.json()["error"]["code"] == "unknown_voice"
    assert redis_client.keys("ttsfleet:job:*") == []


def test_batch_shape_and_size_limits(api: ApiServer) -> None:
    with api.client() as http:
        empty = http.post("/v1/jobs/batch", json={"jobs": []})
        extra = http.post("/v1/jobs/batch", json={"jobs": [{"text": "a"}], "x": 1})
        not_list = http.post("/v1/jobs/batch", json=[{"text": "a"}])
        too_many = http.post("/v1/jobs/batch", json={"jobs": [{"text": "a"}] * 1001})
        huge = http.post(
            "/v1/jobs/batch",
            content=json.dumps({"jobs": [{"text": "a" * 4000}] * 2100}),
            headers={"Content-Type": "application/json"},
        )
    for response in (empty, extra, not_list, too_many):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"


def test_a_full_batch_of_1000_is_one_quick_admission(
    api: ApiServer, redis_client: redis.Redis
) -> None:
    body = {"jobs": [{"text": f"Sentence number {i}."} for i in range(1000)]}
    with api.client() as http:
        started = time.perf_counter()
        response = http.post("/v1/jobs/batch", json=body)
        elapsed = time.perf_counter() - started
    assert response.status_code == 202 and len(response.json()["jobs"]) == 1000
    assert redis_client.zcard(keys.tenant_jobs_key("acme")) == 1000
    print(f"\nbatch of 1000 jobs: 202 in {elapsed * 1000:.0f} ms")


def test_batch_body_between_64_kib_and_8_mib_is_accepted(api: ApiServer) -> None:
    body = json.dumps({"jobs": [{"text": "b" * 4000}] * 100})
    assert 64 * 1024 < len(body) < 8 * 1024 * 1024
    response = httpx.post(
        api.url + "/v1/jobs/batch",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer key-acme"},
    )
    assert response.status_code == 202
