"""A job that runs longer than the broker's visibility timeout is not executed twice.

Kombu's Redis transport hands an unacked message out again once it has been held longer than
`visibility_timeout` — counted from when the worker *prefetched* it, so time spent waiting in
a batch buffer counts too. Keep `TTSFLEET_VISIBILITY_TIMEOUT_S` well above the longest job
plus `BATCH_MAX_WAIT_MS` (the default, 1 h, is). When it is exceeded anyway, the second
delivery finds the job leased by the run in progress and is acked without running, whether
it reaches another worker or another prefork child of the same worker (worker.lease names
each run by its process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import Fleet, elapsed


@pytest.mark.parametrize("children", [[1, 1], [2]], ids=["two-workers", "two-children"])
def test_job_longer_than_the_visibility_timeout_runs_once(
    make_fleet: Callable[..., Fleet], children: list[int], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    options = {"seconds": 8.0, "runs_dir": str(runs)}
    fleet = make_fleet("SlowEngine", options=options, visibility_timeout_s=2)
    workers = [fleet.start_worker(concurrency=n) for n in children]
    with fleet.api.client() as http:
        start = time.monotonic()
        (job_id,) = fleet.submit(http, ["a job slower than the visibility timeout."])
        (job,) = fleet.wait_all_terminal(http, [job_id], timeout=60)
    logs = "".join(w.log.read_text() for w in workers)
    # The broker did hand it out again while it ran (else this test would prove nothing) ...
    assert logs.count(f"[{job_id}] received") >= 2, logs[-3000:]
    # ... and the second delivery was refused: one run, one attempt, one success.
    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    assert fleet.success_lines(job_id) == 1
    assert not (runs / "parallel.log").exists(), "a second run overlapped the first"
    assert fleet.callback_events(job_id) == [f"msg_{job_id}_succeeded"]
    print(f"\nredelivered {logs.count(f'[{job_id}] received')} times, ran once, {elapsed(start)} s")
