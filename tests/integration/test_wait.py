"""`Prefer: wait=N` on POST /v1/jobs: the answer comes when the job ends or after N s, and
every waiting caller of an API process shares its one Redis subscriber (api.waiters)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from api.waiters import JobWaiters
from tasks import keys
from tasks.settings import Settings
from tasks.store import JobStore
from tests.conftest import ApiServer, RedisServer, wait_until
from tests.proxy import TcpProxy

BODY = {"text": "Wait for me."}


def waiters_of(api: ApiServer) -> JobWaiters:
    waiters: JobWaiters = api.server.config.app.state.waiters
    return waiters


def submit(api: ApiServer, prefer: str) -> httpx.Response:
    with api.client() as http:
        return http.post("/v1/jobs", json=BODY, headers={"Prefer": prefer}, timeout=90)


# Any wait past 60 s counts as 60, however many digits it has.
@pytest.mark.parametrize("prefer", ["respond-async, wait=600", "wait=99999999999999999999999"])
def test_a_job_that_ends_while_waited_for_answers_200(
    api: ApiServer, redis_client: redis.Redis, prefer: str
) -> None:
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(submit, api, prefer)
        wait_until(lambda: waiters_of(api).waiting == 1)
        job_id = redis_client.zrange(keys.tenant_jobs_key("acme"), 0, -1)[0]
        with api.client() as http:
            assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        response = answer.result(timeout=60)
    assert response.status_code == 200
    assert response.json()["id"] == job_id and response.json()["status"] == "canceled"
    assert response.headers["Preference-Applied"] == "wait=60"
    assert response.headers["Location"] == f"/v1/jobs/{job_id}"
    assert waiters_of(api).waiting == 0


def test_a_job_still_queued_after_the_wait_answers_202(api: ApiServer) -> None:
    response = submit(api, "wait=1")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.headers["Preference-Applied"] == "wait=1"
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"


def test_a_malformed_preference_is_ignored(api: ApiServer) -> None:
    for prefer in ("wait=soon", "wait=-3", "wait", "handling=lenient", "wait=1.5"):
        response = submit(api, prefer)
        assert response.status_code == 202, prefer
        assert "Preference-Applied" not in response.headers, prefer
        assert response.json()["status"] == "queued"


def test_many_waiters_share_one_subscriber_and_leave_the_pool_free(
    api: ApiServer, redis_client: redis.Redis
) -> None:
    """More waiters than the API's Redis pool has connections (64): were each to hold one,
    the read below would wait for the pool and fail with 503; all of them end when their
    jobs end."""
    from api.app import REDIS_CONNECTIONS

    count = max(32, REDIS_CONNECTIONS + 8)  # a multiple of 8
    with ThreadPoolExecutor(count) as pool:
        answers = []
        # In waves, so that this two-core box's event loop is not what the test measures.
        for wave in range(0, count, 8):
            answers += [pool.submit(submit, api, "wait=60") for _ in range(wave, wave + 8)]
            wait_until(lambda: waiters_of(api).waiting == len(answers), timeout=30)
        assert len(answers) == count
        assert redis_client.pubsub_numsub(keys.JOB_ENDED_CHANNEL) == [(keys.JOB_ENDED_CHANNEL, 1)]
        with api.client() as http:
            metrics = http.get("/metrics").text
            job_ids = [j["id"] for j in http.get("/v1/jobs", params={"limit": 500}).json()["jobs"]]
            assert len(job_ids) == count
            assert http.get(f"/v1/jobs/{job_ids[0]}").status_code == 200
            for job_id in job_ids:
                assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        responses: list[Any] = [a.result(timeout=60) for a in answers]
    assert f"ttsfleet_api_waiting_requests {float(count)}" in metrics
    assert [r.status_code for r in responses] == [200] * count
    assert {r.json()["status"] for r in responses} == {"canceled"}
    assert sorted(r.json()["id"] for r in responses) == sorted(job_ids)


def test_the_terminal_scripts_publish_on_the_channel_tasks_keys_names() -> None:
    from tasks import scripts

    assert f"'PUBLISH', '{keys.JOB_ENDED_CHANNEL}'" in scripts.read("tasks", "announce_end")
    for name in ("transition", "claim"):
        assert "announce_end(KEYS[1])" in scripts.read("tasks", name)


def test_waiters_survive_the_subscriber_losing_redis(
    start_api: Callable[..., ApiServer],
    make_settings: Callable[..., Settings],
    redis_server: RedisServer,
    redis_client: redis.Redis,
) -> None:
    """Every connection to Redis is cut while a caller waits: the subscriber reconnects by
    itself, and an end published after that still answers the caller (200, not a 202 at
    the end of its wait)."""
    proxy = TcpProxy(redis_server.port)
    try:
        api = start_api(make_settings(redis_url=proxy.url + "/0"))
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(submit, api, "wait=60")
            wait_until(lambda: waiters_of(api).waiting == 1)
            wait_until(lambda: subscribers(redis_client) == 1)
            proxy.cut()
            wait_until(lambda: subscribers(redis_client) == 0)
            proxy.restore()
            wait_until(lambda: subscribers(redis_client) == 1)
            job_id = redis_client.zrange(keys.tenant_jobs_key("acme"), 0, -1)[0]
            direct = JobStore.from_url(redis_server.url, 3600)
            assert direct.cancel(job_id).applied
            response = answer.result(timeout=60)
        assert response.status_code == 200 and response.json()["status"] == "canceled"
    finally:
        proxy.close()


def subscribers(client: redis.Redis) -> int:
    return int(dict(client.pubsub_numsub(keys.JOB_ENDED_CHANNEL))[keys.JOB_ENDED_CHANNEL])
