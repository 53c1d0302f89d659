"""Idempotency-Key over real HTTP and Redis: replay, reuse, in flight, tenants, restarts."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from api.idempotency import fingerprint, record_value
from tasks import keys
from tasks.settings import Settings
from tests.conftest import ApiServer


def test_same_key_and_body_returns_the_same_job(api: ApiServer) -> None:
    with api.client() as http:
        headers = {"Idempotency-Key": "order-1"}
        first = http.post("/v1/jobs", json={"text": "Hello.", "speed": 1.0}, headers=headers)
        http.post(f"/v1/jobs/{first.json()['id']}/cancel")
        # The same JSON spaced and ordered differently is the same request.
        again = http.post(
            "/v1/jobs",
            content=b'{ "speed": 1.0,  "text": "Hello." }',
            headers={**headers, "Content-Type": "application/json"},
        )
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == f"/v1/jobs/{first.json()['id']}"
    # The job as it is now, not as it was.
    assert again.json()["status"] == "canceled"


def test_same_key_with_another_body_is_422(api: ApiServer) -> None:
    with api.client() as http:
        headers = {"Idempotency-Key": "order-2"}
        assert http.post("/v1/jobs", json={"text": "One."}, headers=headers).status_code == 202
        other = http.post("/v1/jobs", json={"text": "Two."}, headers=headers)
        batch = http.post("/v1/jobs/batch", json={"jobs": [{"text": "One."}]}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert batch.json()["error"]["code"] == "idempotency_key_reused"


def test_key_longer_than_255_is_422(api: ApiServer, redis_client: redis.Redis) -> None:
    with api.client() as http:
        ok = http.post("/v1/jobs", json={"text": "a"}, headers={"Idempotency-Key": "k" * 255})
        long = http.post("/v1/jobs", json={"text": "a"}, headers={"Idempotency-Key": "k" * 256})
    assert ok.status_code == 202
    assert long.status_code == 422 and long.json()["error"]["code"] == "validation_error"
    assert redis_client.zcard(keys.tenant_jobs_key("acme")) == 1


def test_50_concurrent_identical_submits_make_one_job(
    api: ApiServer, redis_client: redis.Redis
) -> None:
    def submit(_: int) -> httpx.Response:
        with api.client() as http:
            return http.post(
                "/v1/jobs", json={"text": "Exactly once."}, headers={"Idempotency-Key": "race"}
            )

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(submit, range(50)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 202, 409} and statuses.count(202) == 1, statuses
    created = next(r.json()["id"] for r in responses if r.status_code == 202)
    for response in responses:
        if response.status_code == 200:
            assert response.json()["id"] == created
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "idempotency_in_flight"
            assert response.headers["retry-after"] == "1"
    assert redis_client.zcard(keys.tenant_jobs_key("acme")) == 1
    print(f"\n50 concurrent submits: {statuses.count(202)} x 202, {statuses.count(200)} x 200, "
          f"{statuses.count(409)} x 409, 1 job")  # fmt: skip


def test_same_key_from_two_tenants_makes_two_jobs(api: ApiServer) -> None:
    headers = {"Idempotency-Key": "shared"}
    with api.client("acme") as acme, api.client("globex") as globex:
        a = acme.post("/v1/jobs", json={"text": "Hi."}, headers=headers)
        b = globex.post("/v1/jobs", json={"text": "Hi."}, headers=headers)
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_key_holds_across_api_restarts_for_24_hours(
    start_api: Callable[..., ApiServer], settings: Settings, redis_client: redis.Redis
) -> None:
    headers = {"Idempotency-Key": "restart"}
    first = start_api(settings)
    with first.client() as http:
        created = http.post("/v1/jobs", json={"text": "Still me."}, headers=headers).json()
    first.stop()
    second = start_api(settings)
    with second.client() as http:
        again = http.post("/v1/jobs", json={"text": "Still me."}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == created["id"]
    (record,) = redis_client.keys("ttsfleet:idem:acme:*")
    assert 86400 - 60 < redis_client.ttl(record) <= 86400


def test_a_refused_request_frees_its_key(
    start_api: Callable[..., ApiServer], make_settings: Callable[..., Settings]
) -> None:
    """A 429 is not remembered: the same request may be retried once there is room."""
    api = start_api(make_settings(rate_limit_per_s=0.5, rate_limit_burst=1), dispatch=False)
    with api.client() as http:
        assert http.post("/v1/jobs", json={"text": "Uses the token."}).status_code == 202
        headers = {"Idempotency-Key": "retry-me"}
        limited = http.post("/v1/jobs", json={"text": "Later."}, headers=headers)
        assert limited.status_code == 429
        wait = int(limited.headers["retry-after"])
        assert 1 <= wait <= 2
        time.sleep(wait)
        retried = http.post("/v1/jobs", json={"text": "Later."}, headers=headers)
    assert retried.status_code == 202


def test_batch_replays_its_jobs(api: ApiServer) -> None:
    body = {"jobs": [{"text": "One."}, {"text": "Two."}]}
    headers = {"Idempotency-Key": "batch-1"}
    with api.client() as http:
        first = http.post("/v1/jobs/batch", json=body, headers=headers)
        again = http.post("/v1/jobs/batch", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert [j["id"] for j in again.json()["jobs"]] == [j["id"] for j in first.json()["jobs"]]


def test_duplicate_while_the_first_is_in_flight_is_409(
    api: ApiServer, redis_client: redis.Redis
) -> None:
    """An API of an earlier release claimed keys in a step of its own (an in-flight marker,
    then admission): while its marker stands a duplicate gets 409, and once it lapses (that
    process died) the request goes through. This release claims and admits in one script, so
    it leaves no marker (test_50_concurrent_identical_submits_make_one_job)."""
    body = {"text": "Slow first."}
    digest = hashlib.sha256(b"in-flight").hexdigest()
    marker = record_value(fingerprint("POST /v1/jobs", body), None, "f00d")
    redis_client.set(keys.idempotency_key("acme", digest), marker, ex=1)
    with api.client() as http:
        busy = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "in-flight"})
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "idempotency_in_flight"
        assert busy.headers["retry-after"] == "1"
        time.sleep(1.1)
        later = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "in-flight"})
    assert later.status_code == 202
