"""The network between the fleet and Redis cut while long jobs run (DESIGN §6).

Every connection to Redis (API, dispatcher and reconciler, two workers, prefork children)
goes through a TcpProxy that is cut: open connections reset, new ones refused. While it is
cut the API answers 503 with Retry-After; once it is back everything reconnects by itself and
a canary job submitted afterwards proves the workers still consume. A running job is never
run twice: on the connection loss a worker cancels what it runs
(`worker_cancel_long_running_tasks_on_connection_loss`, prefork) or keeps running it under its
job lease (threads pool, which cannot cancel). Two checks that fail when that breaks (tried by
disabling the lease keeper): the engine flocks the texts of the batch it runs, so two
batches holding one job at once are caught, and only the runs the cut interrupted (read
straight from Redis while it lasts) may have a second attempt. Every job acknowledged with a
202 ends `succeeded`, once, with one audio object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks import keys
from tests.conftest import RedisServer, wait_until
from tests.faults.conftest import HOOK, VOICE, Fleet, check_exactly_once, elapsed
from tests.proxy import TcpProxy

DB = 6


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    through = TcpProxy(redis_server.port)
    yield through
    through.close()


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The fleet's database, not through the proxy: readable while the cut lasts."""
    client = redis.Redis(port=redis_server.port, db=DB, decode_responses=True)
    yield client
    client.close()


def run_cut(
    make_fleet: Callable[..., Fleet],
    proxy: TcpProxy,
    direct: redis.Redis,
    runs: Path,
    jobs: int,
    cut_s: float,
    batching: str = "loop",
) -> None:
    runs.mkdir()
    fleet = make_fleet(
        "SlowEngine",
        db=DB,
        # Each job outlives the cut: a run the cut did not stop would overlap its rerun.
        options={"seconds": cut_s + 2, "runs_dir": str(runs), "batching": batching},
        redis_url=f"{proxy.url}/{DB}",
        batch_max_size=2,
        batch_max_wait_ms=20,
    )
    # Two workers: a job sent again while its first run goes on could reach the other one,
    # where the engine's flock would catch the overlap.
    workers = [fleet.start_worker(concurrency=1 if batching == "loop" else 0) for _ in range(2)]
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"long job {i} speaks." for i in range(jobs)])
        wait_until(
            lambda: [j["status"] for j in fleet.jobs(http, ids)].count("running") >= 2,
            timeout=30,
        )
        proxy.cut()
        cut = time.monotonic()
        # Nothing can move a job while the cut lasts: these are the runs it interrupted.
        interrupted = {i for i in ids if direct.hget(keys.job_key(i), "status") == "running"}
        down: dict[str, Any] = {}
        for name, answer in (
            ("submit", lambda: http.post("/v1/jobs", json={"text": "while cut", "voice": VOICE})),
            ("status", lambda: http.get(f"/v1/jobs/{ids[0]}")),
        ):
            response = answer()
            down[name] = response.status_code
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable", response.text
            assert int(response.headers["Retry-After"]) >= 1
        time.sleep(max(0.0, cut_s - (time.monotonic() - cut)))
        proxy.restore()
        back = time.monotonic()

        def canary() -> str | None:
            body = {"text": "canary after the cut", "voice": VOICE, "callback_url": HOOK}
            response = http.post("/v1/jobs", json=body)
            return str(response.json()["id"]) if response.status_code == 202 else None

        canary_id: str = wait_until(canary, timeout=30, interval=0.2)
        api_back = elapsed(back)
        final = fleet.wait_all_terminal(http, [*ids, canary_id], timeout=180)
    figures = check_exactly_once(fleet, final)
    # Each job ran once, but for the runs the cut interrupted (canceled, prefork) which ran
    # once more: no job was sent again while it ran, here or on the other worker.
    for job in final:
        assert job["attempts"] <= (2 if job["id"] in interrupted else 1), (job, interrupted)
    parallel = runs / "parallel.log"
    assert not parallel.exists(), f"runs overlapped: {parallel.read_text()}"
    for worker in workers:
        assert worker.proc.poll() is None, "a worker died instead of reconnecting"
        log = worker.log.read_text()
        assert "Connection to broker lost" in log or "Cannot connect" in log, log[-3000:]
    print(
        f"\nRedis connection cut {cut_s} s ({batching} worker): {figures}, overlapping runs 0, "
        f"API answered {down} while cut, accepting {api_back} s after, "
        f"all done {elapsed(back)} s after"
    )


def test_a_connection_cut_loses_no_job_and_runs_none_twice_at_once(
    make_fleet: Callable[..., Fleet], proxy: TcpProxy, direct: redis.Redis, tmp_path: Path
) -> None:
    run_cut(make_fleet, proxy, direct, tmp_path / "runs", jobs=4, cut_s=4.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batching", "jobs"), [("loop", 8), ("padded", 4)], ids=["prefork", "threads"]
)
def test_a_ten_second_connection_cut(
    make_fleet: Callable[..., Fleet],
    proxy: TcpProxy,
    direct: redis.Redis,
    tmp_path: Path,
    batching: str,
    jobs: int,
) -> None:
    run_cut(make_fleet, proxy, direct, tmp_path / "runs", jobs=jobs, cut_s=10.0, batching=batching)
