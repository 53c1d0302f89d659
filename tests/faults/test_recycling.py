"""Recycling contains leaks: a prefork child is replaced before the job that would take it
past WORKER_MAX_RSS_MB (current RSS), or after WORKER_MAX_JOBS, loses no job, and its
successor loads the model before it takes work; the leaking engine's RSS stays under the
limit."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.conftest import wait_until
from tests.faults.conftest import Fleet, children, rss_mb
from worker.recycle import RecyclePolicy

LEAK_MB = 16


class ChildWatch:
    """Samples the worker's children: every pid seen and the largest RSS seen."""

    def __init__(self, main: int) -> None:
        self.main = main
        self.pids: set[int] = set()
        self.max_rss_mb = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            for pid in children(self.main):
                self.pids.add(pid)
                try:
                    self.max_rss_mb = max(self.max_rss_mb, rss_mb(pid))
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def run_leak(make_fleet: Callable[..., Fleet], jobs: int) -> None:
    probe = make_fleet("LeakingEngine", options={"mb": LEAK_MB})
    probe.start_worker(concurrency=1)
    base = rss_mb(children(probe.workers[0].proc.pid)[0])
    probe.workers[0].stop()
    probe.api.stop()
    limit = int(base) + 4 * LEAK_MB
    fleet = make_fleet("LeakingEngine", options={"mb": LEAK_MB}, worker_max_rss_mb=limit, db=6)
    worker = fleet.start_worker(concurrency=1)
    watch = ChildWatch(worker.proc.pid)
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"leaky job {i}." for i in range(jobs)])
        # Each recycle forks a child that loads the model first: allow for it on 2 busy cores.
        final = fleet.wait_all_terminal(http, ids, timeout=90 + 3 * jobs)
    watch.close()
    assert [j["status"] for j in final] == ["succeeded"] * jobs
    assert [j["attempts"] for j in final] == [1] * jobs, "a recycled child lost a job"
    assert len(fleet.objects()) == jobs
    recycled = worker.log.read_text().count("recycling worker child")
    assert recycled >= jobs // 5 - 1 and len(watch.pids) >= recycled
    # Replaced before the job that would cross the limit: under it, give or take what a job
    # holds only while it runs.
    assert watch.max_rss_mb < limit + 2, (watch.max_rss_mb, limit)
    print(
        f"\nleaking engine, {LEAK_MB} MB/job x {jobs} jobs: child RSS at start {base:.0f} MB, "
        f"limit {limit} MB, max seen {watch.max_rss_mb:.0f} MB (unbounded would be "
        f"~{base + jobs * LEAK_MB:.0f} MB), {recycled} recycles, 0 jobs lost"
    )


def test_leaking_engine_rss_stays_bounded(make_fleet: Callable[..., Fleet]) -> None:
    run_leak(make_fleet, jobs=16)


@pytest.mark.slow
def test_leaking_engine_rss_stays_bounded_long(make_fleet: Callable[..., Fleet]) -> None:
    run_leak(make_fleet, jobs=100)


def test_child_replaced_after_max_jobs(make_fleet: Callable[..., Fleet]) -> None:
    fleet = make_fleet("ToneEngine", worker_max_jobs=3)
    worker = fleet.start_worker(concurrency=1)
    watch = ChildWatch(worker.proc.pid)
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"counted job {i}." for i in range(9)])
        final = fleet.wait_all_terminal(http, ids)
    # Each successor loads the model (the last one after the last job): once the fourth
    # child has loaded, the worker is idle and every recycle it will do has been logged.
    wait_until(lambda: worker.log.read_text().count("loaded on") >= 4)
    watch.close()
    assert [j["attempts"] for j in final] == [1] * 9
    log = worker.log.read_text()
    assert log.count("recycling worker child") == 3 and log.count("loaded on") == 4


def test_policy_reads_current_memory_through_injected_readers() -> None:
    rss, gpu = [100.0], [0.0]
    policy = RecyclePolicy(
        max_jobs=0, max_rss_mb=200, max_gpu_mb=1000, rss_mb=lambda: rss[0], gpu_mb=lambda: gpu[0]
    )
    assert policy.job_done() is None
    gpu[0] = 1500.0
    reason = policy.job_done()
    assert reason is not None and "WORKER_MAX_GPU_MB" in reason
    gpu[0], rss[0] = 0.0, 250.0
    reason = policy.job_done()
    assert reason is not None and "WORKER_MAX_RSS_MB" in reason
    # Current, not peak: a fresh process (a successor) under the limit keeps going.
    fresh = RecyclePolicy(max_jobs=0, max_rss_mb=200, max_gpu_mb=0, rss_mb=lambda: 120.0)
    assert fresh.job_done() is None and fresh.job_done() is None
    assert RecyclePolicy(max_jobs=5, max_rss_mb=0, max_gpu_mb=0).jobs == 0


def test_policy_replaces_the_process_before_the_job_that_would_pass_the_rss_limit() -> None:
    rss = [150.0]
    policy = RecyclePolicy(max_jobs=0, max_rss_mb=200, max_gpu_mb=0, rss_mb=lambda: rss[0])
    assert policy.job_done() is None  # the first job: filled caches, not counted as a leak
    for now in (160.0, 170.0, 180.0):
        rss[0] = now
        assert policy.job_done() is None
    rss[0] = 191.0  # 191 + 11 MB a job would pass 200
    reason = policy.job_done()
    assert reason is not None and "could pass WORKER_MAX_RSS_MB=200" in reason, reason
    assert policy.step_mb == 11.0


def test_threads_worker_process_replaced_after_max_jobs(make_fleet: Callable[..., Fleet]) -> None:
    """Threads pool: the worker process itself warm-shuts down past the limit and the
    supervising `ttsfleet worker` starts a fresh one, which loads the model first."""
    fleet = make_fleet(
        "LeakingEngine",
        options={"mb": LEAK_MB, "batching": "padded"},
        worker_max_jobs=4,
        batch_max_size=2,
        batch_max_wait_ms=20,
    )
    worker = fleet.start_worker(concurrency=0)
    with fleet.api.client() as http:
        ids = fleet.submit(http, [f"threaded job {i}." for i in range(16)])
        final = fleet.wait_all_terminal(http, ids)
    assert [j["status"] for j in final] == ["succeeded"] * 16
    assert [j["attempts"] for j in final] == [1] * 16, "a recycled worker lost or re-ran a job"
    assert len(fleet.objects()) == 16
    recycled = worker.log.read_text().count("recycling worker process")
    assert recycled >= 2
    wait_until(lambda: worker.log.read_text().count("loaded on") >= recycled + 1)
    assert worker.proc.poll() is None  # the supervisor is still there
    print(f"\nthreads worker: 16 jobs, {recycled} process recycles, 0 lost, 0 re-run")
