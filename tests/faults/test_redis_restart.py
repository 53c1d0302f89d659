"""Redis killed and restarted (AOF, `appendfsync always`) mid-run: the API answers 503 with
Retry-After while it is down and recovers by itself, workers reconnect and keep consuming
(a canary job submitted after the restart proves it), and every job acknowledged with a
202 survives and succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisServer, wait_until
from tests.faults.conftest import VOICE, Fleet, elapsed


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own: killing it must not disturb the session's."""
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer(data)
    server.start()
    yield server
    server.stop()


def run_restart(
    make_fleet: Callable[..., Fleet], own_redis: RedisServer, jobs: int, down_s: float
) -> None:
    fleet = make_fleet("SlowEngine", options={"seconds": 0.1}, redis_url=own_redis.url)
    fleet.start_worker(concurrency=2)
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"durable job {i}." for i in range(jobs)])
        wait_until(lambda: any(j["status"] == "succeeded" for j in fleet.jobs(http, ids)))
        assert own_redis.proc is not None
        own_redis.proc.kill()  # a crash, not a clean shutdown
        own_redis.proc.wait()
        down = http.post("/v1/jobs", json={"text": "refused while down", "voice": VOICE})
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "unavailable" and down.headers["Retry-After"]
        time.sleep(down_s)
        own_redis.start()
        back = time.monotonic()

        def canary() -> str | None:
            response = http.post("/v1/jobs", json={"text": "canary after restart", "voice": VOICE})
            return str(response.json()["id"]) if response.status_code == 202 else None

        canary_id: str = wait_until(canary, timeout=30, interval=0.2)
        api_back = elapsed(back)
        final = fleet.wait_all_terminal(http, [*ids, canary_id], timeout=120)
    statuses = [j["status"] for j in final]
    assert statuses == ["succeeded"] * (jobs + 1), final
    assert len(fleet.objects()) == jobs + 1
    print(
        f"\nRedis SIGKILL + restart after {down_s} s: {jobs} jobs + canary, 0 lost, "
        f"deliveries {sum(int(j['attempts']) for j in final)}, API accepting {api_back} s "
        f"after restart, all done {elapsed(back)} s after restart"
    )


def test_redis_restart_loses_no_acknowledged_job(
    make_fleet: Callable[..., Fleet], own_redis: RedisServer
) -> None:
    run_restart(make_fleet, own_redis, jobs=20, down_s=2.0)


@pytest.mark.slow
def test_redis_restart_long_run(make_fleet: Callable[..., Fleet], own_redis: RedisServer) -> None:
    run_restart(make_fleet, own_redis, jobs=150, down_s=5.0)
