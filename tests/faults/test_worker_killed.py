"""Workers killed mid-job: every job still ends `succeeded` exactly once, with one audio
object, and `attempts` counts the deliveries (DESIGN §6)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
import redis

from tasks import keys
from tests.faults.conftest import Fleet, check_exactly_once, children, elapsed


def kill_children_while_running(fleet: Fleet, ids: list[str], kills: int, every_s: float) -> int:
    """SIGKILL a busy prefork child every `every_s` until `kills` are done or all jobs end."""
    main = fleet.workers[0].proc.pid
    done = 0
    with fleet.api.client() as http:
        while done < kills:
            time.sleep(every_s)
            jobs = fleet.jobs(http, ids)
            if all(j["status"] in ("succeeded", "failed") for j in jobs):
                break
            pids = children(main)
            if pids:
                os.kill(pids[done % len(pids)], signal.SIGKILL)
                done += 1
    return done


def run_prefork_kills(make_fleet: Callable[..., Fleet], jobs: int, kills: int) -> None:
    fleet = make_fleet("SlowEngine", options={"seconds": 0.3}, max_attempts=kills + 3)
    fleet.start_worker(concurrency=2)
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"job {i} speaks." for i in range(jobs)])
        start = time.monotonic()
        injected = kill_children_while_running(fleet, ids, kills, every_s=0.7)
        final = fleet.wait_all_terminal(http, ids)
    figures = check_exactly_once(fleet, final)
    print(f"\nprefork child SIGKILL: {figures}, kills={injected}, all done in {elapsed(start)} s")


def test_prefork_child_killed_mid_job(make_fleet: Callable[..., Fleet]) -> None:
    run_prefork_kills(make_fleet, jobs=12, kills=3)


@pytest.mark.slow
def test_prefork_child_killed_mid_job_repeatedly(make_fleet: Callable[..., Fleet]) -> None:
    run_prefork_kills(make_fleet, jobs=120, kills=25)


def run_main_killed(make_fleet: Callable[..., Fleet], jobs: int, rounds: int) -> None:
    """Threads pool with a batcher: SIGKILL the whole worker while it holds prefetched and
    running jobs, `rounds` times; a fresh worker finishes them all in seconds, not after the
    visibility timeout."""
    fleet = make_fleet(
        "SlowEngine",
        options={"seconds": 0.15, "batching": "padded"},
        batch_max_size=4,
        batch_max_wait_ms=50,
        max_attempts=rounds + 3,
    )
    broker = redis.Redis.from_url(fleet.settings.redis_url, decode_responses=True)
    held = []
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"batched job {i} speaks." for i in range(jobs)])
        for _ in range(rounds):
            worker = fleet.start_worker(concurrency=0)
            since = time.monotonic()
            while time.monotonic() - since < 30:
                running = [j for j in fleet.jobs(http, ids) if j["status"] == "running"]
                if running and broker.hlen(keys.KOMBU_UNACKED):
                    break
                time.sleep(0.05)
            held.append(broker.hlen(keys.KOMBU_UNACKED))
            os.killpg(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
        fleet.start_worker(concurrency=0)
        ready = time.monotonic()
        final = fleet.wait_all_terminal(http, ids, timeout=120)
        recovery = elapsed(ready)
    figures = check_exactly_once(fleet, final)
    print(
        f"\nthreads worker SIGKILL x{rounds}: {figures}, unacked held at each kill: {held}, "
        f"all done {recovery} s after the fresh worker was ready"
    )


def test_worker_main_process_killed_with_prefetched_jobs(
    make_fleet: Callable[..., Fleet],
) -> None:
    run_main_killed(make_fleet, jobs=16, rounds=1)


@pytest.mark.slow
def test_worker_main_process_killed_repeatedly(make_fleet: Callable[..., Fleet]) -> None:
    run_main_killed(make_fleet, jobs=96, rounds=4)
