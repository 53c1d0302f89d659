"""Recycling: replace the process that runs the engine once it has run WORKER_MAX_JOBS
jobs, or before its *current* RSS (/proc, not the peak) would pass WORKER_MAX_RSS_MB, or
once it holds more than WORKER_MAX_GPU_MB reserved by torch's CUDA allocator; always after a
job, never during one.

Prefork: billiard already replaces a child between jobs (it reports its result, exits with
EX_RECYCLE, and the pool forks a successor whose `worker_process_init` loads the model
before it takes work), but only when `mem_rss()` exceeds `max_memory_per_child`, and its
`mem_rss` is ru_maxrss, the peak (FINDINGS.md). So the child's `mem_rss` is replaced by
this policy's verdict, and the pool's limit is set to the threshold between the two answers.
Threads: the worker process itself is the one to replace; it asks for a warm shutdown, which
finishes the jobs in hand and returns what it prefetched, and `ttsfleet worker` starts it again.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

MIB = 1024 * 1024

# billiard compares mem_rss() (KiB) with max_memory_per_child: the probe answers one side.
LIMIT_KB = 1
_KEEP_KB = 1
_RECYCLE_KB = 2


def current_rss_mb() -> float:
    """This process's resident set now (not the peak ru_maxrss reports)."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB


def gpu_reserved_mb() -> float:
    """Memory torch's CUDA caching allocator holds; 0 where torch or CUDA is not in use."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0.0
    return float(torch.cuda.memory_reserved()) / MIB


class RecyclePolicy:
    """Counts jobs and says, after each, whether this process should be replaced.

    For RSS it looks one job ahead: it keeps the largest growth of RSS that one job has
    caused (the first job after the model loaded is left out: that one fills caches, it
    does not leak) and replaces the process when the next such job would take it past
    WORKER_MAX_RSS_MB, so a steady leak never crosses the limit (bench/recycle.py plots it).
    """

    def __init__(
        self,
        max_jobs: int,
        max_rss_mb: int,
        max_gpu_mb: int,
        rss_mb: Callable[[], float] = current_rss_mb,
        gpu_mb: Callable[[], float] = gpu_reserved_mb,
    ) -> None:
        self.max_jobs = max_jobs
        self.max_rss_mb = max_rss_mb
        self.max_gpu_mb = max_gpu_mb
        self._rss_mb = rss_mb
        self._gpu_mb = gpu_mb
        self.jobs = 0
        self._last_rss_mb: float | None = None
        # The largest RSS growth one job caused so far (MiB).
        self.step_mb = 0.0

    def job_done(self) -> str | None:
        """Count one finished job; the reason to recycle now, or None."""
        self.jobs += 1
        if self.max_jobs and self.jobs >= self.max_jobs:
            return f"{self.jobs} jobs done (WORKER_MAX_JOBS={self.max_jobs})"
        if self.max_rss_mb and (reason := self._rss_verdict()):
            return reason
        if self.max_gpu_mb and (gpu := self._gpu_mb()) > self.max_gpu_mb:
            return f"GPU memory reserved {gpu:.0f} MB > WORKER_MAX_GPU_MB={self.max_gpu_mb}"
        return None

    def _rss_verdict(self) -> str | None:
        rss = self._rss_mb()
        if self._last_rss_mb is not None:
            self.step_mb = max(self.step_mb, rss - self._last_rss_mb)
        self._last_rss_mb = rss
        if rss > self.max_rss_mb:
            return f"RSS {rss:.0f} MB > WORKER_MAX_RSS_MB={self.max_rss_mb}"
        if rss + self.step_mb > self.max_rss_mb:
            return (
                f"RSS {rss:.0f} MB and up to {self.step_mb:.0f} MB a job: the next one could "
                f"pass WORKER_MAX_RSS_MB={self.max_rss_mb}"
            )
        return None


def install_in_prefork_child(policy: RecyclePolicy) -> None:
    """Make billiard's between-jobs memory check ask `policy` instead (see the module doc);
    the parent must run the pool with `max_memory_per_child=LIMIT_KB`."""
    import billiard.pool

    def probe() -> int:
        reason = policy.job_done()
        if reason is None:
            return _KEEP_KB
        log.warning("recycling worker child %d: %s", os.getpid(), reason)
        return _RECYCLE_KB

    billiard.pool.mem_rss = probe
