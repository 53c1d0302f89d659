"""Poison jobs: a job that always breaks the engine ends `failed` after MAX_ATTEMPTS, and
the jobs around it succeed; the queue keeps moving (DESIGN §6)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import Fleet, elapsed


def run_poison(make_fleet: Callable[..., Fleet], engine: str, code: str, healthy: int) -> None:
    fleet = make_fleet(engine, options={"trigger": "poison"}, max_attempts=3)
    fleet.start_worker(concurrency=1)
    texts = [f"healthy job {i}." for i in range(healthy)]
    texts.insert(healthy // 2, "this poison job breaks the engine.")
    with fleet.api.client() as http:
        start = time.monotonic()
        ids = fleet.submit(http, texts)
        jobs = fleet.wait_all_terminal(http, ids)
    poison = jobs.pop(healthy // 2)
    assert poison["status"] == "failed", poison
    assert poison["error"]["code"] == code, poison
    # Every run is counted; the delivery that finds the limit reached fails the job unrun.
    assert poison["attempts"] == 3, poison
    assert [j["status"] for j in jobs] == ["succeeded"] * healthy
    assert len(fleet.objects()) == healthy
    # One terminal event each: `job.failed` for the poison job, `job.succeeded` for the rest.
    assert fleet.callback_events(poison["id"]) == [f"msg_{poison['id']}_failed"]
    assert all(fleet.callback_events(j["id"]) == [f"msg_{j['id']}_succeeded"] for j in jobs)
    print(
        f"\n{engine}: {healthy} healthy jobs succeeded around one poison job "
        f"(failed {code} after {poison['attempts']} deliveries) in {elapsed(start)} s"
    )


def test_engine_that_raises_fails_the_job_with_engine_error(
    make_fleet: Callable[..., Fleet],
) -> None:
    run_poison(make_fleet, "RaisingEngine", "engine_error", healthy=6)


def test_engine_that_kills_its_process_fails_the_job_with_worker_lost(
    make_fleet: Callable[..., Fleet],
) -> None:
    run_poison(make_fleet, "ExitingEngine", "worker_lost", healthy=6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("engine", "code"), [("RaisingEngine", "engine_error"), ("ExitingEngine", "worker_lost")]
)
def test_poison_among_many(make_fleet: Callable[..., Fleet], engine: str, code: str) -> None:
    run_poison(make_fleet, engine, code, healthy=60)
