"""Fair dequeueing and priorities, measured with a real worker process and the real voice.

Tenant A floods the fleet; tenant B then submits one job. With the dispatcher B's job
waits behind the shallow Celery queue and the job in flight, not behind A's backlog. The
figures are printed (pytest -s); the slow variant floods 100,000 jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tasks.quota import active_jobs
from tasks.settings import Settings
from tests.conftest import ApiServer, WorkerProcess, wait_until

DEPTH = 2  # dispatch_queue_depth for these tests: the shallow Celery queue


def flood(http: httpx.Client, n: int, text: str, priority: str = "normal") -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 1000):
        size = min(1000, n - start)
        body = {"jobs": [{"text": text, "priority": priority}] * size}
        response = http.post("/v1/jobs/batch", json=body)
        assert response.status_code == 202, response.text
        ids += [job["id"] for job in response.json()["jobs"]]
    return ids


def wait_succeeded(http: httpx.Client, job_id: str, timeout: float) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] not in ("failed", "canceled"), job
        return job if job["status"] == "succeeded" else None

    result: dict[str, object] = wait_until(done, timeout=timeout, interval=0.02)
    return result


@pytest.fixture
def roomy_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    """Two tenants with room for a 100,000-job backlog, and a fast rate limit."""
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [
        {"id": "acme", "api_keys": ["key-acme"], "max_queued_jobs": 200_000},
        {"id": "globex", "api_keys": ["key-globex"], "max_queued_jobs": 200_000},
    ]}))  # fmt: skip
    return make_settings(
        api_keys=None, tenants_file=path, dispatch_queue_depth=DEPTH, rate_limit_burst=1000
    )


def measure_fairness(
    backlog: int,
    settings: Settings,
    start_api: Callable[..., ApiServer],
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> int:
    api = start_api(settings)
    start_worker(settings, concurrency=1)
    with api.client("acme") as a, api.client("globex") as b:
        started = time.perf_counter()
        flood(a, backlog, "Hi.")
        flooded = time.perf_counter() - started
        wait_until(lambda: active_jobs(redis_client, "acme") < backlog, timeout=30)  # A runs
        a_before = backlog - active_jobs(redis_client, "acme")
        submitted = time.perf_counter()
        job = b.post("/v1/jobs", json={"text": "Hello from the other tenant."}).json()
        wait_succeeded(b, job["id"], timeout=60)
        waited = time.perf_counter() - submitted
        a_done = backlog - active_jobs(redis_client, "acme")
    a_done_during = a_done - a_before
    print(
        f"\nfairness: A backlog {backlog} jobs (submitted in {flooded:.2f} s); "
        f"B's one job succeeded {waited:.2f} s after submit; A jobs finished by then: "
        f"{a_done} (~{a_done_during} while B waited; dispatch depth {DEPTH}, 1 worker "
        f"process). Without fair dispatch B would wait behind ~{backlog - a_done} more A jobs "
        f"(~{(backlog - a_done) * waited / max(1, a_done_during + 1):.0f} s at this rate)."
    )
    return a_done_during


def test_one_tenants_backlog_does_not_delay_another(
    roomy_settings: Settings,
    start_api: Callable[..., ApiServer],
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    during = measure_fairness(300, roomy_settings, start_api, start_worker, redis_client)
    # The shallow queue, the job in flight and one prefetched: a batch or two, never 300.
    assert during <= DEPTH + 2 * roomy_settings.batch_max_size


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_100000_job_backlog_does_not_delay_another_tenant(
    roomy_settings: Settings,
    start_api: Callable[..., ApiServer],
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    during = measure_fairness(100_000, roomy_settings, start_api, start_worker, redis_client)
    assert during <= DEPTH + 2 * roomy_settings.batch_max_size


def test_high_priority_overtakes_a_normal_backlog(
    roomy_settings: Settings,
    start_api: Callable[..., ApiServer],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    api = start_api(roomy_settings)
    start_worker(roomy_settings, concurrency=1)
    with api.client("acme") as http:
        normal = flood(http, 50, "Routine notice.")
        wait_until(lambda: http.get(f"/v1/jobs/{normal[0]}").json()["status"] != "queued")
        submitted = time.perf_counter()
        urgent = http.post("/v1/jobs", json={"text": "Urgent.", "priority": "high"}).json()
        done = wait_succeeded(http, urgent["id"], timeout=60)
        waited = time.perf_counter() - submitted
        jobs = [http.get(f"/v1/jobs/{job_id}").json() for job_id in normal]
    finished = done["finished_at"]
    before = sum(1 for job in jobs if job["finished_at"] and job["finished_at"] <= finished)
    print(
        f"\npriority: 1 high job submitted behind {len(normal)} normal ones (same tenant) "
        f"succeeded {waited:.2f} s later, after {before} of them had finished"
    )
    # The shallow queue and the job in flight; never the backlog.
    assert before <= DEPTH + 3


def test_a_tenants_book_does_not_delay_another_tenants_short_job(
    roomy_settings: Settings,
    start_api: Callable[..., ApiServer],
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    """The book's units (tasks.units, one piece each here) wait in A's pending list and are
    handed out one tenant at a time: B's job waits behind the shallow queue and what the
    worker holds, not behind the rest of the book."""
    settings = roomy_settings.model_copy(update={"max_text_chars": 600, "unit_chars": 300})
    api = start_api(settings)
    start_worker(settings, concurrency=1)
    book = " ".join(
        f"The tide came in over the harbour wall for the {i}th time." for i in range(90)
    )
    with api.client("acme") as a, api.client("globex") as b:
        book_id = a.post("/v1/jobs", json={"text": book}).json()["id"]

        def pieces_done() -> int:
            progress = a.get(f"/v1/jobs/{book_id}").json()["progress"]
            return int(progress["pieces_done"]) if progress else 0

        wait_until(lambda: pieces_done() >= 1, timeout=60)
        before = pieces_done()
        submitted = time.perf_counter()
        job = b.post("/v1/jobs", json={"text": "Hello from the other tenant."}).json()
        wait_succeeded(b, job["id"], timeout=60)
        waited = time.perf_counter() - submitted
        during = pieces_done() - before
        total = a.get(f"/v1/jobs/{book_id}").json()["progress"]["pieces_total"]
        a.post(f"/v1/jobs/{book_id}/cancel")
    print(
        f"\nfairness: A's book of {total} pieces; B's one job succeeded {waited:.2f} s after "
        f"submit, after {during} more of the book's pieces (dispatch depth {DEPTH}, 1 worker)"
    )
    # The shallow queue, the unit running and the ones prefetched: a few pieces, not the book.
    assert during <= DEPTH + 3 < total
