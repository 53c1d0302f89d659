"""Warm shutdown (SIGTERM): the work in hand finishes and is acked, what the worker had
prefetched goes back to the queue at once (not after the visibility timeout), nothing runs
twice."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import redis

from tasks import keys
from tasks.app import broker_lists
from tests.faults.conftest import MODEL, Fleet, elapsed


def test_sigterm_finishes_the_batch_in_hand_and_returns_the_rest(
    make_fleet: Callable[..., Fleet],
) -> None:
    fleet = make_fleet(
        "SlowEngine",
        options={"seconds": 0.2, "batching": "padded"},
        batch_max_size=4,
        batch_max_wait_ms=50,
        dispatch_queue_depth=64,
    )
    broker = redis.Redis.from_url(fleet.settings.redis_url, decode_responses=True)
    worker = fleet.start_worker(concurrency=0)
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"shutdown job {i}." for i in range(40)])
        since = time.monotonic()
        while not any(j["status"] == "running" for j in fleet.jobs(http, ids)):
            assert time.monotonic() - since < 30
            time.sleep(0.05)
        os.kill(worker.proc.pid, signal.SIGTERM)
        worker.proc.wait(60)
        stopped = fleet.jobs(http, ids)
        finished = [j for j in stopped if j["status"] == "succeeded"]
        # Nothing was left half-done or held by the stopped worker.
        assert [j for j in stopped if j["status"] == "running"] == []
        assert broker.hlen(keys.KOMBU_UNACKED) == 0
        waiting = sum(broker.llen(name) for name in broker_lists(MODEL))
        fleet.start_worker(concurrency=0)
        restarted = time.monotonic()
        final = fleet.wait_all_terminal(http, ids)
    assert [j["status"] for j in final] == ["succeeded"] * len(ids)
    assert [j["attempts"] for j in final] == [1] * len(ids), "a job ran twice"
    assert len(fleet.objects()) == len(ids)
    print(
        f"\nSIGTERM: {len(finished)} jobs finished in hand, {waiting} back in the queue at "
        f"once, 0 unacked, all {len(ids)} done {elapsed(restarted)} s after the restart"
    )
