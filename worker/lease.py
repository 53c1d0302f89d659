"""Job leases: a short-TTL key per job that names who may run it now.

Two kinds of names. A run names itself `HOLDER/pid` when its claim (tasks.store) takes the
lease, so the store tells runs apart, two of one worker included: a redelivery that reaches
another worker, a sibling prefork child or a second thread while the first run is alive is
`busy`, not a second parallel run. The worker's main process (the Celery consumer) knows
every message it holds (`celery.worker.state`), whatever the pool, and keeps their leases
alive: it renews its own, names a free one after the process running its request (Celery's
`worker_pid`), and marks the free lease of a prefetched job with its bare `HOLDER`. A bare
mark only keeps the reconciler from sending the job again: it never means "running", so it
never blocks a claim, and a job handed back (a retry countdown, a warm shutdown) may run on
any worker at once.

When the earlier run of the same worker is over, `Runs.stale` says so (its process is gone,
or it is this process and no longer runs the job) and the claim takes the lease over at
once: a killed child's job, requeued by `task_reject_on_worker_lost`, runs again on its own
worker without waiting for the lease to lapse. A killed main process stops renewing, its
leases lapse within `job_lease_s`, and the reconciler (scheduler.reconciler) sends its jobs again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from tasks import keys, scripts
from worker import process

log = logging.getLogger(__name__)

# Made once in the worker's main process at import; prefork children inherit it.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

# worker/lua/: lease_renew.lua and lease_release.lua, both with lease_ours.lua.
_RENEW = scripts.load("worker", "lease_renew")
_RELEASE = scripts.load("worker", "lease_release")


class LeaseLost(Exception):
    """Another run took this job over (a claim after this one's lease lapsed): this run's
    audio is dropped before it is stored, so the object under the job's key is the one whose
    sha256 the job records (the other run's)."""


@dataclass(frozen=True)
class Run:
    """One run of a job: its lease name ('' for a run without leases) and the attempt its
    claim counted (each later claim of the job counts one more)."""

    name: str
    attempts: int


class Runs:
    """The runs of this process: each run's lease name, the jobs running here now, and whether
    an earlier run of the same worker, named by a lease, is over."""

    def __init__(self, worker: str = HOLDER, alive: Callable[[int], bool] = process.alive) -> None:
        self.worker = worker
        self._alive = alive
        self._lock = threading.Lock()
        self._running: set[str] = set()

    @property
    def name(self) -> str:
        """This process's runs' lease name (read at call time: a prefork child's own pid)."""
        return f"{self.worker}/{os.getpid()}"

    @contextmanager
    def running(self, job_id: str) -> Iterator[bool]:
        """Yields False when this process already runs `job_id` (a second delivery reached
        another thread): the caller must not run it."""
        with self._lock:
            first = job_id not in self._running
            self._running.add(job_id)
        try:
            yield first
        finally:
            if first:
                with self._lock:
                    self._running.discard(job_id)

    def stale(self, held: str | None) -> str:
        """`held` if it names a run of this worker that is over, else ''. Ask from inside a
        `running` that yielded True: then no other run of the job is alive in this process."""
        if not held or not held.startswith(self.worker + "/"):
            return ""
        try:
            pid = int(held.rsplit("/", 1)[1])
        except ValueError:
            return ""
        if pid == os.getpid():
            return held
        return "" if self._alive(pid) else held


def held_by_this_worker() -> dict[str, int | None]:
    """The jobs whose messages this worker holds, each with the pid of the process running
    it (None while it is prefetched). A job two processes hold at once (a duplicate delivery)
    is named after the one that started first: the other's claim is the one to refuse."""
    from celery.worker import state

    # The consumer thread changes these weak sets while we read them; retry on a clash.
    for _ in range(5):
        try:
            held: dict[str, int | None] = {r.id: None for r in list(state.reserved_requests)}
            active = sorted(state.active_requests, key=lambda r: r.time_start or float("inf"))
            running: dict[str, int | None] = {}
            for request in active:
                running.setdefault(request.id, request.worker_pid)
            held.update(running)
            return held
        except RuntimeError:
            continue
    return {}


class LeaseKeeper:
    """Keeps the leases of the jobs `held()` returns, every third of the lease."""

    def __init__(
        self,
        client: redis.Redis,
        holder: str,
        lease_s: float,
        held: Callable[[], Mapping[str, int | None]] = held_by_this_worker,
    ) -> None:
        self._redis = client
        self.holder = holder
        self.lease_s = lease_s
        self._held = held
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed: list[str] = []

    def renew_once(self) -> int:
        held = self._held()
        ids = sorted(held)
        if not ids:
            return 0
        self._renewed = ids
        leases = [keys.job_lease_key(job_id) for job_id in ids]
        names = [f"{self.holder}/{pid}" if (pid := held[i]) else self.holder for i in ids]
        return int(self._renew(keys=leases, args=[self.holder, int(self.lease_s * 1000), *names]))

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.renew_once()
            except redis.RedisError as exc:
                log.warning("cannot renew job leases: %s", exc)
            self._stop.wait(self.lease_s / 3)

    def start(self) -> None:
        """Renew in a daemon thread until `stop`."""
        self._thread = threading.Thread(target=self.run, name="job-leases", daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Once no job runs here any more (a finished warm shutdown): stop renewing and free
        the leases of what this worker had prefetched and handed back, so that the next
        worker may claim those jobs at once. Returns how many were freed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if not self._renewed:
            return 0
        leases = [keys.job_lease_key(job_id) for job_id in self._renewed]
        try:
            return int(self._release(keys=leases, args=[self.holder]))
        except redis.RedisError:
            return 0  # they lapse by themselves
