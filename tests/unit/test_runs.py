"""How a worker's runs name themselves in job leases, and how one tells a live earlier run
of the same worker from one that is over (worker.lease.Runs)."""

from __future__ import annotations

import os

from worker.lease import Runs, held_by_this_worker


def test_a_run_is_named_by_its_worker_and_process() -> None:
    assert Runs("host:1:ab").name == f"host:1:ab/{os.getpid()}"


def test_a_second_run_of_a_job_in_the_same_process_is_refused() -> None:
    runs = Runs("w")
    with runs.running("job-1") as first:
        assert first
        with runs.running("job-1") as second:
            assert not second
        with runs.running("job-2") as other:
            assert other
    # Over: the next delivery may run it.
    with runs.running("job-1") as again:
        assert again


def test_a_run_of_a_process_that_is_gone_is_stale() -> None:
    runs = Runs("w", alive=lambda pid: pid != 4242)
    assert runs.stale("w/4242") == "w/4242"
    assert runs.stale("w/4343") == ""  # a live sibling still runs it


def test_only_this_workers_runs_can_be_stale() -> None:
    runs = Runs("w", alive=lambda pid: False)
    assert runs.stale(None) == ""
    assert runs.stale("w") == ""  # the bare mark needs no takeover
    assert runs.stale("other/4242") == ""  # another worker's pid means nothing here
    assert runs.stale("w-2/4242") == ""
    assert runs.stale("w/not-a-pid") == ""


def test_an_earlier_run_in_this_process_is_over_once_the_job_is_not_running_here() -> None:
    runs = Runs("w", alive=lambda pid: True)
    with runs.running("job-1") as first:
        assert first and runs.stale(f"w/{os.getpid()}") == f"w/{os.getpid()}"


class _Request:
    """What the lease keeper reads of a Celery request."""

    def __init__(self, job_id: str, worker_pid: int | None, time_start: float | None) -> None:
        self.id, self.worker_pid, self.time_start = job_id, worker_pid, time_start


def test_the_keeper_names_a_job_after_the_process_that_started_it_first() -> None:
    from celery.worker import state

    prefetched = _Request("waiting", None, None)
    first, duplicate = _Request("job", 11, 100.0), _Request("job", 12, 105.0)
    state.reserved_requests.add(prefetched)
    state.active_requests.update({duplicate, first})
    try:
        assert held_by_this_worker() == {"waiting": None, "job": 11}
    finally:
        state.reserved_requests.discard(prefetched)
        state.active_requests.difference_update({duplicate, first})
